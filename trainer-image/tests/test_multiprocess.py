"""Several processes (one per device; here two CPU processes on gloo): the launch, the
stop on a deadline and on SIGTERM, the one writer, a dead process, the sharded evaluation,
and full fine-tuning sharded with FSDP (each process holds half the model).

Real subprocesses of ``python -m gradients_trainer`` with ``--processes 2``: the launcher
re-runs itself as two workers, exactly as a pod with two GPUs does (there NCCL instead of gloo).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import DPO_COLUMNS, INS_COLUMNS, Data, evaluate, run_cli, stopped_midway

SRC = Path(__file__).resolve().parent.parent / "src"
# The sharded evaluation deals the one-process batches over the processes and adds the
# per-batch sums in the same order: equal to the one-process loss up to float rounding of
# the kernels (the same kernels here: bit-identical in practice).
EVAL_RTOL = 1e-6
# FSDP against one process with the same global batch: the same arithmetic in another order
# (each process sums its half of the tokens and of the gradients, then they are added), so
# float32 rounding differs at 1e-7; AdamW divides by sqrt(v), which can enlarge it on tiny
# gradients. Measured: losses 3e-7 relative, weights 2e-7 after 3 steps; asserted 10-500x looser.
FSDP_LOSS_RTOL = 1e-5
FSDP_WEIGHT_ATOL = 1e-4
FULL_GLOBAL_BATCH = 48  # every row of the 48-row set: one optimiser step = one epoch, any order


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "gradients_trainer", *[str(a) for a in args]]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC)
    e.update(extra)
    return e


def run(*args: object, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=env(**extra),
                          timeout=timeout)


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def train_args(data: Data, base: Path, out: Path, *extra: object, hours: str = "1") -> list[object]:
    return ["train", "--task-type", "instruct", "--base-model", base, "--train-data",
            data.ins_train, "--columns", INS_COLUMNS, "--hours", hours, "--output", out,
            "--processes", "2", *extra]


def endless_args(data: Data, base: Path, out: Path, hours: str = "1",
                 strategy: str = "lora-long") -> list[object]:
    """A run only a stop can end: 500 epochs would take hours."""
    return train_args(data, base, out, "--strategy", strategy, "--strategy-overrides",
                      '{"epochs": 500}', hours=hours)


def rank1_steps(stderr: str) -> list[int]:
    """Rank 1's progress events: the launcher logs them (rank 0's alone reach stdout)."""
    # A progress bar without a newline may precede one on its line.
    return [json.loads(x)["step"] for x in re.findall(r'\{"event":"progress".*?\}', stderr)]


class Running:
    """A launcher in the background: its stdout events as they come, its stderr in a file."""

    def __init__(self, args: list[object], stderr: Path) -> None:
        self.stderr_path = stderr
        self._err = stderr.open("w")
        self.proc = subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=self._err,
                                     text=True, env=env())
        self.seen: list[dict[str, Any]] = []

    def until_step(self, step: int) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append(json.loads(line))
            if self.seen[-1]["event"] == "progress" and self.seen[-1]["step"] >= step:
                return
        raise AssertionError(f"ended before step {step}: {self.stderr()[-2000:]}")

    def finish(self, timeout: float = 120) -> int:
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        self.seen += events(rest)
        return self.proc.wait(timeout=timeout)

    def worker_pids(self) -> dict[int, int]:
        m = re.search(r"launched 2 processes: rank 0 pid (\d+), rank 1 pid (\d+)", self.stderr())
        assert m, self.stderr()
        return {0: int(m.group(1)), 1: int(m.group(2))}

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(args: list[object]) -> Running:
        r = Running(args, tmp_path / f"stderr-{len(started)}.txt")
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def only_rank0_wrote(out: Path, lines: list[dict[str, Any]]) -> None:
    """One writer: one done line, each step reported once, no stray model copies (the resume
    fingerprint, checkpoint.json, is rank 0's too)."""
    assert [e["event"] for e in lines].count("done") == 1 and lines[-1]["event"] == "done"
    steps = [e["step"] for e in lines if e["event"] == "progress"]
    assert steps == sorted(set(steps)), steps
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "model", "training.json"]


