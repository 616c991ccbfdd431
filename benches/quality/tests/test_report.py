"""The per-task table, the summary and the plot, from fixed results."""

import xml.etree.ElementTree as ET

from qbench import report, stats

TASK = {
    "name": "instruct-unit-conversions", "task_type": "instruct",
    "tournament": {"miners": 6, "hours_per_miner": 0.006, "budget": 240.0, "cost": 240.0, "winner": "carol",
                   "config": "full-ft", "first": 1.0, "second": 1.2, "weighted": 1.06,
                   "base": {"first": 3.7, "second": 3.6, "weighted": 3.67}},
    "baseline": {"config": "baseline", "cost": 80.5, "first": 3.5, "second": 3.4, "weighted": 3.47},
    "search": {"config": "full-ft lr=0.001", "cost": 231.0, "first": 0.9, "second": 1.0, "weighted": 0.93},
}


def test_task_table_has_a_row_per_contender_with_measured_compute_and_improvement():
    table = report.task_table(TASK, "cpu")
    assert "B = 240.0 cpu-s" in table and "6 miners × 22 s" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "carol: full-ft" in rows["tournament winner"]
    assert "| 80.5 |" in rows["baseline, all of B"]
    assert "+69.5 %" in rows["baseline, all of B"]  # (3.47 - 1.06) / 3.47
    assert "-14.0 %" in rows["TPE + ASHA, all of B"]  # the search did better here
    assert "+71.1 %" in rows["untrained base (reference)"]


def test_a_failed_contender_shows_dashes_not_numbers():
    task = dict(TASK, search={"config": None, "failure": "no trial finished", "cost": 12.0,
                              "first": None, "second": None, "weighted": None})
    row = [l for l in report.task_table(task, "cpu").splitlines() if "TPE" in l][0]
    assert "no trial finished" in row and "| - | - | - |" in row


def test_summary_and_plot():
    comparisons = [stats.compare("baseline", [(1.06, 3.47), (0.5, 0.7)], resamples=500),
                   stats.compare("search", [(1.06, 0.93), (0.5, 0.6)], resamples=500)]
    summary = report.summary_table(comparisons)
    assert "| baseline, all of B | 2 | 100 % [100 %, 100 %] |" in summary
    assert "| TPE + ASHA, all of B | 2 | 50 % [0 %, 100 %] |" in summary
    svg = ET.fromstring(report.plot_svg([TASK, dict(TASK, name="other")], comparisons))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}circle")) == 2  # one estimate per contender
    texts = [t.text for t in svg.iter(f"{ns}text")]
    assert "vs baseline (n=2)" in texts and "instruct-unit-conv" in texts


def test_the_halving_tournament_says_what_share_of_b_it_spent():
    halving = {"winner": "carol", "config": "full-ft", "cost": 96.0, "share": 0.4, "first": 1.1, "second": 1.2,
               "weighted": 1.13}
    table = report.task_table(dict(TASK, halving=halving), "cpu")
    row = [line for line in table.splitlines() if "successive halving" in line][0]
    assert "carol: full-ft; 40 % of B" in row and "| 96.0 |" in row
    assert "+6.2 %" in row  # (1.13 - 1.06) / 1.13: the full tournament did better


def test_the_baseline_fitted_to_b_shows_its_autotrain_calibration_run_as_a_reference_row():
    autotrain = {"config": "baseline", "cost": 20.0, "first": 3.6, "second": 3.5, "weighted": 3.57}
    fitted = {"config": "baseline, 33 epochs", "cost": 236.0, "first": 2.0, "second": 2.1, "weighted": 2.03,
              "autotrain": autotrain}
    table = report.task_table(dict(TASK, baseline=fitted), "cpu")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "baseline, 33 epochs | 236.0" in rows["baseline, all of B"]
    assert "+47.8 %" in rows["baseline, all of B"]  # (2.03 - 1.06) / 2.03
    assert "| 20.0 |" in rows["baseline, AutoTrain's 3 epochs (reference)"]
    assert "+70.3 %" in rows["baseline, AutoTrain's 3 epochs (reference)"]  # (3.57 - 1.06) / 3.57
