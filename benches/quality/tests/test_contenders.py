"""How the baseline is given all of B: AutoTrain's hyperparameters, its epochs raised to spend B."""

from qbench.contenders import fitted_epochs


def test_epochs_are_raised_in_proportion_to_the_unspent_budget_and_rounded_down():
    assert fitted_epochs(cost=20.0, budget=240.0) == 36.0
    assert fitted_epochs(cost=21.0, budget=100.0) == 14.0  # 3 * 100 / 21 = 14.28


def test_no_second_run_when_not_one_more_epoch_fits():
    assert fitted_epochs(cost=20.0, budget=26.0) is None  # 3.9 epochs' worth: 4 would not fit
    assert fitted_epochs(cost=20.0, budget=80.0 / 3) == 4.0  # exactly four epochs' worth
    assert fitted_epochs(cost=50.0, budget=40.0) is None  # the 3 epochs already cost more than B
    assert fitted_epochs(cost=0.0, budget=40.0) is None  # nothing measured: nothing to scale
