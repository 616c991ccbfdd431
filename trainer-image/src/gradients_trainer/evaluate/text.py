"""Instruct (completion-token cross-entropy) and DPO (sigmoid loss vs base) evaluation."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable, ContextManager

from ..data import Preference, PromptCompletion
from ..sft import IGNORE, tokenize_example

BATCH = 8
TOKENS_PER_BATCH = 8192  # bounds the [batch, seq, vocab] logits on large-vocabulary models


def eval_seq_len(model_config: Any) -> int:
    """axolotl's sequence_len=4096, or ceil(max_pos/2) when the context is shorter."""
    max_pos = int(getattr(model_config, "max_position_embeddings", 4096) or 4096)
    return 4096 if max_pos >= 4096 else int(math.ceil(max_pos / 2))


def _batches(items: list[dict[str, list[int]]], size: int = BATCH,
             tokens: int = TOKENS_PER_BATCH) -> list[list[dict[str, list[int]]]]:
    """Consecutive batches of at most ``size`` rows and ``tokens`` padded tokens."""
    out: list[list[dict[str, list[int]]]] = []
    cur: list[dict[str, list[int]]] = []
    width = 0
    for item in items:
        w = max(width, len(item["input_ids"]))
        if cur and (len(cur) >= size or w * (len(cur) + 1) > tokens):
            out.append(cur)
            cur, w = [], len(item["input_ids"])
        cur.append(item)
        width = w
    if cur:
        out.append(cur)
    return out


def _pad(seqs: list[dict[str, list[int]]], pad_id: int, dev: Any) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(s["input_ids"]) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        n = len(s["input_ids"])
        ids[row, :n] = torch.tensor(s["input_ids"])
        labels[row, :n] = torch.tensor(s["labels"])
        mask[row, :n] = 1
    return ids.to(dev), mask.to(dev), labels.to(dev)


def _token_logprobs(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, Any]:
    """Per-token log-probs of the labels (shifted) and the label mask."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
    target = labels[:, 1:]
    valid = target != IGNORE
    picked = torch.stack([  # row by row: only one [seq, vocab] float32 copy at a time
        -torch.nn.functional.cross_entropy(logits[i].float(), target[i].clamp(min=0),
                                           reduction="none")
        for i in range(logits.shape[0])
    ])
    return picked * valid, valid


def instruct_loss(model: Any, tokenizer: Any, examples: list[PromptCompletion]) -> float:
    """Token-weighted mean cross-entropy over completion tokens (rows without any dropped)."""
    import torch

    max_len = eval_seq_len(model.config)
    seqs = [tokenize_example(tokenizer, ex, max_len) for ex in examples]
    seqs = [s for s in seqs if any(lab != IGNORE for lab in s["labels"][1:])]
    if not seqs:
        raise ValueError("no evaluation rows with completion tokens")
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(seqs):
            ids, mask, labels = _pad(batch, int(tokenizer.pad_token_id), dev)
            picked, valid = _token_logprobs(model, ids, mask, labels)
            total += float(-picked.sum())
            count += int(valid.sum())
    return total / max(1, count)


def _sequence_logps(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], max_len: int) -> list[float]:
    import torch

    seqs = [tokenize_example(tokenizer, PromptCompletion(p, c), max_len) for p, c in pairs]
    dev = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for batch in _batches(seqs):
            ids, mask, labels = _pad(batch, int(tokenizer.pad_token_id), dev)
            picked, _ = _token_logprobs(model, ids, mask, labels)
            out.extend(float(v) for v in picked.sum(-1))
    return out


def dpo_loss(
    policy: Any,
    reference_ctx: Callable[[], ContextManager[Any]] | None,
    reference: Any,
    tokenizer: Any,
    examples: list[Preference],
    beta: float = 0.1,
) -> float:
    """Mean of -log σ(β·[(π_c − ref_c) − (π_r − ref_r)]) with summed completion log-probs.

    ``reference_ctx`` (e.g. a LoRA model's ``disable_adapter``) turns ``policy`` into the
    reference; otherwise ``reference`` is a separate (base) model.
    """
    max_len = eval_seq_len(policy.config)
    chosen = [(e.prompt, e.chosen) for e in examples]
    rejected = [(e.prompt, e.rejected) for e in examples]
    pc = _sequence_logps(policy, tokenizer, chosen, max_len)
    pr = _sequence_logps(policy, tokenizer, rejected, max_len)
    ref_model = policy if reference_ctx is not None else reference
    ctx = reference_ctx() if reference_ctx is not None else nullcontext()
    with ctx:
        rc = _sequence_logps(ref_model, tokenizer, chosen, max_len)
        rr = _sequence_logps(ref_model, tokenizer, rejected, max_len)
    losses = []
    for a, b, c, d in zip(pc, pr, rc, rr):
        z = beta * ((a - c) - (b - d))
        losses.append(math.log1p(math.exp(-z)) if z > -30 else -z)
    return sum(losses) / len(losses)
