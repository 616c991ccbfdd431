"""Untrusted GRPO reward code, run in a separate, kernel-confined process.

Each call starts ``python -I -S sandbox_child.py`` with a clean environment (no GRADIENTS_*
variables, nothing that names the miner), an empty temporary working directory, only its
stdin/stdout/stderr pipes open and its own session. The child sets rlimits, loads the
standard-library modules a reward may use, compiles the source and then installs a seccomp
filter on itself (see ``sandbox_child.py``): from there it can compute and write to its pipes,
nothing else. A fork, exec, socket or signal kills it; opening, stat-ing or writing a file
fails with EPERM. The parent bounds the wall clock and the output, kills the child's process
group in every case, and accepts exactly one result line with one number per completion.
Any misbehaviour is a :class:`SandboxError` for that call, never a failure of the caller.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import InputError
from .sandbox_child import RESULT_MARK

CHILD = Path(__file__).with_name("sandbox_child.py")
# The reward's whole environment: nothing about the task, the miner or the caller.
CHILD_ENV = {"LC_ALL": "C.UTF-8"}
STDERR_CAP = 16 << 20  # bytes of reward output (prints) before the call is stopped
STDERR_TAIL = 4096


def default_timeout_s() -> float:
    return float(os.environ.get("GRADIENTS_REWARD_TIMEOUT_S", "30"))


def default_memory_mb() -> int:
    return int(os.environ.get("GRADIENTS_REWARD_MEMORY_MB", "1024"))


@dataclass(frozen=True)
class RewardSpec:
    name: str
    source: str
    weight: float


class SandboxError(Exception):
    """A reward function failed: timeout, exception, blocked operation, bad output."""


class SandboxUnavailable(SandboxError):
    """The kernel refused the seccomp filter: no reward runs here (fail closed). This is the
    machine's fault, not the reward's."""


def load_reward_specs(path: Path, argument: str = "--reward-functions") -> list[RewardSpec]:
    if not path.is_file():
        raise InputError(argument, f"file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(argument, f"{path.name}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not data:
        raise InputError(argument, f"{path.name}: must be a non-empty JSON list")
    specs: list[RewardSpec] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(argument, f"{path.name}: entry {i} is not an object")
        name, source, weight = item.get("name"), item.get("source"), item.get("weight", 1.0)
        if not isinstance(name, str) or not name:
            raise InputError(argument, f"{path.name}: entry {i} has no 'name'")
        if not isinstance(source, str) or not source.strip():
            raise InputError(argument, f"{path.name}: reward '{name}' has no 'source'")
        if not isinstance(weight, (int, float)) or weight < 0 or math.isnan(float(weight)):
            raise InputError(argument, f"{path.name}: reward '{name}' weight must be >= 0")
        specs.append(RewardSpec(name=name, source=source, weight=float(weight)))
    return specs


def run_reward(
    spec: RewardSpec,
    completions: list[str],
    prompts: list[str] | None = None,
    extra: list[Any] | None = None,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
) -> list[float]:
    """Run one reward function on a batch in a fresh confined process."""
    timeout = default_timeout_s() if timeout_s is None else timeout_s
    request = json.dumps(
        {
            "name": spec.name,
            "source": spec.source,
            "completions": completions,
            "prompts": prompts if prompts is not None else [""] * len(completions),
            "extra": extra if extra is not None else [None] * len(completions),
            "memory_mb": default_memory_mb() if memory_mb is None else memory_mb,
            "cpu_s": max(1, int(math.ceil(timeout))),
        },
        default=str,
    ).encode()
    # A result line is short: one number per completion.
    stdout_cap = 4096 + 40 * len(completions)
    with tempfile.TemporaryDirectory(prefix="gradients-reward-") as cwd:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=CHILD_ENV,
            close_fds=True,
            start_new_session=True,
        )
        try:
            out, err, problem = _exchange(proc, request, time.monotonic() + timeout, stdout_cap)
        finally:
            # The group dies whatever happened; the unreaped child keeps its pid from reuse.
            _kill_group(proc)
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()
    name = f"reward '{spec.name}'"
    if problem == "timeout":
        raise SandboxError(f"{name} timed out after {timeout:g}s")
    if problem is not None:
        raise SandboxError(f"{name} failed: {problem}")
    return _parse(name, out, err, proc.returncode, len(completions))


def _exchange(proc: subprocess.Popen[bytes], request: bytes, deadline: float,
              stdout_cap: int) -> tuple[bytes, bytes, str | None]:
    """Feeds the request and collects bounded output until both pipes close (or the deadline,
    or too much output); returns (stdout, stderr tail, problem)."""
    assert proc.stdin and proc.stdout and proc.stderr
    out, err, err_total = bytearray(), bytearray(), 0
    pending = memoryview(request)
    with selectors.DefaultSelector() as sel:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(out), bytes(err), "timeout"
            for key, _ in sel.select(remaining):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > stdout_cap:
                        return bytes(out), bytes(err), "too much output on the result channel"
                else:
                    err_total += len(chunk)
                    err = (err + chunk)[-STDERR_TAIL:]
                    if err_total > STDERR_CAP:
                        return bytes(out), bytes(err), f"too much output (over {STDERR_CAP >> 20} MiB)"
    # Wait for the exit without reaping (WNOWAIT): the group is killed before the pid is freed.
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return bytes(out), bytes(err), "timeout"
        time.sleep(0.002)
    return bytes(out), bytes(err), None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _parse(name: str, out: bytes, err: bytes, returncode: int, n: int) -> list[float]:
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith(RESULT_MARK)]
    stderr = err.decode(errors="replace")
    if returncode < 0:
        sig = -returncode
        reason = f"killed by signal {signal.Signals(sig).name}" if sig in signal.valid_signals() else f"killed by signal {sig}"
        if sig == signal.SIGSYS:
            reason = "stopped by the sandbox: a forbidden system call (process, exec, network or signal)"
        elif sig == signal.SIGXCPU:
            # The CPU limit equals the wall timeout: on a loaded machine a busy loop can reach
            # it before the parent notices the deadline, and it is the same failure.
            reason = "timed out: used up its CPU time"
        notes = [ln[len("sandbox: "):] for ln in stderr.splitlines() if ln.startswith("sandbox: ")]
        raise SandboxError(f"{name} {reason}" + (f"; {notes[-1]}" if notes else ""))
    if len(lines) != 1:
        detail = _last_error(stderr)
        what = "no result" if not lines else "more than one result line"
        raise SandboxError(f"{name} failed: {what}" + (f" ({detail})" if detail else ""))
    try:
        payload = json.loads(lines[0][len(RESULT_MARK):])
    except json.JSONDecodeError:
        raise SandboxError(f"{name} failed: a malformed result") from None
    if not isinstance(payload, dict):
        raise SandboxError(f"{name} failed: a malformed result")
    if "unavailable" in payload:
        raise SandboxUnavailable(f"{name} cannot run: {payload['unavailable']}")
    if "error" in payload:
        raise SandboxError(f"{name} failed: {payload['error']}")
    values = payload.get("values")
    if not isinstance(values, list) or len(values) != n or not all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    ):
        raise SandboxError(f"{name} failed: the result is not one number per completion")
    return [float("nan") if v is None else float(v) for v in values]


def probe(spec: RewardSpec, prompts: list[str], extras: list[Any],
          timeout_s: float | None = None) -> None:
    """Run a reward once on a tiny batch (real prompts and extra data, a short and an empty
    completion) before any model is loaded; raises SandboxError on failure."""
    prompts = (prompts or ["probe prompt"])[:2]
    extras = (extras or [None])[:2]
    while len(extras) < len(prompts):
        extras.append(None)
    completions = ["probe completion", ""][: len(prompts)]
    values = run_reward(spec, completions, prompts, extras, timeout_s)
    if any(math.isnan(v) or math.isinf(v) for v in values):
        raise SandboxError(f"reward '{spec.name}' returned a non-finite value on a probe")


class SandboxedReward:
    """A TRL-compatible reward callable that delegates to the sandbox.

    In training a failing reward is disabled (returns zeros) after its first failure so a
    broken miner-supplied function costs at most one timeout.
    """

    def __init__(self, spec: RewardSpec, timeout_s: float | None = None) -> None:
        self.spec = spec
        self.__name__ = spec.name
        self.timeout_s = timeout_s
        self.failed: str | None = None

    def __call__(self, prompts: list[Any] | None = None, completions: list[Any] | None = None,
                 **kwargs: Any) -> list[float]:
        comps = [_as_text(c) for c in (completions or [])]
        if self.failed is not None:
            return [0.0] * len(comps)
        extra = kwargs.get("extra_data")
        try:
            values = run_reward(self.spec, comps, [_as_text(p) for p in (prompts or [])] or None,
                                list(extra) if extra is not None else None, self.timeout_s)
        except SandboxUnavailable:
            raise  # no sandbox on this machine: stop rather than train on zeros
        except SandboxError as exc:
            self.failed = str(exc)
            sys.stderr.write(f"warning: {exc}; reward disabled for the rest of training\n")
            return [0.0] * len(comps)
        return [0.0 if (math.isnan(v) or math.isinf(v)) else v for v in values]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)
