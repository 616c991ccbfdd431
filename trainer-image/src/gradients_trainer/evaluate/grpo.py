"""GRPO evaluation as TRL's GRPOTrainer samples and rewards (lower loss is better).

loss = −Σ wᵢ · meanᵢ, where meanᵢ is reward i's mean over every completion, ignoring the
ones it returned ``None`` for (TRL's ``nanmean``; a reward with no value at all adds 0).

Sampling is TRL's (``GRPOConfig`` defaults): prompts with the tokenizer's special tokens,
left-padded, cut to 512 tokens by the tokenizer (our limit; TRL 1 has none); ``do_sample`` with temperature 1.0, top_p 1.0, top_k 0
(none), no min-p, repetition penalty 1.0, 256 new tokens; each prompt repeated
``generations`` times in a row (TRL's ``RepeatSampler``); completions end at the first of the
EOS ids (the tokenizer's, then every one the base's generation config declares, as TRL 1
does) and are decoded without special tokens. transformers fills the settings TRL leaves at their defaults from
``model.generation_config``, which the evaluator sets to the *base* model's, as TRL does
when it trains that base; the submission's ``generation_config.json`` is never read.

Beside the loss: KL(base‖submission) per prompt token, averaged over the prompts' tokens
(the public evaluator's KL term), for the scoring to use.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

from ..data import GrpoPrompt
from ..sandbox import RewardSpec, SandboxError, SandboxUnavailable, run_reward
from ..textrules import GRPO_MAX_PROMPT_TOKENS, grpo_prompt_ids

BATCH = 8  # rows (prompt × generation) per generate call


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256  # the validator's max_completion_length (TRL 0.x default; TRL 1: 512)
    generations: int = 2  # the public evaluator's num_generations
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # TRL 1's default: no top-k filter
    min_p: float | None = None
    repetition_penalty: float = 1.0


PRODUCTION = Sampling()
FAST = Sampling(max_new_tokens=32)  # tests and demos only: TRL's settings, shorter completions


class RewardProbeFailed(Exception):
    """The task's reward code fails on the task's own prompts: the task's fault."""


@dataclass
class GrpoScore:
    loss: float
    rewards: dict[str, float | None]  # name -> mean ignoring None (None when no value)
    kl: float


def eos_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """TRL 1's list: the tokenizer's EOS first, then every EOS id of ``model.generation_config``
    (the base's: the evaluator sets it, a submission's is never read)."""
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if declared is None else [declared] if isinstance(declared, int) else list(declared)
    return ids if tokenizer.eos_token_id in ids else [tokenizer.eos_token_id, *ids]


def generation_config(tokenizer: Any, s: Sampling, eos_ids: list[int]) -> Any:
    """The GenerationConfig TRL's GRPOTrainer builds from its config."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=s.max_new_tokens, do_sample=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
        temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
        repetition_penalty=s.repetition_penalty, cache_implementation=None, disable_compile=True,
    )


def encode_prompts(tokenizer: Any, prompts: list[str], dev: Any) -> dict[str, Any]:
    """TRL 1's tokenisation (the tokenizer's special tokens), left padding, cut to 512 tokens."""
    enc = tokenizer(text=prompts, return_tensors="pt", padding=True, padding_side="left",
                    max_length=GRPO_MAX_PROMPT_TOKENS, truncation=True)
    return {"input_ids": enc["input_ids"].to(dev), "attention_mask": enc["attention_mask"].to(dev)}


def decode_completions(tokenizer: Any, new_tokens: Any, eos_ids: list[int]) -> list[str]:
    """Cut each row after its first EOS (any of ``eos_ids``) and decode without special tokens (TRL)."""
    ends = set(eos_ids)
    out: list[str] = []
    for row in new_tokens.tolist():
        first = next((i for i, t in enumerate(row) if t in ends), None)
        if first is not None:
            row = row[: first + 1]
        out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out


def generate(model: Any, tokenizer: Any, prompts: list[str], s: Sampling, seed: int) -> list[str]:
    """``s.generations`` completions per prompt, prompt-major; batch b is seeded seed + b."""
    import torch

    dev = next(model.parameters()).device
    rows = [p for p in prompts for _ in range(s.generations)]
    per_batch = max(s.generations, BATCH - BATCH % s.generations)
    eos_ids = eos_token_ids(tokenizer, model)
    cfg = generation_config(tokenizer, s, eos_ids)
    outputs: list[str] = []
    for b, start in enumerate(range(0, len(rows), per_batch)):
        enc = encode_prompts(tokenizer, rows[start: start + per_batch], dev)
        torch.manual_seed(seed + b)
        with torch.no_grad():
            out = model.generate(**enc, generation_config=cfg)
        outputs.extend(decode_completions(tokenizer, out[:, enc["input_ids"].shape[1]:], eos_ids))
    return outputs


def nanmean(values: list[float]) -> float | None:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def reward_means(specs: list[RewardSpec], completions: list[str], prompts: list[str],
                 extra: list[Any]) -> dict[str, float | None]:
    """Each reward's mean ignoring None (NaN). Raises SandboxError if a reward fails."""
    means: dict[str, float | None] = {}
    for spec in specs:
        values = run_reward(spec, completions, prompts, extra)
        if any(math.isinf(v) for v in values):
            raise SandboxError(f"reward '{spec.name}' returned an infinite value")
        means[spec.name] = nanmean(values)
    return means


