"""Tokenisation and length rules shared by the trainer and the evaluator.

They follow the reference trainers, so what a miner trains on is what is scored:

- instruct (axolotl, ``train_on_inputs: false``): the prompt is tokenised with the
  tokenizer's special tokens (BOS for Llama/Mistral), the completion without them and
  followed by EOS; only completion tokens carry labels.
- DPO and GRPO prompts (TRL 1's ``DPOTrainer`` and ``GRPOTrainer``, the pinned version the
  reference trainer trains with): tokenised as the tokenizer does by default, so with its
  special tokens (BOS for Llama/Mistral). A DPO completion is the text appended to the prompt
  (with the EOS token's text unless it already ends with it), tokenised *together* with the
  prompt; it starts where both pairs' joint ids stop sharing a prefix with the prompt's ids
  (TRL's ``common_prefix_length``). GRPO prompts are cut by the tokenizer to 512 tokens (the
  public Gradients validator's ``GRPOConfig.max_prompt_length`` under TRL 0.x; TRL 1 dropped
  the option, the limit stays ours).
- Sequence length (the public Gradients evaluator's axolotl ``sequence_len``):
  ``ceil(max_position_embeddings / 2)`` below 8192, else 4096, always from the *base*
  model's configuration. Rows longer than that are dropped, not truncated (axolotl's
  ``drop_long_seq``).
"""

from __future__ import annotations

import math
from typing import Any

IGNORE = -100
LONG_CONTEXT = 8192
LONG_CONTEXT_WINDOW = 4096
# TRL 0.x's GRPOConfig.max_prompt_length and the public evaluator's KL prompt length.
GRPO_MAX_PROMPT_TOKENS = 512


def sequence_len(max_position_embeddings: int | None) -> int:
    """The evaluation window for a base model's context length."""
    max_pos = int(max_position_embeddings or LONG_CONTEXT)
    if max_pos < LONG_CONTEXT:
        return max(1, math.ceil(max_pos / 2))
    return LONG_CONTEXT_WINDOW


def window_of(base_config: Any) -> int:
    """``sequence_len`` of a base model's ``config.json`` (a dict or a PretrainedConfig)."""
    value = (base_config.get("max_position_embeddings") if isinstance(base_config, dict)
             else getattr(base_config, "max_position_embeddings", None))
    return sequence_len(value)


def eos_id(tokenizer: Any) -> int | None:
    eos = tokenizer.eos_token_id
    return None if eos is None else int(eos)


def instruct_example(tokenizer: Any, prompt: str, completion: str) -> dict[str, list[int]]:
    """Untruncated ids and labels of one instruct row (prompt masked with IGNORE)."""
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids: list[int] = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = eos_id(tokenizer)
    if eos is not None:
        completion_ids = completion_ids + [eos]
    return {"input_ids": prompt_ids + completion_ids,
            "labels": [IGNORE] * len(prompt_ids) + completion_ids}


def grpo_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A GRPO prompt as TRL's generation sees it: the tokenizer's special tokens, cut by the
    tokenizer to ``GRPO_MAX_PROMPT_TOKENS`` (on its ``truncation_side``)."""
    return list(tokenizer(prompt, max_length=GRPO_MAX_PROMPT_TOKENS, truncation=True)["input_ids"])


def _with_eos(tokenizer: Any, completion: str) -> str:
    eos = tokenizer.eos_token
    return completion if eos is None or completion.endswith(eos) else completion + eos


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def preference_pair(tokenizer: Any, prompt: str, chosen: str,
                    rejected: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """One DPO row as TRL 1 tokenises it: (prompt + chosen, prompt + rejected), completions
    (with EOS) labelled from where both stop sharing the prompt's ids."""
    p: list[int] = list(tokenizer(prompt)["input_ids"])
    good: list[int] = list(tokenizer(prompt + _with_eos(tokenizer, chosen))["input_ids"])
    bad: list[int] = list(tokenizer(prompt + _with_eos(tokenizer, rejected))["input_ids"])
    cut = min(_common_prefix(p, good), _common_prefix(p, bad))

    def example(ids: list[int]) -> dict[str, list[int]]:
        return {"input_ids": ids, "labels": [IGNORE] * cut + ids[cut:]}

    return example(good), example(bad)


def has_labels(example: dict[str, list[int]]) -> bool:
    """A row scores at least one token (the first position is never a prediction target)."""
    return any(label != IGNORE for label in example["labels"][1:])


def keep_within(examples: list[dict[str, list[int]]], window: int) -> list[dict[str, list[int]]]:
    """Rows that fit the window and have a label; longer rows are dropped, never truncated."""
    return [e for e in examples if len(e["input_ids"]) <= window and has_labels(e)]
