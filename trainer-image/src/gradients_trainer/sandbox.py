"""Untrusted GRPO reward code, run in a separate ``python -I`` process.

The child drops into its own network namespace where the kernel allows it (``unshare``),
sets RLIMIT_AS / RLIMIT_CPU / RLIMIT_FSIZE / RLIMIT_CORE, and installs an audit hook that
refuses sockets, process creation, ``ctypes`` and signals before it ever reads the reward
source. The parent enforces a wall-clock limit and kills the child's process group. The
reward source is never compiled or executed in the trainer's or evaluator's interpreter.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import InputError



def default_timeout_s() -> float:
    return float(os.environ.get("GRADIENTS_REWARD_TIMEOUT_S", "30"))


def default_memory_mb() -> int:
    return int(os.environ.get("GRADIENTS_REWARD_MEMORY_MB", "1024"))


RESULT_MARK = "@@GRADIENTS_REWARD@@"

_BOOT = r'''
import json, os, resource, sys
req = json.loads(sys.stdin.read())
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:            # CLONE_NEWNET
        libc.unshare(0x10000000 | 0x40000000)    # CLONE_NEWUSER | CLONE_NEWNET
    del libc, ctypes
except Exception:
    pass
mem = int(req["memory_mb"]) << 20
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
cpu = int(req["cpu_s"])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
out_fd = os.dup(1)
os.dup2(2, 1)
BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "os.forkpty", "os.kill", "os.killpg", "ctypes.", "signal.",
           "pty.", "os.startfile", "webbrowser.", "urllib.Request", "http.client.")
def hook(event, args):
    if event.startswith(BLOCKED):
        if event.startswith("socket."):
            raise PermissionError("network access is blocked in reward code (" + event + ")")
        raise PermissionError("blocked in reward code: " + event)
sys.addaudithook(hook)
import inspect, math
ns = {"__name__": "reward_module"}
filename = "<reward:" + req["name"] + ">"
exec(compile(req["source"], filename, "exec"), ns)
fn = ns.get(req["name"])
if not callable(fn):
    funcs = [v for v in ns.values() if inspect.isfunction(v) and v.__code__.co_filename == filename]
    if not funcs:
        raise ValueError("reward source defines no function")
    fn = funcs[-1]
kwargs = {"prompts": req["prompts"], "extra_data": req["extra"]}
try:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
except (TypeError, ValueError):
    pass
values = fn(req["completions"], **kwargs)
values = [float("nan") if v is None else float(v) for v in list(values)]
if len(values) != len(req["completions"]):
    raise ValueError("reward returned %d values for %d completions" % (len(values), len(req["completions"])))
os.write(out_fd, (MARK + json.dumps(values) + "\n").encode())
'''.replace("MARK", repr(RESULT_MARK))


@dataclass(frozen=True)
class RewardSpec:
    name: str
    source: str
    weight: float


class SandboxError(Exception):
    """A reward function failed: timeout, exception, blocked operation, bad output."""


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
    """Run one reward function on a batch in a fresh sandboxed interpreter."""
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
    )
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent",
           "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="gradients-reward-") as cwd:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(request.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise SandboxError(f"reward '{spec.name}' timed out after {timeout:g}s") from None
    stdout = out.decode(errors="replace")
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return [float(v) for v in json.loads(line[len(RESULT_MARK):])]
    reason = _last_error(err.decode(errors="replace"))
    if proc.returncode is not None and proc.returncode < 0:
        sig = -proc.returncode
        reason = f"killed by signal {signal.Signals(sig).name}" + (f" ({reason})" if reason else "")
    raise SandboxError(f"reward '{spec.name}' failed: {reason or 'no result'}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


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
