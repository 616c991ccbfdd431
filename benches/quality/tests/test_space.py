"""Every point of the search space is a valid trainer configuration."""

import itertools

import optuna

from gradients_trainer import strategies
from qbench import space


class Fixed:
    """A trial that always picks the i-th choice and a bound of each range."""

    def __init__(self, index: int, high: bool) -> None:
        self.index, self.high, self.params = index, high, {}

    def suggest_categorical(self, name, choices):
        self.params[name] = choices[self.index % len(choices)]
        return self.params[name]

    def suggest_float(self, name, low, high, *, log=False):
        return high if self.high else low

    def suggest_int(self, name, low, high):
        return high if self.high else low


def test_every_family_and_bound_is_accepted_by_the_trainers_own_override_check():
    assert set(space.FAMILIES) == set(strategies.names())
    for task_type, index, high in itertools.product(("instruct", "dpo", "grpo", "image"), range(11), (False, True)):
        family, overrides = space.suggest(Fixed(index, high), task_type)
        s = strategies.with_overrides(strategies.get(family), overrides)
        if task_type != "image":
            assert s.lora_alpha % s.lora_r == 0 and s.epochs >= 1


def test_tpe_suggests_the_same_configurations_for_the_same_seed():
    def first(seed):
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=2))
        out = []
        for i in range(4):
            trial = study.ask()
            out.append(space.suggest(trial, "instruct"))
            study.tell(trial, float(i))
        return out

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert first(5) == first(5)
    assert first(5) != first(6)
