"""How the baseline is given all of B (AutoTrain's hyperparameters, its epochs raised to spend B),
and how the search prices a rung before it starts one."""

import pytest

from qbench.contenders import fitted_epochs, rung_estimate


def test_epochs_are_raised_in_proportion_to_the_unspent_budget_and_rounded_down():
    assert fitted_epochs(cost=20.0, budget=240.0) == 36.0
    assert fitted_epochs(cost=21.0, budget=100.0) == 14.0  # 3 * 100 / 21 = 14.28


def test_no_second_run_when_not_one_more_epoch_fits():
    assert fitted_epochs(cost=20.0, budget=26.0) is None  # 3.9 epochs' worth: 4 would not fit
    assert fitted_epochs(cost=20.0, budget=80.0 / 3) == 4.0  # exactly four epochs' worth
    assert fitted_epochs(cost=50.0, budget=40.0) is None  # the 3 epochs already cost more than B
    assert fitted_epochs(cost=0.0, budget=40.0) is None  # nothing measured: nothing to scale


def _tournament(train_cost: float, train_wall: float, trainings: int, eval_cost: float, hours: float) -> dict:
    return {"cpu_per_wall": train_cost / train_wall, "mean_train_cost": train_cost / trainings,
            "mean_eval_cost": eval_cost, "hours_per_miner": hours, "budget": train_cost + eval_cost * trainings}


def test_a_rung_of_an_epoch_bound_task_is_priced_at_what_a_miner_spent_so_the_search_can_start():
    # The DPO example at 360 s per miner: both miners ended their epochs after about 34 s.
    t = _tournament(train_cost=65.1, train_wall=68.7, trainings=2, eval_cost=13.2, hours=0.1)
    first_rung = rung_estimate(t, 0.1 / 3)
    assert first_rung == pytest.approx(32.6 + 13.2, abs=0.1)
    assert first_rung < t["budget"]
    # Priced at the wall-clock rate alone, the first rung would cost more than all of B.
    assert t["cpu_per_wall"] * 0.1 / 3 * 3600 + 13.2 > t["budget"]


def test_a_rung_of_a_time_bound_task_is_priced_by_its_share_of_the_allotment():
    # Miners that trained their whole 108 s: 10 CPU-s of start-up, then 0.8 CPU per wall second.
    t = _tournament(train_cost=4 * (10 + 0.8 * 108), train_wall=4 * 120, trainings=4, eval_cost=15.0, hours=0.03)
    full, third = rung_estimate(t, 0.03), rung_estimate(t, 0.01)
    assert third < full
    assert full == pytest.approx(t["mean_train_cost"] + 15.0)
    assert full - third == pytest.approx(t["cpu_per_wall"] * 72, rel=1e-9)
