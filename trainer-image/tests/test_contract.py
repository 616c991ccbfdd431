"""Contract pieces that need no model: catalogue, result size, parsing, sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tinydata as td

from gradients_trainer import strategies
from gradients_trainer.contract import Check, EvalResult, InputError, TaskType
from gradients_trainer.data import parse_columns
from gradients_trainer.deadline import parse_deadline
from gradients_trainer.sandbox import RewardSpec, SandboxError, run_reward

SRC = Path(__file__).resolve().parent.parent / "src"


def test_strategies_catalogue_via_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "gradients_trainer", "strategies"],
                         capture_output=True, text=True, cwd=SRC, check=True, timeout=60)
    catalogue = json.loads(out.stdout)
    names = [s["name"] for s in catalogue]
    assert "baseline" in names and len(names) >= 9 and len(set(names)) == len(names)
    methods = {s["method"] for s in catalogue}
    assert {"lora", "full", "qlora"} <= methods
    base = next(s for s in catalogue if s["name"] == "baseline")["hyperparameters"]
    assert base["learning_rate"] == 3e-5 and base["batch_size"] == 2 and base["grad_accum"] == 4
    assert base["lora_r"] == 16 and base["lora_alpha"] == 32 and base["lora_dropout"] == 0.05
    assert base["warmup_ratio"] == 0.1 and base["scheduler"] == "linear"
    assert base["weight_decay"] == 0.0 and base["max_grad_norm"] == 1.0
    assert base["image_learning_rate"] == 1e-4 and base["image_lora_r"] == 4


def test_unknown_strategy_is_input_error() -> None:
    with pytest.raises(InputError):
        strategies.get("nope")


def test_result_fits_termination_message() -> None:
    result = EvalResult(checks=[Check(f"check{i}", False, "x" * 5000) for i in range(30)])
    result.fail("y" * 10000)
    text = result.to_json()
    assert len(text.encode()) < 4096
    data = json.loads(text)
    assert data["ok"] is False and data["test_loss"] is None
    assert set(data) == {"ok", "test_loss", "synth_loss", "text_guided_loss", "no_text_loss",
                         "weights_sha256", "checks", "failure", "timings", "model_digest",
                         "category", "test_kl", "synth_kl", "test_rewards", "synth_rewards"}
    assert data["category"] == "submission"


def test_columns_parsing() -> None:
    cols = parse_columns(TaskType.INSTRUCT, json.dumps(td.INSTRUCT_COLUMNS))
    assert cols.get("output") == "answer"
    with pytest.raises(InputError, match="missing required key 'chosen'"):
        parse_columns(TaskType.DPO, '{"prompt": "p", "rejected": "r"}')
    with pytest.raises(InputError, match="unknown key"):
        parse_columns(TaskType.GRPO, '{"prompt": "p", "bogus": "x"}')
    with pytest.raises(InputError, match="not valid JSON"):
        parse_columns(TaskType.GRPO, "{")


def test_deadline_parsing() -> None:
    now = time.time()
    assert parse_deadline(1.0, now) == pytest.approx(now + 3600)
    for bad in (None, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="--hours"):
            parse_deadline(bad, now)


def test_sandbox_runs_reward() -> None:
    values = run_reward(RewardSpec("count_a", td.REWARD_A, 1.0), ["aa", "ab", "bb"])
    assert values == [1.0, 0.5, 0.0]


def test_sandbox_kills_infinite_loop() -> None:
    started = time.time()
    with pytest.raises(SandboxError, match="timed out"):
        run_reward(RewardSpec("forever", td.REWARD_LOOP, 1.0), ["a"], timeout_s=2)
    assert time.time() - started < 10


def test_sandbox_blocks_network() -> None:
    with pytest.raises(SandboxError, match="network access is blocked"):
        run_reward(RewardSpec("phone_home", td.REWARD_SOCKET, 1.0), ["a"])


def test_sandbox_limits_memory_and_processes() -> None:
    hog = "def hog(completions, **kw):\n    x = bytearray(8 << 30)\n    return [0.0]\n"
    with pytest.raises(SandboxError, match="MemoryError"):
        run_reward(RewardSpec("hog", hog, 1.0), ["a"])
    spawn = "import os\ndef spawn(completions, **kw):\n    os.system('true')\n    return [0.0]\n"
    with pytest.raises(SandboxError, match="blocked"):
        run_reward(RewardSpec("spawn", spawn, 1.0), ["a"])


def test_sandbox_passes_prompts_and_extra_data() -> None:
    src = (
        "def match(completions, prompts, extra_data):\n"
        "    return [float(e in c) + 0.5 * float(p in c) for c, p, e in zip(completions, prompts, extra_data)]\n"
    )
    values = run_reward(RewardSpec("match", src, 1.0), ["cat dog", "bird"], ["dog", "x"], ["cat", "cat"])
    assert values == [1.5, 0.0]


def test_resolution_rounds_to_multiples_of_64() -> None:
    from gradients_trainer.image import round64

    assert [round64(v) for v in (10, 64, 100, 1000, 1024, 1100)] == [64, 64, 64, 960, 1024, 1088]


def test_package_type_checks(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    root = SRC.parent
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
