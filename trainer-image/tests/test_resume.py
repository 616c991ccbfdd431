"""``train --resume-from``: a training continues from its own checkpoint (successive halving
across miners), and a checkpoint of anything else is refused with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import INS_COLUMNS, Data, evaluate, run_cli, stopped_midway, train

ONE_EPOCH = '{"epochs": 1}'


def first_loss(out: list[dict]) -> float:
    return next(e["loss"] for e in out if e["event"] == "progress" and e.get("loss") is not None)


def ins_train(data: Data, base: Path, out: Path, strategy: str, *extra: str) -> tuple[dict, list[dict]]:
    res = run_cli("train", "--task-type", "instruct", "--base-model", base, "--train-data", data.ins_train,
                  "--output", out, "--strategy", strategy, "--hours", "0.1", "--columns", INS_COLUMNS,
                  "--strategy-overrides", ONE_EPOCH, *extra)
    assert res.rc == 0, res.lines
    return json.loads((out / "training.json").read_text()), res.json_lines()


@pytest.fixture(scope="module")
def first_slice(data: Data, text_base: Path, workdir: Path) -> tuple[Path, list[dict]]:
    out = workdir / "slice0"
    _, events = ins_train(data, text_base, out, "lora-fast")
    info = json.loads((out / "checkpoint.json").read_text())
    assert info["strategy"] == "lora-fast" and info["fingerprint"].startswith("sha256:")
    assert info["epochs_done"] == 1.0, "its one epoch, all trained"
    return out, events


def identity(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "epochs_done"}


def test_a_resumed_lora_training_continues_its_epochs_from_its_checkpoint(
        data: Data, text_base: Path, workdir: Path, first_slice: tuple[Path, list[dict]]) -> None:
    previous, events = first_slice
    first_steps = json.loads((previous / "training.json").read_text())["steps"]
    halfway = stopped_midway(previous, workdir / "slice0-halfway", 0.5)
    out = workdir / "slice1"
    summary, resumed = ins_train(data, text_base, out, "lora-fast", "--resume-from", halfway)
    # The half epoch left, not the strategy's whole epoch again.
    assert summary["steps"] == summary["total_steps"] == -(-first_steps // 2), (summary, first_steps)
    # It continues from the trained adapter: its first loss is well below a fresh start's.
    assert first_loss(resumed) < 0.9 * first_loss(events), (first_loss(resumed), first_loss(events))
    result = evaluate("instruct", text_base, out / "model", data.ins_test, data.ins_synth, "--columns", INS_COLUMNS)
    assert result["ok"] is True, result
    info = json.loads((out / "checkpoint.json").read_text())
    assert identity(info) == identity(json.loads((previous / "checkpoint.json").read_text()))
    assert info["epochs_done"] == 1.0, info


def test_a_slice_after_all_epochs_trains_nothing_and_hands_on_its_model(
        data: Data, text_base: Path, workdir: Path, first_slice: tuple[Path, list[dict]]) -> None:
    previous, _ = first_slice
    out = workdir / "slice1-after-all"
    summary, events = ins_train(data, text_base, out, "lora-fast", "--resume-from", previous)
    assert summary["steps"] == 0 and not [e for e in events if e["event"] == "progress"], summary
    for path in (previous / "model").iterdir():
        assert (out / "model" / path.name).read_bytes() == path.read_bytes(), path.name
    assert json.loads((out / "checkpoint.json").read_text())["epochs_done"] == 1.0
    result = evaluate("instruct", text_base, out / "model", data.ins_test, data.ins_synth, "--columns", INS_COLUMNS)
    assert result["ok"] is True, result


def test_a_resumed_full_finetune_continues_from_its_own_weights(
        data: Data, text_base: Path, workdir: Path) -> None:
    _, fresh = ins_train(data, text_base, workdir / "full0", "full-ft")
    halfway = stopped_midway(workdir / "full0", workdir / "full0-halfway", 0.5)
    _, resumed = ins_train(data, text_base, workdir / "full1", "full-ft", "--resume-from", halfway)
    assert first_loss(resumed) < first_loss(fresh)
    assert (workdir / "full1" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("case", ["other-data", "other-base", "other-strategy", "not-a-checkpoint", "image"])
def test_a_checkpoint_of_anything_else_is_refused_by_name(
        case: str, data: Data, text_base: Path, workdir: Path, first_slice: tuple[Path, list[dict]],
        capsys: pytest.CaptureFixture[str]) -> None:
    previous, _ = first_slice
    task, base, train_data, strategy, resume = "instruct", text_base, data.ins_train, "lora-fast", previous
    if case == "other-data":
        train_data = data.ins_test
    elif case == "other-base":
        base = workdir / "other-base"
        if not base.exists():
            shutil.copytree(text_base, base)
            config = json.loads((base / "config.json").read_text())
            (base / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    elif case == "other-strategy":
        strategy = "lora-wide"
    elif case == "not-a-checkpoint":
        resume = previous / "model"
    else:
        task, train_data = "image", data.img_train
    res = run_cli("train", "--task-type", task, "--base-model", base, "--train-data", train_data,
                  "--output", workdir / f"refused-{case}", "--strategy", strategy, "--hours", "0.1",
                  *(["--columns", INS_COLUMNS] if task == "instruct" else []),
                  "--strategy-overrides", ONE_EPOCH, "--resume-from", resume)
    err = capsys.readouterr().err
    assert res.rc == 2, (res.lines, err)
    assert "error: --resume-from:" in err, err
    expected = {
        "other-data": "another base model, task type or training data",
        "other-base": "another base model, task type or training data",
        "other-strategy": "strategy 'lora-fast'",
        "not-a-checkpoint": "no checkpoint.json",
        "image": "image trainers cannot continue",
    }[case]
    assert expected in err, err
    assert not (workdir / f"refused-{case}" / "model").exists()
