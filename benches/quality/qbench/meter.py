"""Compute measured from the kernel, not assumed.

Every process a contender starts (a trainer, an evaluator) is run by [`run`] or, inside
`gradients run`, by the `--python` wrapper that [`write_wrapper`] writes. Both wait for the
process with `wait4`, whose rusage counts the process and every descendant it waited for, and
write one JSON record: CPU seconds (user + system), wall seconds, the argv and the working
directory. GPU-seconds are wall seconds times the GPUs the process could see.

Standard library only: the wrapper runs before any heavy import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

METER_DIR_ENV = "QBENCH_METER_DIR"
GPUS_ENV = "QBENCH_GPUS"


@dataclass(frozen=True)
class Record:
    argv: list[str]
    cwd: str
    cpu_s: float
    wall_s: float
    gpus: int
    exit_code: int  # negative: killed by that signal

    @property
    def gpu_s(self) -> float:
        return self.wall_s * self.gpus

    def cost(self, unit: str) -> float:
        return self.gpu_s if unit == "gpu" else self.cpu_s

    @property
    def kind(self) -> str:
        """`train`, `evaluate`, `preflight` or `other`, from the trainer's argv."""
        args = self.argv[1:]
        if args[:2] == ["-m", "gradients_trainer.preflight"]:
            return "preflight"
        if args[:2] == ["-m", "gradients_trainer"] and len(args) > 2:
            return args[2] if args[2] in ("train", "evaluate") else "other"
        return "other"

    def arg(self, name: str) -> str | None:
        """The value after `name` in the argv, if any."""
        try:
            return self.argv[self.argv.index(name) + 1]
        except (ValueError, IndexError):
            return None


def _gpus() -> int:
    """GPUs this process may use: `QBENCH_GPUS` (0 when the budget is in CPU-seconds), or fewer
    when `gradients run` gave the workload its own (`CUDA_VISIBLE_DEVICES`)."""
    try:
        total = int(os.environ.get(GPUS_ENV, "0"))
    except ValueError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if total and visible is not None:
        return min(total, len([d for d in visible.split(",") if d.strip()]))
    return total


def _write(record: Record, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    tmp.rename(directory / name)


def read_records(directory: Path) -> list[Record]:
    """Every record in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        out.append(Record(**data))
    return out


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def wrapper_main(argv: Sequence[str]) -> None:
    """`WRAPPER REAL_PYTHON ARGS...`: run the real interpreter, record its rusage, exit as it did.

    Signals the wrapper gets (SIGTERM, SIGINT, SIGHUP) go to the child; the wrapper stays until
    the child has ended, so whoever waits for the wrapper waits for the trainer's final save.
    """
    real, args = argv[0], list(argv[1:])
    started = time.monotonic()
    child = subprocess.Popen([real, *args])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = _exit_code(status)  # reaped here; keep Popen from waiting again
    wall = time.monotonic() - started
    directory = os.environ.get(METER_DIR_ENV)
    if directory:
        record = Record(
            argv=[real, *args], cwd=os.getcwd(), cpu_s=usage.ru_utime + usage.ru_stime,
            wall_s=wall, gpus=_gpus(), exit_code=_exit_code(status),
        )
        _write(record, Path(directory))
    code = _exit_code(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def write_wrapper(path: Path, real_python: str) -> Path:
    """An executable that `gradients run --python` can take: the real interpreter, metered."""
    package_root = Path(__file__).resolve().parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!{sys.executable} -I\n"
        "import sys\n"
        f"sys.path.insert(0, {str(package_root)!r})\n"
        "from qbench.meter import wrapper_main\n"
        f"wrapper_main([{real_python!r}, *sys.argv[1:]])\n"
    )
    path.chmod(0o755)
    return path


def _tree_cpu(pid: int) -> float:
    """CPU seconds so far of `pid` and its live descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        # utime, stime, cutime, cstime: the last two count reaped children.
        cpu[int(entry)] = sum(int(f) for f in fields[11:15]) / tick
    total, frontier = 0.0, [pid]
    while frontier:
        p = frontier.pop()
        total += cpu.get(p, 0.0)
        frontier.extend(c for c, parent in parents.items() if parent == p)
    return total


def run(
    argv: list[str], cwd: Path, log_dir: Path, *, cost_limit: float | None = None,
    unit: str = "cpu", env: dict[str, str] | None = None, record_dir: Path | None = None,
) -> Record:
    """Runs `argv` in its own session with stdout/stderr to `log_dir`; returns its record.

    With `cost_limit` the process gets SIGTERM once its cost reaches it (the trainer then
    finishes its step and saves), and SIGKILL 60 s later.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
        child = subprocess.Popen(
            argv, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        terminated_at: float | None = None
        status = usage = None
        while True:
            pid, st, ru = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                status, usage = st, ru
                break
            time.sleep(0.5)
            now = time.monotonic()
            if cost_limit is not None and terminated_at is None:
                spent = (now - started) * _gpus() if unit == "gpu" else _tree_cpu(child.pid)
                if spent >= cost_limit:
                    terminated_at = now
                    os.killpg(child.pid, signal.SIGTERM)
            if terminated_at is not None and now - terminated_at > 60:
                os.killpg(child.pid, signal.SIGKILL)
        child.returncode = _exit_code(status)
    record = Record(
        argv=list(argv), cwd=str(cwd), cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=time.monotonic() - started, gpus=_gpus(), exit_code=_exit_code(status),
    )
    if record_dir is not None:
        _write(record, record_dir)
    return record
