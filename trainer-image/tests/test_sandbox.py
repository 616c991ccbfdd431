"""The GRPO reward sandbox against hostile reward code: each attack was reproduced against the
audit-hook sandbox first; the sandbox must make every one of them fail without harming the
caller (evaluator or trainer)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import tinydata as td
from gradients_trainer.sandbox import RewardSpec, SandboxError, run_reward

SRC = Path(__file__).resolve().parents[1] / "src"
REPO = Path(__file__).resolve().parents[2]


def reward(name: str, body: str) -> RewardSpec:
    return RewardSpec(name, textwrap.dedent(body), 1.0)


def _daemon_source(target: Path) -> str:
    """Reward code that starts a detached shell with `_posixsubprocess.fork_exec` (no audit
    event), which outlives the reward call and overwrites `target` a moment later."""
    return f"""
        import os, _posixsubprocess
        def sneaky(completions, **kwargs):
            script = b"exec </dev/null >/dev/null 2>&1; sleep 1; echo '{{\\"ok\\":true,\\"test_loss\\":-99}}' > {target}"
            r, w = os.pipe()
            _posixsubprocess.fork_exec(
                [b"/bin/sh", b"-c", script], [b"/bin/sh"], True, (), None, None,
                -1, -1, -1, -1, -1, -1, r, w, False, True, -1, None, None, None, -1, None, False)
            return [1.0 for _ in completions]
    """


def test_fork_exec_cannot_start_a_detached_process_that_forges_the_result(tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    with pytest.raises(SandboxError, match="sneaky"):
        run_reward(reward("sneaky", _daemon_source(termination)), ["a"])
    # The evaluator writes its result after the rewards; nothing may overwrite it later.
    termination.write_text('{"ok": true, "test_loss": 1.5}')
    time.sleep(2.0)
    assert json.loads(termination.read_text())["test_loss"] == 1.5


def test_reward_cannot_learn_which_miner_it_scores(tmp_path: Path) -> None:
    """The evaluator's command line, environment and working directory name the miner."""
    spy = reward("spy", """
        import os
        def spy(completions, **kwargs):
            seen = repr(dict(os.environ))
            probes = [os.getcwd, lambda: os.uname().nodename]
            for pid in (os.getppid(), 1, "self"):
                for what in ("cmdline", "environ"):
                    probes.append(lambda p=f"/proc/{pid}/{what}": open(p, "rb").read().decode("latin-1"))
            for probe in probes:
                try:
                    seen += probe()
                except Exception:
                    pass
            return [float("alice" in seen) for _ in completions]
    """)
    evaluator = tmp_path / "miner-alice"
    evaluator.mkdir()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from gradients_trainer.sandbox import RewardSpec, run_reward;"
        f"print(run_reward(RewardSpec('spy', {spy.source!r}, 1.0), ['x']))"
    )
    env = {**os.environ, "GRADIENTS_MINER": "alice", "GRADIENTS_SUBMISSION": "/artifacts/alice/model"}
    proc = subprocess.run([sys.executable, "-c", script, str(SRC), "--submission", "/artifacts/alice"],
                          cwd=evaluator, env=env, capture_output=True, text=True, timeout=60)
    # A denied open may surface as a failed reward or be swallowed; either way nothing leaks.
    assert "[1.0]" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[0.0]" or "SandboxError" in proc.stderr, proc.stdout + proc.stderr


def _children_of_me() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == me:
                found.append(int(entry))
    return found


def test_the_kernel_filter_is_installed_in_the_reward_process() -> None:
    """Observed from outside (the status of the live reward process) and from inside (a file
    open the audit hook does not look at gets EPERM from the kernel)."""
    probe = reward("probe", """
        import os, time
        def probe(completions, **kwargs):
            try:
                os.close(os.open("/proc/self/status", os.O_RDONLY))
                code = 0
            except OSError as exc:
                code = exc.errno
            time.sleep(1.5)
            return [float(code) for _ in completions]
    """)
    before = set(_children_of_me())
    statuses: list[str] = []

    def watch() -> None:
        deadline = time.time() + 10
        while time.time() < deadline and not statuses:
            for pid in set(_children_of_me()) - before:
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                line = next((ln for ln in text.splitlines() if ln.startswith("Seccomp:")), "")
                if line.split()[-1:] == ["2"]:
                    statuses.append(line)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    values = run_reward(probe, ["a", "b"])
    watcher.join()
    assert values == [float(errno.EPERM)] * 2
    assert statuses, "no reward process ran in seccomp filter mode (Seccomp: 2)"


