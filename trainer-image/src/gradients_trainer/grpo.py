"""GRPO with TRL's GRPOTrainer; reward functions run in the sandbox (see sandbox.py)."""

from __future__ import annotations

from typing import Any

from .data import GrpoPrompt
from .hf import BudgetCallback, RunState, common_args, quiet
from .sandbox import RewardSpec, SandboxedReward
from .textcommon import TextTrainContext, clip_prompt, prepare_model


def train_grpo(ctx: TextTrainContext) -> RunState:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, method = prepare_model(ctx)
    ctx.method = method
    examples: list[GrpoPrompt] = ctx.examples
    s = ctx.strategy
    prompt_tokens = min(256, s.max_prompt_length * 2)
    rows: list[dict[str, Any]] = [
        {"prompt": clip_prompt(ctx.tokenizer, e.prompt, prompt_tokens), "extra_data": e.extra}
        for e in examples
    ]
    if all(r["extra_data"] is None for r in rows):
        for r in rows:
            r.pop("extra_data")
    dataset = Dataset.from_list(rows)
    specs: list[RewardSpec] = ctx.rewards
    rewards = [SandboxedReward(spec) for spec in specs]
    kwargs = common_args(s, ctx.output, ctx.seed, ctx.epochs)
    # One prompt group per optimiser step on small budgets: batch = num_generations.
    kwargs["per_device_train_batch_size"] = s.grpo_num_generations
    kwargs["gradient_accumulation_steps"] = max(1, s.grad_accum // 2)
    args = GRPOConfig(
        **kwargs,
        beta=s.grpo_beta,
        num_generations=s.grpo_num_generations,
        max_completion_length=s.grpo_max_completion_length,
        temperature=s.grpo_temperature,
        reward_weights=[spec.weight for spec in specs],
        log_completions=False,
    )
    run = RunState()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,  # type: ignore[arg-type]
        args=args,
        train_dataset=dataset,
        processing_class=ctx.tokenizer,
        callbacks=[BudgetCallback(ctx.budget, ctx.saver(), run)],
    )
    quiet(trainer).train()
    ctx.final_model = model
    return run
