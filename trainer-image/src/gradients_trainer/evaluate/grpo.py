"""GRPO evaluation: loss = −Σ wᵢ·mean(rewardᵢ) over deterministic completions (lower is better)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data import GrpoPrompt
from ..sandbox import RewardSpec, run_reward

BATCH = 8


@dataclass(frozen=True)
class GenerationProfile:
    max_new_tokens: int
    generations: int  # per prompt; 1 = greedy, >1 = seeded sampling
    temperature: float = 1.0


FAST = GenerationProfile(max_new_tokens=32, generations=1)
PAPER = GenerationProfile(max_new_tokens=128, generations=2, temperature=0.7)


def generate(model: Any, tokenizer: Any, prompts: list[str], profile: GenerationProfile,
             seed: int) -> list[str]:
    import torch

    dev = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), BATCH):
            chunk = prompts[start : start + BATCH]
            enc = tokenizer(chunk, return_tensors="pt", padding=True).to(dev)
            for g in range(profile.generations):
                kwargs: dict[str, Any] = dict(
                    max_new_tokens=profile.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                if profile.generations == 1:
                    kwargs.update(do_sample=False)
                else:
                    torch.manual_seed(seed * 1000 + start + g)
                    kwargs.update(do_sample=True, temperature=profile.temperature, top_k=0, top_p=1.0)
                with torch.no_grad():
                    out = model.generate(**enc, **kwargs)
                new = out[:, enc["input_ids"].shape[1] :]
                outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
    return outputs


def grpo_loss(model: Any, tokenizer: Any, examples: list[GrpoPrompt], rewards: list[RewardSpec],
              profile: GenerationProfile, seed: int) -> float:
    """Rewards run in the sandbox; any reward failure raises SandboxError."""
    prompts = [e.prompt for e in examples]
    completions = generate(model, tokenizer, prompts, profile, seed)
    per_prompt = profile.generations
    # generate() yields, per batch, generation-major order; rebuild prompts/extra alongside.
    rep_prompts: list[str] = []
    rep_extra: list[Any] = []
    for start in range(0, len(examples), BATCH):
        chunk = examples[start : start + BATCH]
        for _ in range(per_prompt):
            rep_prompts.extend(e.prompt for e in chunk)
            rep_extra.extend(e.extra for e in chunk)
    total = 0.0
    for spec in rewards:
        values = run_reward(spec, completions, rep_prompts, rep_extra)
        total += spec.weight * (sum(values) / len(values))
    return -total
