"""Shared fixtures: tiny datasets and base models, built once per test session.

The CLI is driven in-process (``run_cli``) to avoid paying the torch import per call; a
few tests use a real subprocess to pin the process-level contract (exit codes, SIGTERM).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "GRADIENTS_REWARD_TIMEOUT_S": "4",
}.items():
    os.environ.setdefault(_key, _value)

import tinydata as td  # noqa: E402

from gradients_trainer import contract  # noqa: E402
from gradients_trainer.cli import main  # noqa: E402


@dataclass
class CliResult:
    rc: int
    lines: list[str]

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"non-JSON line on stdout: {line!r}") from None
        return out

    @property
    def last(self) -> dict[str, Any]:
        return self.json_lines()[-1]


def run_cli(*args: str) -> CliResult:
    """Run ``python -m gradients_trainer ARGS`` in-process; returns rc and stdout lines."""
    buf = io.StringIO()
    saved_stdout, saved_contract = sys.stdout, contract._STDOUT
    sys.stdout = buf
    try:
        rc = main([str(a) for a in args])
    finally:
        sys.stdout = saved_stdout
        contract._STDOUT = saved_contract
    return CliResult(rc=rc, lines=[ln for ln in buf.getvalue().splitlines() if ln.strip()])


@dataclass
class Data:
    root: Path
    pretrain: Path
    ins_train: Path
    ins_test: Path
    ins_synth: Path
    dpo_train: Path
    dpo_test: Path
    dpo_synth: Path
    grpo_train: Path
    grpo_test: Path
    grpo_synth: Path
    rewards: Path
    img_pretrain: Path
    img_train: Path
    img_test: Path


INS_COLUMNS = json.dumps(td.INSTRUCT_COLUMNS)
DPO_COLUMNS = json.dumps(td.DPO_COLUMNS)


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("data")
    return Data(
        root=root,
        pretrain=td.pretrain_corpus(root / "pretrain.txt"),
        ins_train=td.write_jsonl(root / "ins_train.jsonl", td.instruct_rows(48, 1)),
        ins_test=td.write_jsonl(root / "ins_test.jsonl", td.instruct_rows(12, 2)),
        ins_synth=td.write_jsonl(root / "ins_synth.jsonl", td.instruct_rows(12, 3)),
        dpo_train=td.write_jsonl(root / "dpo_train.jsonl", td.dpo_rows(32, 1)),
        dpo_test=td.write_jsonl(root / "dpo_test.jsonl", td.dpo_rows(12, 2)),
        dpo_synth=td.write_jsonl(root / "dpo_synth.jsonl", td.dpo_rows(12, 3)),
        grpo_train=td.write_jsonl(root / "grpo_train.jsonl", td.grpo_rows(16, 1)),
        grpo_test=td.write_jsonl(root / "grpo_test.jsonl", td.grpo_rows(8, 2)),
        grpo_synth=td.write_jsonl(root / "grpo_synth.jsonl", td.grpo_rows(8, 3)),
        rewards=td.rewards_file(root / "rewards.json", [("count_a", td.REWARD_A, 1.0)]),
        img_pretrain=td.image_pretrain_folder(root / "img_pretrain"),
        img_train=td.image_folder(root / "img_train", 8, 1),
        img_test=td.image_folder(root / "img_test", 4, 2),
    )


@pytest.fixture(scope="session")
def text_base(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bases") / "text"
    res = run_cli("make-base-model", "--task-type", "instruct", "--output", out,
                  "--pretrain-data", data.pretrain)
    assert res.rc == 0, res.lines
    return out


@pytest.fixture(scope="session")
def image_base(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bases") / "image"
    res = run_cli("make-base-model", "--task-type", "image", "--output", out,
                  "--pretrain-data", data.img_pretrain)
    assert res.rc == 0, res.lines
    return out


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("work")


def evaluate(task: str, base: Path, submission: Path | None, test: Path, synth: Path,
             *extra: str, termination: Path | None = None) -> dict[str, Any]:
    args: list[Any] = ["evaluate", "--task-type", task, "--base-model", base, "--test-data", test,
                       "--synth-data", synth, "--profile", "fast", *extra]
    args += ["--score-base"] if submission is None else ["--submission", submission]
    if termination is not None:
        args += ["--termination-message-path", termination]
    res = run_cli(*args)
    assert res.rc == 0, res.lines
    assert len(res.lines[-1].encode()) < 4096
    return res.last


def train(task: str, base: Path, train_data: Path, output: Path, strategy: str,
          *extra: str, hours: float = 0.1) -> dict[str, Any]:
    res = run_cli("train", "--task-type", task, "--base-model", base, "--train-data", train_data,
                  "--output", output, "--strategy", strategy, "--hours", str(hours), *extra)
    assert res.rc == 0, res.lines
    events = res.json_lines()
    assert events[-1]["event"] == "done"
    assert any(e["event"] == "progress" for e in events)
    summary = json.loads((output / "training.json").read_text())
    for key in ("strategy", "method", "steps", "tokens", "wall_s", "final_train_loss",
                "stopped_by_deadline"):
        assert key in summary
    return summary


def stopped_midway(out: Path, dest: Path, epochs_done: float) -> Path:
    """A copy of a finished training's output as a slice stopped at its deadline leaves it: the
    same files, with ``epochs_done`` below the strategy's epochs (the trainer writes the count
    it reached; a deadline is a matter of timing, which tests do not rely on)."""
    import shutil

    shutil.copytree(out, dest)
    info = json.loads((dest / "checkpoint.json").read_text())
    (dest / "checkpoint.json").write_text(json.dumps({**info, "epochs_done": epochs_done}))
    return dest
