"""The generator-model synthetic evaluation set (§3.3) on the tiny real-architecture base model:
the text is gibberish, the path is real (loading, sampling, validation, de-duplication, record)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

import tinydata as td
from conftest import DPO_COLUMNS, INS_COLUMNS, Data, evaluate, run_cli
from gradients_trainer.contract import TaskType
from gradients_trainer.synthgen import DATA_FILE, RECORD_FILE, Request, generate_set, normalize


def synthesize(task: str, generator: Path, train: Path, test: Path, out: Path,
               *extra: str, rows: int = 6) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    res = run_cli("synthesize-eval", "--task-type", task, "--generator", generator,
                  "--train-data", train, "--test-data", test, "--rows", str(rows),
                  "--max-new-tokens", "12", "--output", out, *extra)
    assert res.rc == 0, res.lines
    rows_out = [json.loads(line) for line in (out / DATA_FILE).read_text().splitlines()]
    record = json.loads((out / RECORD_FILE).read_text())
    assert res.last["event"] == "done" and res.last["written"] == len(rows_out)
    return rows_out, record


def keys(path: Path, column: str) -> set[str]:
    return {normalize(str(json.loads(line)[column])) for line in path.read_text().splitlines()}


CASES = [
    ("instruct", "ins", INS_COLUMNS, td.INSTRUCT_COLUMNS),
    ("dpo", "dpo", DPO_COLUMNS, td.DPO_COLUMNS),
    ("grpo", "grpo", json.dumps(td.GRPO_COLUMNS), td.GRPO_COLUMNS),
]


@pytest.mark.parametrize("task,prefix,columns_json,columns", CASES)
def test_generated_rows_keep_the_schema_and_are_disjoint_from_train_and_test(
        task: str, prefix: str, columns_json: str, columns: dict[str, str],
        data: Data, text_base: Path, tmp_path: Path) -> None:
    train, test = getattr(data, f"{prefix}_train"), getattr(data, f"{prefix}_test")
    rows, record = synthesize(task, text_base, train, test, tmp_path, "--columns", columns_json)
    assert 1 <= len(rows) <= 6
    key_column = columns["instruction" if task == "instruct" else "prompt"]
    expected = set(columns.values())
    for row in rows:
        # The dataset's own column names; every generated field non-empty text.
        assert set(row) <= expected and set(row) >= {columns[r] for r in td_required(task)}, row
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row
    generated = [normalize(r[key_column]) for r in rows]
    assert len(set(generated)) == len(generated), "no duplicate within the set"
    assert not set(generated) & (keys(train, key_column) | keys(test, key_column)), "disjoint"
    assert record["generator"] == str(text_base) and record["task_type"] == task
    assert record["written"] == len(rows) and record["requested"] == 6
    if task == "dpo":
        assert record["rejected_by"] == "corrupted-decode"
        assert all(normalize(r["good"]) != normalize(r["bad"]) for r in rows)


def td_required(task: str) -> tuple[str, ...]:
    return {"instruct": ("instruction", "output"), "dpo": ("prompt", "chosen", "rejected"),
            "grpo": ("prompt",)}[task]


def test_the_generated_set_is_what_the_evaluator_scores_and_the_seed_fixes_it(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    first, _ = synthesize("instruct", text_base, data.ins_train, data.ins_test, tmp_path / "a",
                          "--columns", INS_COLUMNS, "--seed", "5")
    again, _ = synthesize("instruct", text_base, data.ins_train, data.ins_test, tmp_path / "b",
                          "--columns", INS_COLUMNS, "--seed", "5")
    assert first == again
    result = evaluate("instruct", text_base, None, data.ins_test, tmp_path / "a" / DATA_FILE,
                      "--columns", INS_COLUMNS)
    assert result["ok"] is True and math.isfinite(result["synth_loss"]), result
    held_out = evaluate("instruct", text_base, None, data.ins_test, data.ins_synth,
                        "--columns", INS_COLUMNS)
    assert held_out["synth_loss"] != result["synth_loss"], "the generated rows were scored"


def test_dpo_rejected_answers_can_come_from_a_weaker_model(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    weaker = tmp_path / "weaker"
    res = run_cli("make-base-model", "--task-type", "dpo", "--output", weaker, "--seed", "7",
                  "--pretrain-steps", "1")
    assert res.rc == 0, res.lines
    rows, record = synthesize("dpo", text_base, data.dpo_train, data.dpo_test, tmp_path / "out",
                              "--columns", DPO_COLUMNS, "--weaker-model", str(weaker))
    assert record["rejected_by"] == "weaker-model" and record["weaker"] == str(weaker)
    assert rows


def test_validation_drops_empty_equal_and_known_rows(data: Data, tmp_path: Path) -> None:
    """The pure part with scripted samplers: every reason to drop a row is counted."""
    known = json.loads(data.dpo_train.read_text().splitlines()[0])["question"]
    script = iter([known, "good", "bad",          # a prompt from train: duplicate
                   "fresh one", "same", "same",    # equal answers
                   "another", "", "x",             # an empty chosen answer
                   "kept", "yes", "no"] * 4)
    answers = {"bad", "same", "x", "no"}

    def generate(prompt: str, temperature: float) -> str:
        return next(script)

    def rejected(prompt: str, temperature: float) -> str:
        value = next(script)
        assert value in answers
        return value

    generator = tmp_path / "generator"
    generator.mkdir()
    (generator / "config.json").write_text("{}")
    req = Request(task=TaskType.DPO, generator=generator, train_data=data.dpo_train,
                  test_data=data.dpo_test, output=tmp_path, rows=1, columns=DPO_COLUMNS)
    rows, record = generate_set(req, generate, rejected)
    assert rows == [{"question": "kept", "good": "yes", "bad": "no"}]
    assert record.dropped == {"duplicate": 1, "same_answers": 1, "empty": 1}


def test_image_tasks_and_pickled_generators_are_refused(
        data: Data, text_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_cli("synthesize-eval", "--task-type", "image", "--generator", text_base,
                  "--train-data", data.ins_train, "--test-data", data.ins_test, "--rows", "2",
                  "--output", tmp_path / "image")
    assert res.rc == 2
    # A generator that ships pickled weights only is never unpickled.
    import torch

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for item in text_base.iterdir():
        if not item.name.endswith(".safetensors"):
            shutil.copy(item, pickled / item.name)
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    res = run_cli("synthesize-eval", "--task-type", "instruct", "--generator", pickled,
                  "--train-data", data.ins_train, "--test-data", data.ins_test, "--rows", "2",
                  "--columns", INS_COLUMNS, "--output", tmp_path / "out")
    assert res.rc != 0
    assert "model.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out" / DATA_FILE).exists()


def test_a_whole_dataset_gives_a_set_for_a_tasks_synthetic_uri(
        data: Data, text_base: Path, tmp_path: Path) -> None:
    """Before any split: seeds and exclusions are the whole dataset, so no row can leak."""
    res = run_cli("synthesize-eval", "--task-type", "grpo", "--generator", text_base,
                  "--train-data", data.grpo_train, "--rows", "3", "--max-new-tokens", "12",
                  "--output", tmp_path)
    assert res.rc == 0, res.lines
    prompts = keys(tmp_path / DATA_FILE, "prompt")
    assert prompts and not prompts & keys(data.grpo_train, "prompt")
