"""``python -m gradients_trainer.preflight``: the runner's check before any workload starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradients_trainer import CONTRACT_VERSION
from gradients_trainer.preflight import main

SRC = Path(__file__).resolve().parent.parent / "src"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "gradients_trainer.preflight", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_tiny_base_model_passes_with_the_contract_version(text_base: Path) -> None:
    result = run("--task-type", "instruct", "--base-model", str(text_base))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["contract_version"] == CONTRACT_VERSION
    assert str(facts["base_model"]).endswith("ForCausalLM")


def test_a_base_model_whose_config_does_not_load_exits_2_with_the_cause(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    assert main(["--task-type", "dpo", "--base-model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot load its configuration" in err and "no-such-architecture" in err


def test_asking_for_more_gpus_than_visible_exits_2(text_base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert main(["--task-type", "instruct", "--base-model", str(text_base), "--gpus", str(visible + 1)]) == 2
    assert f"{visible + 1} GPU(s) asked for, {visible} visible" in capsys.readouterr().err
