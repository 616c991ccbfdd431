"""Instruction tuning (SFT): loss on completion tokens only; LoRA, QLoRA or full; packing."""

from __future__ import annotations

from typing import Any

from . import dist, fsdp
from .data import PromptCompletion
from .textrules import IGNORE, instruct_example, keep_within, window_of
from .hf import BudgetCallback, RunState, common_args, quiet
from .textcommon import TextTrainContext, prepare_model, resolve_method



def tokenize_example(tokenizer: Any, ex: PromptCompletion) -> dict[str, list[int]]:
    """Prompt and completion tokenized separately (like axolotl); labels mask the prompt."""
    return instruct_example(tokenizer, ex.prompt, ex.completion)


def sequence_limit(model_config: Any, wanted: int) -> int:
    """The strategy's length within the base's evaluation window (``textrules.window_of``)."""
    return max(8, min(wanted, window_of(model_config)))


def pack(examples: list[dict[str, list[int]]], block: int) -> list[dict[str, list[int]]]:
    """Greedy packing of whole examples into blocks of at most ``block`` tokens.

    Each block carries ``position_ids`` that restart at 0 for every example: given no
    attention mask, transformers then builds a block-diagonal causal mask from them
    (``masking_utils.find_packed_sequence_indices``), so no token attends to another example
    and every example sees the positions it would see alone (tests/test_packing.py)."""
    packed: list[dict[str, list[int]]] = []
    cur: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for ex in examples:
        if cur["input_ids"] and len(cur["input_ids"]) + len(ex["input_ids"]) > block:
            packed.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] = cur["input_ids"] + ex["input_ids"]
        cur["labels"] = cur["labels"] + ex["labels"]
        cur["position_ids"] = cur["position_ids"] + list(range(len(ex["input_ids"])))
    if cur["input_ids"]:
        packed.append(cur)
    return packed


class Collator:
    """Right-pads a batch and counts the tokens it has seen.

    Packed blocks (with ``position_ids``) get no attention mask: the padding becomes one
    more segment (positions from 0, labels ignored), isolated like every example."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        packed = "position_ids" in features[0]
        positions = torch.arange(width, dtype=torch.long).repeat(len(features), 1)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
            if packed:
                positions[row, :n] = torch.tensor(f["position_ids"])
                positions[row, n:] = torch.arange(width - n)
            self.tokens += n
        if packed:  # no cache: transformers reads packed positions only without one
            return {"input_ids": ids, "position_ids": positions, "labels": labels,
                    "use_cache": False}
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class ListDataset:
    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict[str, list[int]]:
        return self.items[idx]


def train_sft(ctx: TextTrainContext) -> RunState:
    from transformers import Trainer, TrainingArguments

    ctx.sharded = fsdp.wanted(resolve_method(ctx.strategy))
    model, method = prepare_model(ctx)
    ctx.method = method
    max_len = sequence_limit(model.config, ctx.strategy.max_seq_len)
    # Rows longer than the window are dropped, as axolotl and the evaluator do.
    examples = keep_within([tokenize_example(ctx.tokenizer, ex) for ex in ctx.examples], max_len)
    if ctx.strategy.packing:
        examples = pack(examples, max_len)
    collator = Collator(int(ctx.tokenizer.pad_token_id))
    if ctx.sharded:
        from .steploop import CausalLM, train_sharded

        run = train_sharded(ctx, model, ListDataset(examples), CausalLM(collator))
        run.tokens = int(dist.sum_of(float(collator.tokens))[0])
        return run
    run = RunState()
    args = TrainingArguments(**common_args(ctx.strategy, ctx.output, ctx.seed, ctx.epochs))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ListDataset(examples),  # type: ignore[arg-type]
        data_collator=collator,
        callbacks=[BudgetCallback(ctx.budget, ctx.saver(), run)],
    )
    quiet(trainer).train()
    run.tokens = int(dist.sum_of(float(collator.tokens))[0])  # every process's share
    ctx.final_model = model
    return run