@pytest.fixture(scope="module")
def lora_2p(data: Data, text_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mp") / "lora"
    proc = run(*train_args(data, text_base, out, "--strategy", "lora-fast",
                           "--strategy-overrides", '{"epochs": 1}'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launched 2 processes" in proc.stderr
    lines = events(proc.stdout)
    only_rank0_wrote(out, lines)
    summary = json.loads((out / "training.json").read_text())
    assert summary == {k: v for k, v in lines[-1].items() if k != "event"}
    # Data-parallel: 48 rows, batch 4 per process, 2 processes: 6 optimiser steps, not 12.
    assert summary["total_steps"] == 6 and summary["steps"] == 6, summary
    assert summary["stopped_by_deadline"] is False
    assert summary["tokens"] == dataset_tokens(data, text_base), "every process's tokens count"
    return out / "model"


def dataset_tokens(data: Data, base: Path) -> int:
    from gradients_trainer.data import load_text_split, parse_columns
    from gradients_trainer.contract import TaskType
    from gradients_trainer.modelio import load_tokenizer
    from gradients_trainer.textrules import instruct_example

    tok = load_tokenizer(base)
    rows = load_text_split(TaskType.INSTRUCT, data.ins_train,
                           parse_columns(TaskType.INSTRUCT, INS_COLUMNS), "--train-data")
    return sum(len(instruct_example(tok, r.prompt, r.completion)["input_ids"]) for r in rows)


def ins_eval(data: Data, base: Path, sub: Path | None, *extra: str) -> dict[str, Any]:
    return evaluate("instruct", base, sub, data.ins_test, data.ins_synth, "--columns",
                    INS_COLUMNS, *extra)


def eval_2p(task: str, base: Path, sub: Path, test: Path, synth: Path, columns: str,
            termination: Path) -> dict[str, Any]:
    proc = run("evaluate", "--task-type", task, "--base-model", base, "--submission", sub,
               "--test-data", test, "--synth-data", synth, "--columns", columns,
               "--termination-message-path", termination, "--processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, "rank 0 alone reports"
    result: dict[str, Any] = json.loads(lines[0])
    assert json.loads(termination.read_text()) == result
    return result


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=EVAL_RTOL, abs_tol=0.0)


def test_two_process_lora_loads_and_sharded_eval_equals_one_process(
        data: Data, text_base: Path, lora_2p: Path, tmp_path: Path) -> None:
    one = ins_eval(data, text_base, lora_2p)  # the checkpoint loader: checks, trusted dir
    assert one["ok"] is True, one
    assert one["test_loss"] < ins_eval(data, text_base, None)["test_loss"]
    two = eval_2p("instruct", text_base, lora_2p, data.ins_test, data.ins_synth, INS_COLUMNS,
                  tmp_path / "termination-log")
    assert two["ok"] is True, two
    assert close(two["test_loss"], one["test_loss"]), (two["test_loss"], one["test_loss"])
    assert close(two["synth_loss"], one["synth_loss"]), (two["synth_loss"], one["synth_loss"])
    assert two["model_digest"] == one["model_digest"]


def test_two_process_dpo_trains_and_sharded_dpo_eval_equals_one_process(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    proc = run("train", "--task-type", "dpo", "--base-model", text_base, "--train-data",
               data.dpo_train, "--columns", DPO_COLUMNS, "--hours", "1", "--output", out,
               "--strategy", "lora-fast", "--strategy-overrides", '{"epochs": 1}',
               "--processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    only_rank0_wrote(out, events(proc.stdout))
    # 32 pairs, batch 4 per process, 2 processes.
    assert json.loads((out / "training.json").read_text())["steps"] == 4
    one = evaluate("dpo", text_base, out / "model", data.dpo_test, data.dpo_synth,
                   "--columns", DPO_COLUMNS)
    assert one["ok"] is True and one["test_loss"] < math.log(2), one
    two = eval_2p("dpo", text_base, out / "model", data.dpo_test, data.dpo_synth, DPO_COLUMNS,
                  tmp_path / "termination-log")
    assert close(two["test_loss"], one["test_loss"]) and close(two["synth_loss"], one["synth_loss"])


def test_sigterm_stops_both_processes_at_one_step_and_rank0_saves(
        data: Data, text_base: Path, tmp_path: Path, running: Any) -> None:
    out = tmp_path / "sigterm"
    r = running(endless_args(data, text_base, out))
    r.until_step(2)
    r.proc.send_signal(signal.SIGTERM)  # Kubernetes signals the container's main process
    assert r.finish() == 0, r.stderr()[-3000:]
    only_rank0_wrote(out, r.seen)
    summary = json.loads((out / "training.json").read_text())
    assert summary["stopped_by_deadline"] is True and summary["steps"] < summary["total_steps"]
    assert (out / "model" / "adapter_model.safetensors").is_file()


def test_deadline_stops_both_processes_and_the_save_loads(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "deadline"
    budget_s = 30.0
    proc = run(*endless_args(data, text_base, out, hours=str(budget_s / 3600)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    only_rank0_wrote(out, events(proc.stdout))
    summary = json.loads((out / "training.json").read_text())
    # The trainer caps its plan to what the budget allows, so a fast machine can finish the
    # capped plan exactly (steps == total_steps); stopped_by_deadline says the 500 epochs did not fit.
    assert summary["stopped_by_deadline"] is True and 1 <= summary["steps"] <= summary["total_steps"]
    # Loose on purpose (busy CI machines): the budget counts from the launcher's start.
    assert summary["wall_s"] < budget_s + 30
    assert ins_eval(data, text_base, out / "model")["ok"] is True


FULL_3_STEPS = json.dumps({"epochs": 3, "batch_size": FULL_GLOBAL_BATCH // 2})


@pytest.fixture(scope="module")
def full_2p(data: Data, text_base: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, list[dict[str, Any]]]:
    """full-ft in two processes, sharded: global batch 2 x 24 = the whole set, 3 steps."""
    out = tmp_path_factory.mktemp("fsdp") / "full"
    proc = run(*train_args(data, text_base, out, "--strategy", "full-ft",
                           "--strategy-overrides", FULL_3_STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = events(proc.stdout)
    only_rank0_wrote(out, lines)
    held_halves(proc.stderr, steps=3)
    return out, lines


def held_halves(stderr: str, steps: int) -> None:
    """Sharded, not replicated: each process holds half of the parameters (not all, as DDP),
    still so after training, and AdamW's two moments are sharded alike."""
    held = {int(r): (int(a), int(b)) for r, a, b in re.findall(
        r"fsdp: rank (\d) of 2 holds (\d+) of (\d+) parameters", stderr)}
    assert sorted(held) == [0, 1], stderr[-3000:]
    for local, total in held.values():
        assert 0.45 <= local / total <= 0.55, held
    assert sum(local for local, _ in held.values()) >= held[0][1]
    after = re.findall(rf"fsdp: rank (\d) after step {steps} holds (\d+) of (\d+) parameters "
                       r"and (\d+) optimiser state elements", stderr)
    assert sorted(int(r) for r, *_ in after) == [0, 1], stderr[-3000:]
    for _, local, total, state in after:
        assert 0.45 <= int(local) / int(total) <= 0.55 and 0.45 <= int(state) / (2 * int(total)) <= 0.55
    assert rank1_steps(stderr) == list(range(1, steps + 1))


def test_fsdp_full_finetune_equals_one_process_and_loads_in_the_evaluator(
        data: Data, text_base: Path, full_2p: tuple[Path, list[dict[str, Any]]],
        tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out, lines = full_2p
    one = tmp_path / "one"
    res = run_cli("train", "--task-type", "instruct", "--base-model", text_base, "--train-data",
                  data.ins_train, "--columns", INS_COLUMNS, "--hours", "1", "--output", one,
                  "--strategy", "full-ft", "--strategy-overrides",
                  json.dumps({"epochs": 3, "batch_size": FULL_GLOBAL_BATCH}))
    assert res.rc == 0, res.lines
    sharded = [e["loss"] for e in lines if e["event"] == "progress"]
    single = [e["loss"] for e in res.json_lines() if e["event"] == "progress"]
    assert len(sharded) == len(single) == 3 and sharded[2] < sharded[0]
    for a, b in zip(sharded, single):
        assert math.isclose(a, b, rel_tol=FSDP_LOSS_RTOL), (sharded, single)
    # The same files, config and tensors as the one-process save (the same saver).
    assert sorted(p.name for p in (out / "model").iterdir()) == \
        sorted(p.name for p in (one / "model").iterdir())
    assert (out / "model" / "config.json").read_text() == (one / "model" / "config.json").read_text()
    a, b = load_file(out / "model" / "model.safetensors"), load_file(one / "model" / "model.safetensors")
    assert sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype for k in a)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < FSDP_WEIGHT_ATOL
    result = ins_eval(data, text_base, out / "model")
    assert result["ok"] is True and result["test_loss"] < ins_eval(data, text_base, None)["test_loss"]


def test_fsdp_resume_continues_from_a_sharded_run(
        data: Data, text_base: Path, full_2p: tuple[Path, list[dict[str, Any]]],
        tmp_path: Path) -> None:
    first, lines = full_2p
    out = tmp_path / "resumed"
    first = stopped_midway(first, tmp_path / "first-after-1-of-3", 1.0)
    proc = run(*train_args(data, text_base, out, "--strategy", "full-ft", "--strategy-overrides",
                           FULL_3_STEPS, "--resume-from", first))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = [e["loss"] for e in events(proc.stdout) if e["event"] == "progress"]
    # Its first step's loss is the saved model's (after 3 steps), below the first run's last.
    assert resumed[0] < [e["loss"] for e in lines if e["event"] == "progress"][-1], resumed
    assert "fsdp: rank 1 of 2 holds" in proc.stderr
    assert (out / "model" / "model.safetensors").is_file()


DPO_PAIRS = 32  # conftest's dpo_train
# FSDP DPO against TRL's DPOTrainer in one process, the whole set one step (any order): the
# same objective computed apart (TRL pads the 64 sequences together and recomputes the
# reference each step; here each process pads its own, once). Measured: the 3 losses equal
# in all 6 printed decimals, the mean loss 3e-8 relative, weights 9e-7 apart (they moved 1e-3).
FSDP_DPO_LOSS_RTOL = 1e-5


def dpo_full_args(data: Data, base: Path, out: Path, batch: int, *extra: object) -> list[object]:
    return ["train", "--task-type", "dpo", "--base-model", base, "--train-data", data.dpo_train,
            "--columns", DPO_COLUMNS, "--hours", "1", "--output", out, "--strategy", "full-ft",
            "--strategy-overrides", json.dumps({"epochs": 3, "batch_size": batch}), *extra]


@pytest.fixture(scope="module")
def dpo_full_2p(data: Data, text_base: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, list[float]]:
    """DPO full-ft in two processes, sharded: global batch 2 x 16 = every pair, 3 steps."""
    out = tmp_path_factory.mktemp("fsdp") / "dpo-full"
    proc = run(*dpo_full_args(data, text_base, out, DPO_PAIRS // 2, "--processes", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = events(proc.stdout)
    only_rank0_wrote(out, lines)
    held_halves(proc.stderr, steps=3)
    return out, [e["loss"] for e in lines if e["event"] == "progress"]


def test_fsdp_dpo_full_finetune_equals_trl_in_one_process_and_beats_the_base(
        data: Data, text_base: Path, dpo_full_2p: tuple[Path, list[float]],
        tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out, sharded = dpo_full_2p
    # The policy starts as its reference: every pair's loss is -log sigmoid(0) = ln 2.
    assert math.isclose(sharded[0], math.log(2), abs_tol=1e-5), sharded
    one = tmp_path / "one"
    res = run_cli(*dpo_full_args(data, text_base, one, DPO_PAIRS))  # TRL's DPOTrainer
    assert res.rc == 0, res.lines
    single = [e["loss"] for e in res.json_lines() if e["event"] == "progress"]
    assert len(sharded) == len(single) == 3 and sharded[2] < sharded[0]
    for a, b in zip(sharded, single):
        assert math.isclose(a, b, rel_tol=FSDP_DPO_LOSS_RTOL), (sharded, single)
    a, b = load_file(out / "model" / "model.safetensors"), load_file(one / "model" / "model.safetensors")
    assert sorted(a) == sorted(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < FSDP_WEIGHT_ATOL
    result = evaluate("dpo", text_base, out / "model", data.dpo_test, data.dpo_synth,
                      "--columns", DPO_COLUMNS)
    assert result["ok"] is True and result["test_loss"] < math.log(2), result


def test_fsdp_dpo_resume_keeps_the_base_as_reference(
        data: Data, text_base: Path, dpo_full_2p: tuple[Path, list[float]],
        tmp_path: Path) -> None:
    first, losses = dpo_full_2p
    first = stopped_midway(first, tmp_path / "first-after-1-of-3", 1.0)
    proc = run(*dpo_full_args(data, text_base, tmp_path / "resumed", DPO_PAIRS // 2,
                              "--processes", "2", "--resume-from", first))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = [e["loss"] for e in events(proc.stdout) if e["event"] == "progress"]
    # Against the base the trained slice already prefers the chosen answers (below ln 2, as
    # at the first run's end); against itself it would start at ln 2 again.
    assert resumed[0] < losses[-1] < math.log(2), (resumed, losses)
    assert "dpo: reference log-probs from the base" in proc.stderr


@pytest.fixture(scope="module")
def tied_base(text_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base with its output head tied to the input embedding (as Qwen2.5-0.5B):
    the checkpoint holds one tensor for both."""
    import shutil

    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("bases") / "tied"
    model = AutoModelForCausalLM.from_pretrained(str(text_base))
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    model.save_pretrained(str(out), safe_serialization=True)
    for f in text_base.glob("tokenizer*"):
        shutil.copy(f, out / f.name)
    return out


def test_fsdp_sigterm_stops_both_processes_at_one_step_and_saves_once(
        data: Data, tied_base: Path, tmp_path: Path, running: Any) -> None:
    """With a tied head: the gathered weights must not save the head as a second tensor."""
    out = tmp_path / "sigterm-full"
    r = running(endless_args(data, tied_base, out, strategy="full-ft"))
    r.until_step(2)
    r.proc.send_signal(signal.SIGTERM)
    assert r.finish() == 0, r.stderr()[-3000:]
    only_rank0_wrote(out, r.seen)
    summary = json.loads((out / "training.json").read_text())
    assert summary["stopped_by_deadline"] is True and summary["steps"] < summary["total_steps"]
    err = r.stderr()
    assert rank1_steps(err)[-1] == summary["steps"], "rank 1 stopped at rank 0's step"
    # The periodic save after step 1 (the next is due in 450 s) and the final one, each
    # gathered by both processes and written once.
    saves = err.count("fsdp: saved model/ gathered from 2 shards")
    assert saves == 2, err[-3000:]
    assert err.rindex("fsdp: saved model/") > err.index(f"training finished after {summary['steps']} steps")
    assert ins_eval(data, tied_base, out / "model")["ok"] is True  # checks tensors against the base


def test_a_dead_process_fails_the_run_with_its_rank_instead_of_hanging(
        data: Data, text_base: Path, tmp_path: Path, running: Any) -> None:
    out = tmp_path / "dead"
    r = running(endless_args(data, text_base, out))
    r.until_step(1)
    os.kill(r.worker_pids()[1], signal.SIGKILL)  # e.g. the kernel's OOM killer
    started = time.time()
    assert r.finish(timeout=90) == 1
    assert time.time() - started < 60
    err = r.stderr()
    assert "error: training failed: process rank 1 of 2 was killed by SIGKILL" in err, err[-3000:]
    assert not any(e["event"] == "done" for e in r.seen)


def test_invalid_input_with_two_processes_exits_2_naming_the_column(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    cols = json.dumps({"instruction": "task", "output": "answer_text"})
    proc = run("train", "--task-type", "instruct", "--base-model", text_base, "--train-data",
               data.ins_train, "--columns", cols, "--hours", "1", "--output", tmp_path / "o",
               "--processes", "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "error: --columns: column 'answer_text'" in proc.stderr


def test_processes_must_be_a_positive_count() -> None:
    proc = run("train", "--task-type", "instruct", "--base-model", ".", "--train-data", "x",
               "--hours", "1", "--output", "o", "--processes", "0", timeout=60)
    assert proc.returncode == 2 and "--processes" in proc.stderr and "at least 1" in proc.stderr


def test_a_failed_evaluation_process_reports_an_evaluator_failure(tmp_path: Path) -> None:
    """When rank 0 dies the launcher writes the result: the operator retries (evaluator)."""
    from gradients_trainer import contract
    from gradients_trainer.launch import Outcome, evaluation_outcome

    term = tmp_path / "termination-log"
    saved = contract._STDOUT
    import io

    contract._STDOUT = buf = io.StringIO()
    try:
        assert evaluation_outcome(Outcome(codes=[-9, 0], first_failure=0, wall_s=3.5), term) == 0
    finally:
        contract._STDOUT = saved
    result = json.loads(term.read_text())
    assert json.loads(buf.getvalue()) == result
    assert result["ok"] is False and result["category"] == "evaluator"
    assert result["failure"] == "evaluator: process rank 0 of 2 was killed by SIGKILL"
    assert result["timings"] == {"total_s": 3.5}