def _filtered(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in an isolated interpreter right after the sandbox's filter is installed."""
    boot = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('child', {str(SRC / 'gradients_trainer' / 'sandbox_child.py')!r})\n"
        "child = importlib.util.module_from_spec(spec); spec.loader.exec_module(child)\n"
        "import os, socket\n"
        "child.install_filter(writable_fds=(1, 2))\n"
    )
    return subprocess.run([sys.executable, "-I", "-S", "-c", boot + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("attack", [
    "os.fork()",
    "import _posixsubprocess",  # a module not loaded before the filter cannot be loaded
    "socket.socket()",
    "os.kill(os.getppid(), 0)",
    "os.execv('/bin/sh', ['sh', '-c', 'true'])",
])
def test_process_creation_exec_network_and_signals_kill_the_reward_process(attack: str) -> None:
    proc = _filtered(f"print('before', flush=True)\n{attack}\nprint('after', flush=True)\n")
    assert proc.stdout.startswith("before"), proc.stderr
    assert "after" not in proc.stdout
    assert proc.returncode == -signal.SIGSYS or "ModuleNotFoundError" in proc.stderr, (proc.returncode, proc.stderr)


def test_files_cannot_be_opened_or_written_under_the_filter(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("intact")
    proc = _filtered(f"""
        results = []
        for attempt in (lambda: open({str(victim)!r}, "w"), lambda: open("/proc/self/status"),
                        lambda: os.stat("/"), lambda: os.listdir("/"), lambda: os.write(3, b"x"),
                        lambda: os.uname()):
            try:
                attempt()
                results.append("allowed")
            except OSError as exc:
                results.append(exc.errno)
        print(results)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([errno.EPERM] * 6)
    assert victim.read_text() == "intact"


def test_a_reward_that_floods_its_output_fails_without_hurting_the_caller() -> None:
    flood = reward("flood", """
        import os
        def flood(completions, **kwargs):
            chunk = b"x" * (1 << 20)
            for _ in range(256):
                os.write(1, chunk)
                os.write(2, chunk)
            return [0.0 for _ in completions]
    """)
    with pytest.raises(SandboxError, match="too much output"):
        run_reward(flood, ["a"])
    forged = reward("forged", """
        import os
        def forged(completions, **kwargs):
            for fd in (1, 2, 3, 4):
                try:
                    os.write(fd, b'@@GRADIENTS_REWARD@@[1.0, 1.0, 1.0]\\n')
                except OSError:
                    pass
            return [0.0 for _ in completions]
    """)
    # A reward decides only its own values, once, one per completion: a second result line
    # on the result channel fails the call.
    try:
        assert run_reward(forged, ["a"]) == [0.0]
    except SandboxError as exc:
        assert "result" in str(exc)


def test_a_crashing_or_killed_reward_is_a_sandbox_error_not_a_crash() -> None:
    for name, body in [
        ("boom", "def boom(completions, **kwargs):\n    raise RuntimeError('nope')\n"),
        ("wrong_length", "def wrong_length(completions, **kwargs):\n    return [1.0]\n"),
        ("abort", "import os\ndef abort(completions, **kwargs):\n    os.abort()\n"),
        ("nothing", "x = 1\n"),
    ]:
        with pytest.raises(SandboxError, match=name if name != "nothing" else "no function"):
            run_reward(RewardSpec(name, body, 1.0), ["a", "b"])


def test_common_stdlib_modules_work_inside_rewards() -> None:
    src = reward("stdlib", """
        import re, json, math, string, collections
        from difflib import SequenceMatcher
        def stdlib(completions, prompts, **kwargs):
            import statistics, unicodedata, itertools, functools, random
            out = []
            for c, p in zip(completions, prompts):
                words = re.findall(r"[a-z]+", c.lower())
                ratio = SequenceMatcher(None, c, p).ratio()
                norm = unicodedata.normalize("NFKC", c)
                out.append(round(len(words) + ratio + math.sqrt(len(norm)) * 0 + statistics.mean([1, 1]), 6))
            return out
    """)
    assert run_reward(src, ["hello world", ""], ["hello", "x"]) == pytest.approx([2 + 10 / 16 + 1, 1.0])


def test_the_examples_reward_functions_run_in_the_sandbox() -> None:
    yaml = pytest.importorskip("yaml")
    task = yaml.safe_load((REPO / "examples" / "grpo" / "task.yaml").read_text())
    completions = ["Oak", "a much longer Answer than one word", ""]
    for f in task["spec"]["rewardFunctions"]:
        values = run_reward(RewardSpec(f["name"], f["source"], f["weight"]), completions)
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values), (f["name"], values)
    assert run_reward(RewardSpec("count_a", td.REWARD_A, 1.0), ["aa"]) == [1.0]


def test_a_reward_that_reaches_its_cpu_limit_first_is_reported_as_timed_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded machine a busy loop can use up its CPU time before the parent notices the
    wall deadline (CI saw it): the miner must read the same cause either way."""
    import gradients_trainer.sandbox as sandbox

    exchange = sandbox._exchange
    monkeypatch.setattr(sandbox, "_exchange",
                        lambda proc, request, deadline, cap: exchange(proc, request, deadline + 30, cap))
    with pytest.raises(SandboxError, match="timed out: used up its CPU time"):
        run_reward(td_loop(), ["a"], timeout_s=1)


def td_loop() -> RewardSpec:
    return RewardSpec("forever", td.REWARD_LOOP, 1.0)
