"""Training progress counters shared by all trainers (no heavy imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RunState:
    planned_steps: int = 0
    # The whole schedule's optimiser steps (its epochs), before the deadline caps the plan.
    schedule_steps: int = 0
    steps: int = 0
    last_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    tokens: int = 0


def final_loss(run: RunState) -> float | None:
    """Mean of the last three logged training losses."""
    if not run.losses:
        return None
    tail = run.losses[-3:]
    value = sum(tail) / len(tail)
    return None if math.isnan(value) else value
