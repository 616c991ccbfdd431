"""Launch one process per device and supervise them; the pod sees one process.

``train`` and ``evaluate`` re-run themselves (same arguments) as N workers, N = the visible
CUDA devices or ``--processes``. The launcher keeps the workload contract: rank 0's stdout
becomes its stdout (JSON lines only), the others' goes to stderr; SIGTERM is forwarded to
every worker (they agree to stop at the next step, rank 0 saves); when a worker dies the rest
get ``GRACE_S`` to finish on their own and are then killed, so nothing waits forever. Artifact
transfers stay in the launcher (``cli.main``): the workers never fetch or store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Sequence

from .contract import TaskType, log, write_stdout

STARTED_ENV = "GRADIENTS_STARTED_AT"
# After a worker fails, the others get this long to notice (a collective error) and exit.
GRACE_S = 20.0
# Task types whose trainer/evaluator runs data-parallel; the others use one process.
PARALLEL = {
    "train": (TaskType.INSTRUCT, TaskType.DPO),
    "evaluate": (TaskType.INSTRUCT, TaskType.DPO),
}


def visible_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def process_count(command: str, task: TaskType, requested: int | None) -> int:
    """Processes to run: ``--processes`` or one per visible GPU; 1 for one-process task types."""
    wanted = requested if requested is not None else max(1, visible_devices())
    if wanted > 1 and task not in PARALLEL.get(command, ()):
        log(f"{command} --task-type {task.value} runs in one process; "
            f"{wanted - 1} more device(s) stay idle")
        return 1
    return wanted


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Outcome:
    """How the workers ended: per-rank exit codes (negative: killed by that signal)."""

    codes: list[int]
    first_failure: int | None  # the rank that failed first, if any
    wall_s: float = 0.0

    def describe(self) -> str:
        if self.first_failure is None:
            return "all processes succeeded"
        r = self.first_failure
        return f"process rank {r} of {len(self.codes)} {describe_code(self.codes[r])}"


def describe_code(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def worker_env(rank: int, world: int, port: int, started: float) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GRADIENTS_TRANSFERS", None)  # the launcher fetched the inputs and stores the output
    env.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        STARTED_ENV: repr(started), "PYTHONUNBUFFERED": "1",
    })
    return env


def _die_with_parent() -> None:
    """In the worker before exec: the kernel kills it if the launcher dies (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (not Linux)
        pass


def _relay(stream: IO[str]) -> None:
    """Rank 0's contract lines to our stdout; anything else (should native code print) to stderr."""
    for line in stream:
        if line.startswith("{"):
            write_stdout(line)
        elif line.strip():
            log(line)


def run_workers(argv: Sequence[str], world: int) -> Outcome:
    """Start ``world`` copies of ``python -m gradients_trainer ARGV`` and wait for all."""
    started = time.time()
    port = free_port()
    procs: list[subprocess.Popen[str]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for rank in range(world):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gradients_trainer", *argv],
                env=worker_env(rank, world, port, started),
                stdout=subprocess.PIPE if rank == 0 else 2, text=True,
                preexec_fn=_die_with_parent,
            ))
        log(f"launched {world} processes: "
            + ", ".join(f"rank {r} pid {p.pid}" for r, p in enumerate(procs)))
        assert procs[0].stdout is not None
        relay = threading.Thread(target=_relay, args=(procs[0].stdout,), daemon=True)
        relay.start()
        outcome = _supervise(procs)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs:  # only reached with live workers when the launcher itself failed
            if p.poll() is None:
                p.kill()
    relay.join(timeout=10)
    outcome.wall_s = round(time.time() - started, 3)
    return outcome


def _supervise(procs: list[subprocess.Popen[str]]) -> Outcome:
    first_failure: int | None = None
    deadline: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        for r, c in enumerate(codes):
            if c is not None and c != 0 and first_failure is None:
                first_failure = r
                deadline = time.time() + GRACE_S
                log(f"error: process rank {r} {describe_code(c)}; "
                    f"stopping the other {len(procs) - 1} within {GRACE_S:.0f} s")
        if deadline is not None and time.time() >= deadline:
            for r, p in enumerate(procs):
                if p.poll() is None:
                    log(f"killing process rank {r} (pid {p.pid})")
                    p.kill()
            deadline = None
        time.sleep(0.1)
    final = [int(p.returncode) for p in procs]
    if first_failure is None:
        first_failure = next((r for r, c in enumerate(final) if c != 0), None)
    return Outcome(codes=final, first_failure=first_failure)


def training_outcome(outcome: Outcome) -> int:
    """Exit code of ``train``: the workers' shared code, else 1 with the failing rank named."""
    from .contract import EXIT_FAILURE

    codes = set(outcome.codes)
    if len(codes) == 1 and min(codes) >= 0:
        return codes.pop()  # all succeeded, or all refused the same input (2) or failed (1)
    log(f"error: training failed: {outcome.describe()}; the other processes were stopped "
        "(the last periodic save, if any, is in the output)")
    return EXIT_FAILURE


def evaluation_outcome(outcome: Outcome, termination_path: Path | None) -> int:
    """Rank 0 wrote the result when it exited 0; otherwise the launcher writes one (category
    ``evaluator``: the evaluation's own processes failed, worth a retry)."""
    from .contract import EXIT_FAILURE, EXIT_OK, EvalResult

    if outcome.codes[0] == 0:
        return EXIT_OK
    result = EvalResult().fail(f"evaluator: {outcome.describe()}", "evaluator")
    result.timings["total_s"] = outcome.wall_s
    text = result.to_json()
    try:
        if termination_path is not None:
            termination_path.parent.mkdir(parents=True, exist_ok=True)
            termination_path.write_text(text)
        write_stdout(text)
    except OSError as exc:
        log(f"error: writing the result: {exc}")
        return EXIT_FAILURE
    return EXIT_OK
