"""Time budget: deadline parsing, step planning, periodic saving and SIGTERM handling."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from .contract import InputError, emit, log


def parse_deadline(hours: float | None, now: float) -> float:
    """Return the deadline as a UNIX timestamp: ``--hours`` from ``now`` (the trainer's start).

    The workload contract gives a budget, not an instant: a pod's start is not known when its
    Job is written (``src/workloads/contract.rs``).
    """
    if hours is None:
        raise InputError("--hours", "required")
    if not hours > 0 or hours != hours or hours == float("inf"):
        raise InputError("--hours", f"must be a finite number > 0, got {hours}")
    return now + hours * 3600.0


class Budget:
    """Tracks the time left, decides when to stop and when to save.

    The trainer stops when the time left, minus a reserve for the final save, no longer
    covers 1.5 more steps. A first checkpoint is written after the first optimiser step and
    then every ``save_interval_s``, so a valid model exists even if the process is killed.
    """

    def __init__(self, deadline_ts: float, start: float | None = None) -> None:
        self.start = time.time() if start is None else start
        self.deadline = deadline_ts
        total = max(1.0, deadline_ts - self.start)
        self.total_s = total
        self.save_reserve_s = max(2.0, min(0.1 * total, 300.0))
        self.save_interval_s = max(30.0, total / 8.0)
        self.last_save = 0.0
        self.saves = 0
        self.sigterm = False
        self.step_times: list[float] = []
        self._last_step_end: float | None = None
        self.stopped_by_deadline = False

    # --- signals -----------------------------------------------------------------------
    def install_sigterm(self) -> Any:
        """Install the SIGTERM handler; returns the previous handler."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log("SIGTERM received: saving and exiting")
            self.sigterm = True

        return signal.signal(signal.SIGTERM, handler)

    # --- timing ------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline - time.time()

    def elapsed(self) -> float:
        return time.time() - self.start

    def step_started(self) -> None:
        if self._last_step_end is None:
            self._last_step_end = time.time()

    def step_finished(self) -> None:
        now = time.time()
        if self._last_step_end is not None:
            self.step_times.append(now - self._last_step_end)
        self._last_step_end = now

    def mean_step_s(self) -> float:
        recent = self.step_times[-20:]
        return sum(recent) / len(recent) if recent else 0.0

    def note_save(self, seconds: float) -> None:
        self.saves += 1
        self.last_save = time.time()
        self.save_reserve_s = max(self.save_reserve_s, 3.0 * seconds + 1.0)

    def should_stop(self) -> bool:
        if self.sigterm:
            self.stopped_by_deadline = True
            return True
        if self.remaining() - self.save_reserve_s < 1.5 * self.mean_step_s():
            self.stopped_by_deadline = True
            return True
        return False

    def should_save(self) -> bool:
        if self.saves == 0:
            return True
        return time.time() - self.last_save >= self.save_interval_s

    def replan(self, epoch_steps: int, done: int) -> int:
        """After ``done`` measured steps: the total steps that fit the remaining budget."""
        if self.mean_step_s() <= 0:
            return epoch_steps
        return min(epoch_steps, done + self.plan_steps(epoch_steps - done, self.mean_step_s()))

    def plan_exhausted(self, step: int, planned: int, epoch_steps: int) -> bool:
        """True when the budget-capped plan is done (counts as stopped by the deadline)."""
        if step < planned:
            return False
        if planned < epoch_steps:
            self.stopped_by_deadline = True
        return True

    def plan_steps(self, epoch_steps: int, est_step_s: float | None = None) -> int:
        """Steps to plan for: the strategy's epochs, capped by what the budget allows."""
        if est_step_s is None or est_step_s <= 0:
            return max(1, epoch_steps)
        usable = max(0.0, self.remaining() - self.save_reserve_s)
        return max(1, min(epoch_steps, int(usable / (est_step_s * 1.2))))


def progress(step: int, total: int, loss: float | None, budget: Budget) -> None:
    emit(
        "progress",
        step=step,
        total_steps=total,
        loss=None if loss is None else round(float(loss), 6),
        elapsed_s=round(budget.elapsed(), 3),
    )
