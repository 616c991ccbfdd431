"""Sequence packing without cross-example attention: a packed block scores every example
exactly as the example alone does (the packed and unpacked losses match)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import INS_COLUMNS, Data

# float32 on CPU: the same sums in a different order and mask layout.
RTOL = 1e-5


def _examples(data: Data, base: Path) -> tuple[Any, list[dict[str, list[int]]]]:
    from gradients_trainer.contract import TaskType
    from gradients_trainer.data import load_text_split, parse_columns
    from gradients_trainer.modelio import load_causal_lm, load_tokenizer
    from gradients_trainer.sft import tokenize_example

    tok = load_tokenizer(base)
    rows = load_text_split(TaskType.INSTRUCT, data.ins_train,
                           parse_columns(TaskType.INSTRUCT, INS_COLUMNS), "--train-data")[:12]
    model = load_causal_lm(base)
    model.eval()
    return model, [tokenize_example(tok, r) for r in rows]


def _loss_sum(model: Any, batch: dict[str, Any]) -> tuple[float, int]:
    """Summed completion-token cross-entropy of a collated batch, and its token count."""
    import torch

    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits[:, :-1, :].float()
    target = labels[:, 1:]
    valid = target != -100
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           target.reshape(-1).clamp(min=0), reduction="none")
    return float((ce * valid.reshape(-1)).sum()), int(valid.sum())


def test_packed_blocks_score_like_the_examples_alone(data: Data, text_base: Path) -> None:
    from gradients_trainer.sft import Collator, pack

    model, examples = _examples(data, text_base)
    longest = max(len(e["input_ids"]) for e in examples)
    blocks = pack(examples, 3 * longest)
    assert len(blocks) < len(examples), "several examples share a block"
    alone_sum, alone_tokens = _loss_sum(model, Collator(0)(examples))
    packed_sum, packed_tokens = _loss_sum(model, Collator(0)(blocks))  # padded rows too
    assert packed_tokens == alone_tokens
    assert abs(packed_sum - alone_sum) <= RTOL * alone_sum, (packed_sum, alone_sum)

    # The control: the same blocks with one running position and a plain mask let tokens
    # attend across examples, and the loss moves (what packing did before position_ids).
    crossing = [{k: v for k, v in b.items() if k != "position_ids"} for b in blocks]
    assert "attention_mask" in Collator(0)(crossing)
    crossing_sum, _ = _loss_sum(model, Collator(0)(crossing))
    assert abs(crossing_sum - alone_sum) > 100 * RTOL * alone_sum


def test_packing_keeps_whole_examples_within_the_block() -> None:
    from gradients_trainer.sft import pack

    ex = [{"input_ids": [1] * n, "labels": [-100] + [2] * (n - 1)} for n in (3, 4, 5, 2)]
    blocks = pack(ex, 8)
    assert [len(b["input_ids"]) for b in blocks] == [7, 7]
    assert blocks[0]["position_ids"] == [0, 1, 2, 0, 1, 2, 3]
    assert blocks[1]["position_ids"] == [0, 1, 2, 3, 4, 0, 1]


def test_packed_training_trains_and_evaluates(data: Data, text_base: Path, tmp_path: Path) -> None:
    from conftest import evaluate, train

    out = tmp_path / "packed"
    summary = train("instruct", text_base, data.ins_train, out, "lora-packed", "--columns",
                    INS_COLUMNS, "--strategy-overrides", '{"epochs": 1}')
    assert summary["steps"] > 0 and summary["method"] == "lora"
    result = evaluate("instruct", text_base, out / "model", data.ins_test, data.ins_synth,
                      "--columns", INS_COLUMNS)
    assert result["ok"] is True, result
