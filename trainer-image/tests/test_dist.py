"""The collectives of ``dist.py`` between two real gloo processes (torch only, no model):
a silent peer times out instead of hanging, a failing share fails every process the same way,
and the spread work is dealt once and gathered everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gradients_trainer.launch import free_port

SRC = Path(__file__).resolve().parent.parent / "src"

SCRIPT = r"""
import json, sys, time
from gradients_trainer import dist
dist.init()
case, rank = sys.argv[1], dist.rank()
try:
    if case == "silent":
        if rank == 1:
            time.sleep(10)  # alive but never joins the collective (the timeout is 3 s)
            out = "slept"
        else:
            started = time.time()
            try:
                dist.any_of(True)
                out = "answered"
            except dist.CollectiveFailed as exc:
                out = {"failed_after_s": time.time() - started, "message": str(exc)[:200]}
    elif case == "failing":
        def work(i):
            if i == 3:
                raise MemoryError("out of memory on job 3")
            return [float(i)]
        try:
            dist.spread([1] * 6, work)
            out = "no error"
        except Exception as exc:
            out = {"type": type(exc).__name__, "message": str(exc)}
    else:
        done = []
        def work(i):
            done.append(i)
            return [float(i), 10.0 * i]
        out = {"values": dist.spread([2] * 5, work), "computed": done,
               "flags": dist.any_of(rank == 1, False), "sums": dist.sum_of(1.5, rank)}
finally:
    print(json.dumps(out), flush=True)
"""


def two_processes(case: str, timeout_s: str = "60") -> list[object]:
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, PYTHONPATH=str(SRC), RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   GRADIENTS_DIST_TIMEOUT_S=timeout_s)
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT, case], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outs = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        outs.append(json.loads([x for x in stdout.splitlines() if x.strip()][-1]))
    return outs


def test_spread_deals_each_job_once_and_every_process_gets_all() -> None:
    zero, one = two_processes("spread")
    expected = [[float(i), 10.0 * i] for i in range(5)]
    assert zero["values"] == one["values"] == expected  # type: ignore[index]
    assert zero["computed"] == [0, 2, 4] and one["computed"] == [1, 3]  # type: ignore[index]
    assert zero["flags"] == one["flags"] == [True, False]  # type: ignore[index]
    assert zero["sums"] == one["sums"] == [3.0, 1.0]  # type: ignore[index]


def test_a_failing_share_fails_every_process_with_its_reason() -> None:
    zero, one = two_processes("failing")
    assert one == {"type": "MemoryError", "message": "out of memory on job 3"}
    assert zero == {"type": "RankFailed", "message": "rank 1: MemoryError: out of memory on job 3"}


def test_a_silent_peer_times_out_instead_of_hanging() -> None:
    zero, one = two_processes("silent", timeout_s="3")
    assert one == "slept"
    assert isinstance(zero, dict), zero
    assert 2.5 <= zero["failed_after_s"] < 25, zero
    assert zero["message"].startswith("all-reduce across 2 processes failed"), zero
