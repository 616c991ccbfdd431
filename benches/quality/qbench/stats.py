"""Win rates and relative loss improvements with paired-bootstrap confidence intervals.

Every comparison is paired: the tournament and a contender on the same task (same split,
same evaluator). The bootstrap resamples tasks with replacement, keeping each task's pair
together, so the interval reflects how much the figure depends on which tasks were drawn.
Lower loss is better; losses may be negative (GRPO's are negated rewards), so relative
improvements divide by the magnitude of the contender's loss.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence


def relative_improvement(tournament: float, other: float) -> float:
    """How much lower the tournament's loss is, as a share of the other's: (other - t) / |other|.

    Positive: the tournament is better. Zero when both are equal; ±inf when `other` is 0.
    """
    if tournament == other:
        return 0.0
    if other == 0:
        return math.inf if tournament < other else -math.inf
    return (other - tournament) / abs(other)


def win(tournament: float, other: float) -> float:
    """1 when the tournament's loss is lower, 0.5 on a tie, 0 otherwise."""
    if tournament < other:
        return 1.0
    if tournament == other:
        return 0.5
    return 0.0


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """The tournament against one contender over `n` tasks."""

    contender: str
    n: int
    win_rate: Interval
    mean_improvement: Interval


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default `linear` method)."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def paired_bootstrap(
    pairs: Sequence[tuple[float, float]], statistic: str, *, resamples: int = 10000,
    seed: int = 0, confidence: float = 0.95,
) -> Interval:
    """Percentile interval of `statistic` (`win_rate` or `mean_improvement`) over `pairs` of
    (tournament loss, contender loss), resampling the pairs with replacement."""
    fn = {"win_rate": win, "mean_improvement": relative_improvement}[statistic]
    values = [fn(t, o) for t, o in pairs]
    if not values:
        return Interval(math.nan, math.nan, math.nan)
    estimate = sum(values) / len(values)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    return Interval(estimate, _percentile(means, alpha), _percentile(means, 1 - alpha))


def compare(
    contender: str, pairs: Sequence[tuple[float, float]], *, resamples: int = 10000, seed: int = 0,
) -> Comparison:
    """Pairs whose losses are not both finite are left out (a failed contender is not a win)."""
    kept = [(t, o) for t, o in pairs if math.isfinite(t) and math.isfinite(o)]
    return Comparison(
        contender=contender,
        n=len(kept),
        win_rate=paired_bootstrap(kept, "win_rate", resamples=resamples, seed=seed),
        mean_improvement=paired_bootstrap(kept, "mean_improvement", resamples=resamples, seed=seed),
    )
