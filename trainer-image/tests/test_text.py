"""Instruct and DPO end to end: train, evaluate, and every failed-check case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import DPO_COLUMNS, INS_COLUMNS, Data, evaluate, run_cli, train


@pytest.fixture(scope="module")
def ins_lora(data: Data, text_base: Path, workdir: Path) -> Path:
    out = workdir / "ins_lora"
    summary = train("instruct", text_base, data.ins_train, out, "lora-fast", "--columns", INS_COLUMNS)
    assert summary["method"] == "lora" and summary["steps"] > 0 and summary["tokens"] > 0
    assert summary["stopped_by_deadline"] is False
    return out / "model"


def ins_eval(data: Data, base: Path, sub: Path | None, **kw: Path) -> dict:
    return evaluate("instruct", base, sub, data.ins_test, data.ins_synth, "--columns", INS_COLUMNS, **kw)


def test_instruct_lora_improves_on_base(data: Data, text_base: Path, ins_lora: Path, workdir: Path) -> None:
    files = sorted(p.name for p in ins_lora.iterdir())
    assert "adapter_model.safetensors" in files and "adapter_config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    term = workdir / "termination-log"
    result = ins_eval(data, text_base, ins_lora, termination=term)
    assert result["ok"] is True, result
    assert json.loads(term.read_text()) == result and len(term.read_bytes()) < 4096
    assert len(result["weights_sha256"]) == 64
    assert result["text_guided_loss"] is None and result["no_text_loss"] is None
    base = ins_eval(data, text_base, None)
    assert result["test_loss"] < base["test_loss"] and result["synth_loss"] < base["synth_loss"]
    assert set(result["timings"]) >= {"load_s", "test_s", "synth_s", "total_s"}


def test_instruct_full_finetune(data: Data, text_base: Path, workdir: Path) -> None:
    out = workdir / "ins_full"
    summary = train("instruct", text_base, data.ins_train, out, "full-ft", "--columns", INS_COLUMNS,
                    "--strategy-overrides", '{"epochs": 1}')
    assert summary["method"] == "full"
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "config.json").is_file()
    result = ins_eval(data, text_base, out / "model")
    assert result["ok"] is True, result
    assert result["test_loss"] < ins_eval(data, text_base, None)["test_loss"]


def test_instruct_baseline_runs(data: Data, text_base: Path, workdir: Path) -> None:
    summary = train("instruct", text_base, data.ins_train, workdir / "ins_base", "baseline",
                    "--columns", INS_COLUMNS)
    assert summary["strategy"] == "baseline" and summary["method"] == "lora"  # no GPU: no int4
    assert summary["steps"] > 0


def failed(result: dict, check: str, words: str) -> None:
    assert result["ok"] is False
    assert result["test_loss"] is None and result["synth_loss"] is None
    bad = [c for c in result["checks"] if not c["ok"]]
    assert bad and bad[-1]["name"] == check, result
    assert words in result["failure"], result


def test_base_model_unchanged_is_not_a_finetune(data: Data, text_base: Path) -> None:
    failed(ins_eval(data, text_base, text_base), "is_fine_tune", "not a fine-tune")


def test_untrained_lora_is_not_a_finetune(data: Data, text_base: Path, workdir: Path) -> None:
    from peft import get_peft_model

    from gradients_trainer.modelio import load_causal_lm, lora_config
    from gradients_trainer.strategies import get

    sub = workdir / "noop_lora"
    get_peft_model(load_causal_lm(text_base), lora_config(get("lora-fast"))).save_pretrained(sub)
    failed(ins_eval(data, text_base, sub), "is_fine_tune", "not a fine-tune")


def test_wrong_architecture(data: Data, text_base: Path, workdir: Path) -> None:
    other = workdir / "qwen_base"
    assert run_cli("make-base-model", "--task-type", "instruct", "--output", other,
                   "--architecture", "qwen2", "--pretrain-steps", "0").rc == 0
    failed(ins_eval(data, text_base, other), "architecture", "config field architectures")


def test_lora_for_other_model_rejected(data: Data, text_base: Path, ins_lora: Path, workdir: Path) -> None:
    from safetensors.torch import load_file, save_file

    sub = workdir / "bad_lora"
    shutil.copytree(ins_lora, sub)
    tensors = load_file(str(sub / "adapter_model.safetensors"))
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key] = tensors[key].new_zeros((tensors[key].shape[0], 999))
    save_file(tensors, str(sub / "adapter_model.safetensors"))
    failed(ins_eval(data, text_base, sub), "architecture", "does not fit")


def test_nan_weights_are_a_failed_result(data: Data, text_base: Path, ins_lora: Path, workdir: Path) -> None:
    from safetensors.torch import load_file, save_file

    sub = workdir / "nan_lora"
    shutil.copytree(ins_lora, sub)
    tensors = load_file(str(sub / "adapter_model.safetensors"))
    tensors = {k: (v * float("nan") if "lora_B" in k else v) for k, v in tensors.items()}
    save_file(tensors, str(sub / "adapter_model.safetensors"))
    failed(ins_eval(data, text_base, sub), "finite_loss", "non-finite")


def test_pickle_file_rejected(data: Data, text_base: Path, ins_lora: Path, workdir: Path) -> None:
    import torch

    sub = workdir / "pickled"
    shutil.copytree(ins_lora, sub)
    torch.save({"x": torch.zeros(1)}, sub / "pytorch_model.bin")
    result = ins_eval(data, text_base, sub)
    failed(result, "no_pickle", "pytorch_model.bin")
    # disguised pickle: a torch archive under an innocent name
    (sub / "pytorch_model.bin").rename(sub / "extra.dat")
    failed(ins_eval(data, text_base, sub), "no_pickle", "extra.dat")


def test_remote_code_rejected(data: Data, text_base: Path, ins_lora: Path, workdir: Path) -> None:
    sub = workdir / "remote_code"
    shutil.copytree(ins_lora, sub)
    (sub / "modeling_evil.py").write_text("import os\n")
    failed(ins_eval(data, text_base, sub), "no_remote_code", "modeling_evil.py")


def test_size_limit(data: Data, text_base: Path, ins_lora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIENTS_EVAL_MAX_SUBMISSION_BYTES", "1000")
    failed(ins_eval(data, text_base, ins_lora), "size", "exceeds the limit of 1000")


def test_missing_column_exits_2(data: Data, text_base: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cols = json.dumps({"instruction": "task", "input": "text", "output": "solution"})
    res = run_cli("train", "--task-type", "instruct", "--base-model", text_base, "--train-data",
                  data.ins_train, "--columns", cols, "--hours", "1", "--output", workdir / "x",
                  "--strategy", "lora-fast")
    assert res.rc == 2
    err = capsys.readouterr().err
    assert "error: --columns: column 'solution'" in err and "ins_train.jsonl" in err


def test_evaluate_missing_column_is_a_result(data: Data, text_base: Path, ins_lora: Path) -> None:
    cols = json.dumps({"instruction": "task", "output": "solution"})
    result = evaluate("instruct", text_base, ins_lora, data.ins_test, data.ins_synth, "--columns", cols)
    failed(result, "inputs", "solution")


# ----------------------------------------------------------------------------- DPO


def test_dpo_lora_improves_on_base(data: Data, text_base: Path, workdir: Path) -> None:
    out = workdir / "dpo_lora"
    summary = train("dpo", text_base, data.dpo_train, out, "lora-fast", "--columns", DPO_COLUMNS)
    assert summary["steps"] > 0 and summary["final_train_loss"] is not None
    sub = evaluate("dpo", text_base, out / "model", data.dpo_test, data.dpo_synth, "--columns", DPO_COLUMNS)
    base = evaluate("dpo", text_base, None, data.dpo_test, data.dpo_synth, "--columns", DPO_COLUMNS)
    assert sub["ok"] is True, sub
    assert base["test_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert sub["test_loss"] < base["test_loss"] and sub["synth_loss"] < base["synth_loss"]


def test_dpo_baseline_runs(data: Data, text_base: Path, workdir: Path) -> None:
    summary = train("dpo", text_base, data.dpo_train, workdir / "dpo_base", "baseline",
                    "--columns", DPO_COLUMNS)
    assert summary["strategy"] == "baseline" and summary["steps"] > 0


def test_dpo_missing_column_exits_2(data: Data, text_base: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cols = json.dumps({"prompt": "question", "chosen": "good", "rejected": "worse"})
    res = run_cli("train", "--task-type", "dpo", "--base-model", text_base, "--train-data",
                  data.dpo_train, "--columns", cols, "--hours", "1", "--output", workdir / "y")
    assert res.rc == 2 and "column 'worse'" in capsys.readouterr().err


def test_a_single_warmup_step_still_changes_the_adapter(data: Data, text_base: Path, workdir: Path) -> None:
    # One optimiser step inside a warmup schedule (what a deadline that stops a slow trainer
    # early leaves) must still move the weights: HF's warmup starts at a learning rate of 0.
    out = workdir / "ins_one_step"
    summary = train("instruct", text_base, data.ins_train, out, "lora-fast", "--columns", INS_COLUMNS,
                    "--strategy-overrides", '{"epochs": 0.001, "warmup_ratio": 0.5}')
    assert summary["steps"] == 1
    result = ins_eval(data, text_base, out / "model")
    assert result["ok"] is True, result