def weighted_loss(specs: list[RewardSpec], means: dict[str, float | None]) -> float:
    return -sum(spec.weight * (means[spec.name] or 0.0) for spec in specs)


def probe_rewards(specs: list[RewardSpec], examples: list[GrpoPrompt]) -> None:
    """Each reward on two of the task's prompts (a short and an empty completion) before any
    model is loaded. ``None`` values are allowed (TRL ignores them); anything else that goes
    wrong is the task's fault (RewardProbeFailed), not the submission's."""
    sample = examples[:2] or [GrpoPrompt("probe prompt", None)]
    prompts = [e.prompt for e in sample]
    extra = [e.extra for e in sample]
    completions = ["probe completion", ""][: len(prompts)]
    try:
        reward_means(specs, completions, prompts, extra)
    except SandboxUnavailable:
        raise  # the machine's fault, not the task's
    except SandboxError as exc:
        raise RewardProbeFailed(str(exc)) from None


def kl_base_submission(model: Any, base_ctx: Callable[[], ContextManager[Any]] | None, base: Any,
                       tokenizer: Any, prompts: list[str]) -> float:
    """Mean over prompt tokens of KL(p_base ‖ p_submission) of the next-token distributions."""
    import torch

    dev = next(model.parameters()).device
    base_model = model if base_ctx is not None else base
    total, count = 0.0, 0
    with torch.no_grad():
        for p in prompts:
            ids = grpo_prompt_ids(tokenizer, p)
            if not ids:
                continue
            x = torch.tensor([ids], device=dev)
            sub_logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)
            with base_ctx() if base_ctx is not None else nullcontext():
                base_logp = torch.log_softmax(base_model(input_ids=x).logits[0].float(), -1)
            kl = (base_logp.exp() * (base_logp - sub_logp)).sum(-1)
            total += float(kl.sum())
            count += len(ids)
    return total / max(1, count)


def grpo_score(model: Any, tokenizer: Any, examples: list[GrpoPrompt], specs: list[RewardSpec],
               s: Sampling, seed: int, base_ctx: Callable[[], ContextManager[Any]] | None = None,
               base: Any = None) -> GrpoScore:
    """Rewards run in the sandbox; a reward failing on the completions raises SandboxError.
    ``base_ctx`` (a LoRA's ``disable_adapter``) or ``base`` gives the KL reference; with
    neither the model is its own reference (KL 0)."""
    prompts = [e.prompt for e in examples]
    completions = generate(model, tokenizer, prompts, s, seed)
    rep_prompts = [e.prompt for e in examples for _ in range(s.generations)]
    rep_extra = [e.extra for e in examples for _ in range(s.generations)]
    means = reward_means(specs, completions, rep_prompts, rep_extra)
    kl = 0.0
    if base_ctx is not None or base is not None:
        kl = kl_base_submission(model, base_ctx, base, tokenizer, prompts)
    return GrpoScore(loss=weighted_loss(specs, means), rewards=means, kl=kl)
