"""The statistics on fixed inputs: what a reader of the summary table relies on."""

import math

import pytest

from qbench import stats


def test_relative_improvement_is_a_share_of_the_contenders_loss_and_handles_negative_losses():
    assert stats.relative_improvement(1.0, 2.0) == 0.5  # half the baseline's loss
    assert stats.relative_improvement(2.0, 1.0) == -1.0  # twice as bad
    assert stats.relative_improvement(1.5, 1.5) == 0.0
    # GRPO's losses are negated rewards: -0.2 is better than -0.1, by 100 % of its magnitude.
    assert stats.relative_improvement(-0.2, -0.1) == pytest.approx(1.0)
    assert stats.relative_improvement(-0.1, -0.2) == pytest.approx(-0.5)


def test_win_counts_ties_as_half():
    assert [stats.win(1, 2), stats.win(2, 1), stats.win(1, 1)] == [1.0, 0.0, 0.5]


def test_percentile_interpolates_like_numpy():
    assert stats._percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert stats._percentile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert stats._percentile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    assert stats._percentile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75


def test_one_task_gives_a_point_interval():
    interval = stats.paired_bootstrap([(1.0, 2.0)], "mean_improvement", resamples=200)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)


def test_two_tasks_interval_spans_the_extremes_of_the_resampled_means():
    # Improvements 0.5 and -1.0: resampled means are 0.5 (p 1/4), -0.25 (1/2), -1.0 (1/4), so the
    # 2.5 and 97.5 percentiles are the two single-task values.
    interval = stats.paired_bootstrap([(1.0, 2.0), (2.0, 1.0)], "mean_improvement", resamples=4000, seed=1)
    assert interval.estimate == pytest.approx(-0.25)
    assert interval.low == -1.0 and interval.high == 0.5


def test_all_wins_and_all_losses_are_certain():
    wins = stats.paired_bootstrap([(1, 2), (0.5, 0.9), (3, 4)], "win_rate", resamples=500)
    assert (wins.estimate, wins.low, wins.high) == (1.0, 1.0, 1.0)
    losses = stats.paired_bootstrap([(2, 1), (0.9, 0.5)], "win_rate", resamples=500)
    assert (losses.estimate, losses.low, losses.high) == (0.0, 0.0, 0.0)


PAIRS = [(1.0, 1.2), (0.8, 0.7), (2.0, 2.5), (1.1, 1.0), (0.5, 0.9), (3.0, 3.3), (1.0, 1.0), (0.2, 0.4)]


def test_win_rate_and_interval_on_fixed_data():
    c = stats.compare("baseline", PAIRS, resamples=5000, seed=7)
    # 5 wins, 2 losses, 1 tie: (5 + 0.5) / 8.
    assert c.n == 8
    assert c.win_rate.estimate == pytest.approx(5.5 / 8)
    assert 0.0 <= c.win_rate.low < c.win_rate.estimate < c.win_rate.high <= 1.0
    improvements = [stats.relative_improvement(t, o) for t, o in PAIRS]
    assert c.mean_improvement.estimate == pytest.approx(sum(improvements) / 8)
    assert min(improvements) < c.mean_improvement.low < c.mean_improvement.estimate
    assert c.mean_improvement.estimate < c.mean_improvement.high < max(improvements)


def test_the_bootstrap_is_deterministic_given_its_seed():
    a = stats.compare("search", PAIRS, resamples=3000, seed=3)
    b = stats.compare("search", PAIRS, resamples=3000, seed=3)
    c = stats.compare("search", PAIRS, resamples=3000, seed=4)
    assert a == b
    assert a.mean_improvement.estimate == c.mean_improvement.estimate
    assert (a.mean_improvement.low, a.mean_improvement.high) != (c.mean_improvement.low, c.mean_improvement.high)


def test_pairs_without_a_finite_loss_are_left_out():
    c = stats.compare("baseline", [(1.0, 2.0), (math.nan, 1.0), (1.0, math.inf)], resamples=100)
    assert c.n == 1
    assert c.win_rate.estimate == 1.0
    empty = stats.compare("baseline", [], resamples=100)
    assert empty.n == 0 and math.isnan(empty.win_rate.estimate)
