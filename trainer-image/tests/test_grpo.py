"""GRPO end to end, with sandboxed reward code (including hostile reward code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tinydata as td
from conftest import Data, evaluate, run_cli, train


def grpo_eval(data: Data, base: Path, sub: Path | None, rewards: Path) -> dict:
    return evaluate("grpo", base, sub, data.grpo_test, data.grpo_synth,
                    "--reward-functions", rewards, "--columns", '{"prompt": "prompt"}')


@pytest.fixture(scope="module")
def grpo_lora(data: Data, text_base: Path, workdir: Path) -> Path:
    out = workdir / "grpo_lora"
    summary = train("grpo", text_base, data.grpo_train, out, "lora-fast",
                    "--reward-functions", data.rewards)
    assert summary["steps"] > 0 and summary["tokens"] > 0
    return out / "model"


def test_grpo_improves_on_base(data: Data, text_base: Path, grpo_lora: Path) -> None:
    sub = grpo_eval(data, text_base, grpo_lora, data.rewards)
    base = grpo_eval(data, text_base, None, data.rewards)
    assert sub["ok"] is True, sub
    assert sub["test_loss"] < base["test_loss"], (sub, base)
    assert any(c["name"] == "reward_functions" and c["ok"] for c in sub["checks"])
    assert base["test_kl"] == 0.0 and sub["test_kl"] > 0
    assert sub["test_rewards"]["count_a"] == -sub["test_loss"]


def test_grpo_baseline_stops_at_deadline(data: Data, text_base: Path, workdir: Path) -> None:
    out = workdir / "grpo_base"
    summary = train("grpo", text_base, data.grpo_train, out, "baseline",
                    "--reward-functions", data.rewards, "--strategy-overrides", '{"epochs": 50}',
                    hours=8 / 3600)
    assert summary["strategy"] == "baseline"
    assert summary["stopped_by_deadline"] is True and summary["steps"] > 0
    assert summary["steps"] < summary["total_steps"] or summary["total_steps"] < 800
    assert summary["wall_s"] < 30  # budget 8 s; generous for loaded CI machines
    assert (out / "model" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    ("name", "source", "words"),
    [("forever", td.REWARD_LOOP, "timed out"),
     ("phone_home", td.REWARD_SOCKET, "network access is blocked")],
)
def test_hostile_reward_is_a_failed_check(data: Data, text_base: Path, grpo_lora: Path,
                                          workdir: Path, name: str, source: str, words: str) -> None:
    rewards = td.rewards_file(workdir / f"{name}.json",
                              [("count_a", td.REWARD_A, 1.0), (name, source, 0.5)])
    result = grpo_eval(data, text_base, grpo_lora, rewards)
    assert result["ok"] is False and result["test_loss"] is None
    bad = [c for c in result["checks"] if not c["ok"]]
    assert bad[-1]["name"] == "reward_functions" and words in bad[-1]["reason"], result
    # It fails on the task's own prompts before any model is loaded: the task's fault.
    assert result["category"] == "task", result


def test_rewards_returning_none_are_ignored_not_failed(data: Data, text_base: Path, grpo_lora: Path,
                                                       workdir: Path) -> None:
    none_half = ("def none_half(completions, **kwargs):\n"
                 "    return [None if i % 2 else 1.0 for i, _ in enumerate(completions)]\n")
    always_none = "def always_none(completions, **kwargs):\n    return [None for _ in completions]\n"
    rewards = td.rewards_file(workdir / "none_rewards.json",
                              [("none_half", none_half, 1.0), ("always_none", always_none, 3.0)])
    result = grpo_eval(data, text_base, grpo_lora, rewards)
    assert result["ok"] is True, result
    # Mean over the values given (all 1.0); a reward with no value at all adds nothing.
    assert result["test_rewards"] == {"none_half": 1.0, "always_none": None}
    assert result["test_loss"] == -1.0 and result["synth_loss"] == -1.0
    assert result["test_kl"] > 0 and result["synth_kl"] > 0  # the LoRA moved away from the base


def test_hostile_reward_does_not_break_training(data: Data, text_base: Path, workdir: Path) -> None:
    rewards = td.rewards_file(workdir / "train_hostile.json",
                              [("count_a", td.REWARD_A, 1.0), ("phone_home", td.REWARD_SOCKET, 1.0)])
    summary = train("grpo", text_base, data.grpo_train, workdir / "grpo_hostile", "lora-fast",
                    "--reward-functions", rewards, "--strategy-overrides", '{"epochs": 0.25}')
    assert summary["steps"] > 0


def test_grpo_requires_reward_functions(data: Data, text_base: Path, workdir: Path) -> None:
    res = run_cli("train", "--task-type", "grpo", "--base-model", text_base, "--train-data",
                  data.grpo_train, "--hours", "1", "--output", workdir / "z")
    assert res.rc == 2


def test_grpo_bad_reward_file_exits_2(data: Data, text_base: Path, workdir: Path) -> None:
    bad = workdir / "bad_rewards.json"
    bad.write_text(json.dumps([{"name": "x", "weight": 1.0}]))
    res = run_cli("train", "--task-type", "grpo", "--base-model", text_base, "--train-data",
                  data.grpo_train, "--reward-functions", bad, "--hours", "1", "--output", workdir / "z")
    assert res.rc == 2


def test_reward_with_extra_data(data: Data, text_base: Path, grpo_lora: Path, workdir: Path) -> None:
    rows = [{"prompt": f"Say {w}:", "target": w} for w in ("cat", "dog", "sun", "moon")]
    test = td.write_jsonl(workdir / "grpo_extra.jsonl", rows)
    src = ("def hit(completions, extra_data, **kw):\n"
           "    return [float(e['word'] in c) if isinstance(e, dict) else float(e in c)\n"
           "            for c, e in zip(completions, extra_data)]\n")
    rewards = td.rewards_file(workdir / "extra_rewards.json", [("hit", src, 2.0)])
    result = evaluate("grpo", text_base, grpo_lora, test, test, "--reward-functions", rewards,
                      "--columns", '{"prompt": "prompt", "extra": "target"}')
    assert result["ok"] is True, result
    assert -2.0 <= result["test_loss"] <= 0.0
