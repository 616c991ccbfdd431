"""DPO with TRL's DPOTrainer (sigmoid loss; LoRA uses the adapter-disabled base as reference);
a full fine-tune in several processes is sharded instead (``dposharded``, the same objective)."""

from __future__ import annotations

from pathlib import Path

from . import dist, fsdp
from .data import Preference
from .hf import BudgetCallback, RunState, common_args, quiet
from .sft import sequence_limit
from .textcommon import TextTrainContext, clip_prompt, prepare_model, resolve_method


def _base_if_resumed(ctx: TextTrainContext) -> Path | None:
    """A resumed full fine-tune keeps the base as its reference, not the earlier slice's model."""
    return ctx.base_model if ctx.start_from is not None else None


def _reference(ctx: TextTrainContext, method: str) -> object | None:
    base = _base_if_resumed(ctx)
    if method != "full" or base is None:
        return None
    from .modelio import load_causal_lm

    return load_causal_lm(base).eval()


def train_dpo(ctx: TextTrainContext) -> RunState:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    ctx.sharded = fsdp.wanted(resolve_method(ctx.strategy))
    model, method = prepare_model(ctx)
    ctx.method = method
    examples: list[Preference] = ctx.examples
    max_len = sequence_limit(model.config, ctx.strategy.max_seq_len)
    prompt_tokens = min(ctx.strategy.max_prompt_length, max_len // 2)
    if ctx.sharded:
        from .dposharded import Dpo, pair_rows
        from .steploop import train_sharded

        rows = pair_rows(ctx.tokenizer, examples, max_len, prompt_tokens)
        objective = Dpo(rows, int(ctx.tokenizer.pad_token_id), ctx.strategy.dpo_beta,
                        ctx.strategy.batch_size, reference_from=_base_if_resumed(ctx))
        run = train_sharded(ctx, model, rows, objective)
        run.tokens = _tokens(ctx, examples, run.steps)
        return run
    dataset = Dataset.from_list(
        [
            {"prompt": clip_prompt(ctx.tokenizer, e.prompt, prompt_tokens), "chosen": e.chosen,
             "rejected": e.rejected}
            for e in examples
        ]
    )
    kwargs = common_args(ctx.strategy, ctx.output, ctx.seed, ctx.epochs)
    args = DPOConfig(
        **kwargs,
        beta=ctx.strategy.dpo_beta,
        loss_type=["sigmoid"],
        max_length=max_len,
        dataset_num_proc=None,
    )
    run = RunState()
    trainer = DPOTrainer(
        model=model,
        # LoRA: the adapter-disabled base. A resumed full fine-tune keeps the base as its
        # reference, not the earlier slice's model TRL would copy.
        ref_model=_reference(ctx, method),
        args=args,
        train_dataset=dataset,
        processing_class=ctx.tokenizer,
        callbacks=[BudgetCallback(ctx.budget, ctx.saver(), run)],
    )
    quiet(trainer).train()
    run.tokens = _tokens(ctx, examples, run.steps)
    ctx.final_model = model
    return run


def _tokens(ctx: TextTrainContext, examples: list[Preference], steps: int) -> int:
    """Tokens seen in ``steps`` optimiser steps, estimated from one epoch's."""
    per_epoch = sum(
        len(ctx.tokenizer(e.prompt)["input_ids"]) * 2
        + len(ctx.tokenizer(e.chosen)["input_ids"])
        + len(ctx.tokenizer(e.rejected)["input_ids"])
        for e in examples
    )
    per_step = ctx.strategy.batch_size * ctx.strategy.grad_accum * dist.world_size()
    steps_per_epoch = max(1, -(-len(examples) // per_step))
    return int(per_epoch * steps / steps_per_epoch)
