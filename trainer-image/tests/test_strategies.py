"""Every catalogue strategy trains at tiny scale on CPU and (except baseline) beats the base."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import INS_COLUMNS, Data, evaluate, train

from gradients_trainer.strategies import names


@pytest.fixture(scope="module")
def base_loss(data: Data, text_base: Path) -> float:
    result = evaluate("instruct", text_base, None, data.ins_test, data.ins_synth, "--columns", INS_COLUMNS)
    return float(result["test_loss"])


@pytest.mark.parametrize("strategy", [n for n in names() if n not in ("baseline", "lora-fast", "full-ft")])
def test_strategy_learns_instruct(strategy: str, data: Data, text_base: Path, workdir: Path,
                                  base_loss: float) -> None:
    out = workdir / f"strategy-{strategy}"
    summary = train("instruct", text_base, data.ins_train, out, strategy, "--columns", INS_COLUMNS)
    assert summary["strategy"] == strategy and summary["steps"] > 0
    result = evaluate("instruct", text_base, out / "model", data.ins_test, data.ins_synth,
                      "--columns", INS_COLUMNS)
    assert result["ok"] is True, result
    assert result["test_loss"] < base_loss
