"""DPO with TRL's DPOTrainer (sigmoid loss; LoRA uses the adapter-disabled base as reference)."""

from __future__ import annotations

from . import dist
from .data import Preference
from .hf import BudgetCallback, RunState, common_args, quiet
from .sft import sequence_limit
from .textcommon import TextTrainContext, clip_prompt, prepare_model


def _reference(ctx: TextTrainContext, method: str) -> object | None:
    if method != "full" or ctx.start_from is None:
        return None
    from .modelio import load_causal_lm

    return load_causal_lm(ctx.base_model).eval()


def train_dpo(ctx: TextTrainContext) -> RunState:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, method = prepare_model(ctx)
    ctx.method = method
    examples: list[Preference] = ctx.examples
    max_len = sequence_limit(model.config, ctx.strategy.max_seq_len)
    prompt_tokens = min(ctx.strategy.max_prompt_length, max_len // 2)
    dataset = Dataset.from_list(
        [
            {"prompt": clip_prompt(ctx.tokenizer, e.prompt, prompt_tokens), "chosen": e.chosen,
             "rejected": e.rejected}
            for e in examples
        ]
    )
    kwargs = common_args(ctx.strategy, ctx.output, ctx.seed)
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
    per_epoch = sum(
        len(ctx.tokenizer(e.prompt)["input_ids"]) * 2
        + len(ctx.tokenizer(e.chosen)["input_ids"])
        + len(ctx.tokenizer(e.rejected)["input_ids"])
        for e in examples
    )
    per_step = ctx.strategy.batch_size * ctx.strategy.grad_accum * dist.world_size()
    steps_per_epoch = max(1, -(-len(examples) // per_step))
    run.tokens = int(per_epoch * run.steps / steps_per_epoch)
    ctx.final_model = model
    return run
