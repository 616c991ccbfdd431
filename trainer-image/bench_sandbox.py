#!/usr/bin/env python3
"""Per-call overhead of the reward sandbox: the wall time of ``run_reward`` for the examples'
rewards (``examples/grpo/task.yaml``: ``short``), against the same function called in-process.

    $(./setup-env | tail -1) bench_sandbox.py [--calls 30] [--batch 8]

Prints the median and the 90th percentile per call (the reward itself takes microseconds, so
this is the cost of a fresh confined interpreter: start-up, preloads, filter, pipes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

from gradients_trainer.sandbox import RewardSpec, run_reward  # noqa: E402

SHORT = (
    "def short(completions, **kwargs):\n"
    "    return [1.0 - min(len(c.strip()), 24) / 24 for c in completions]\n"
)


def timed(fn: object, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return sorted(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8, help="completions per call (the trainer's batch)")
    args = ap.parse_args()
    completions = [f"Oak number {i}" for i in range(args.batch)]
    spec = RewardSpec("short", SHORT, 1.0)
    run_reward(spec, completions)  # warm the page cache
    ns: dict[str, object] = {}
    exec(SHORT, ns)
    direct = timed(lambda: ns["short"](completions), args.calls)  # type: ignore[operator]
    sandboxed = timed(lambda: run_reward(spec, completions), args.calls)

    def p(ts: list[float], q: float) -> float:
        return ts[min(len(ts) - 1, int(q * len(ts)))] * 1000

    print(f"{args.calls} calls, {args.batch} completions each, python {sys.version.split()[0]}")
    print(f"in-process: median {statistics.median(direct) * 1e6:.1f} µs")
    print(f"sandboxed:  median {statistics.median(sandboxed) * 1000:.1f} ms, p90 {p(sandboxed, 0.9):.1f} ms")


if __name__ == "__main__":
    main()
