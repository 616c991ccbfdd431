"""Instruct (completion-token cross-entropy) and DPO (sigmoid loss vs base) evaluation.

Rows are tokenised by ``textrules`` (the trainer's rules) and the window always comes from
the base model's configuration; rows longer than the window are dropped.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable, ContextManager

from .. import dist
from ..data import Preference, PromptCompletion
from ..textrules import IGNORE, instruct_example, keep_within, preference_pair

BATCH = 8
TOKENS_PER_BATCH = 8192  # bounds the [batch, seq, vocab] logits on large-vocabulary models
PAD_FILL = 0  # padded positions are masked out of attention and labels: any id will do


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


def instruct_loss(model: Any, tokenizer: Any, examples: list[PromptCompletion], window: int) -> float:
    """Token-weighted mean cross-entropy over completion tokens; rows without any completion
    token or longer than ``window`` are dropped. Equals the HF Trainer's ``eval_loss`` when
    the split is one evaluation batch (the Trainer weights each batch's token mean by rows)."""
    import torch

    seqs = keep_within([instruct_example(tokenizer, ex.prompt, ex.completion) for ex in examples], window)
    if not seqs:
        raise ValueError(f"no evaluation rows with completion tokens within {window} tokens")
    dev = next(model.parameters()).device
    batches = _batches(seqs)

    def sums(i: int) -> list[float]:
        ids, mask, labels = _pad(batches[i], PAD_FILL, dev)
        picked, valid = _token_logprobs(model, ids, mask, labels)
        return [float(-picked.sum()), float(valid.sum())]

    with torch.no_grad():
        # Sums (loss × tokens, tokens) per batch, never averages of averages; the batches are
        # the one-process batches dealt over the processes, added up in the same order.
        per_batch = dist.spread([2] * len(batches), sums)
    total, count = 0.0, 0
    for loss_sum, tokens in per_batch:
        total += loss_sum
        count += int(tokens)
    return total / max(1, count)


def _sequence_logps(model: Any, seqs: list[dict[str, list[int]]]) -> list[float]:
    import torch

    dev = next(model.parameters()).device
    batches = _batches(seqs)

    def logps(i: int) -> list[float]:
        ids, mask, labels = _pad(batches[i], PAD_FILL, dev)
        picked, _ = _token_logprobs(model, ids, mask, labels)
        return [float(v) for v in picked.sum(-1)]

    with torch.no_grad():
        per_batch = dist.spread([len(b) for b in batches], logps)
    return [v for values in per_batch for v in values]


def dpo_loss(
    policy: Any,
    reference_ctx: Callable[[], ContextManager[Any]] | None,
    reference: Any,
    tokenizer: Any,
    examples: list[Preference],
    window: int,
    beta: float = 0.1,
) -> float:
    """Mean of -log σ(β·[(π_c − ref_c) − (π_r − ref_r)]) with summed completion log-probs
    (TRL's sigmoid DPO loss), tokenised as TRL 1 does (``preference_pair``); a pair is dropped when either
    sequence is longer than ``window``.

    ``reference_ctx`` (e.g. a LoRA model's ``disable_adapter``) turns ``policy`` into the
    reference; otherwise ``reference`` is a separate (base) model.
    """
    chosen: list[dict[str, list[int]]] = []
    rejected: list[dict[str, list[int]]] = []
    for e in examples:
        good, bad = preference_pair(tokenizer, e.prompt, e.chosen, e.rejected)
        if keep_within([good, bad], window) == [good, bad]:
            chosen.append(good)
            rejected.append(bad)
    if not chosen:
        raise ValueError(f"no preference pairs within {window} tokens")
    pc = _sequence_logps(policy, chosen)
    pr = _sequence_logps(policy, rejected)
    ref_model = policy if reference_ctx is not None else reference
    ctx = reference_ctx() if reference_ctx is not None else nullcontext()
    with ctx:
        rc = _sequence_logps(ref_model, chosen)
        rr = _sequence_logps(ref_model, rejected)
    losses = []
    for a, b, c, d in zip(pc, pr, rc, rr):
        z = beta * ((a - c) - (b - d))
        losses.append(math.log1p(math.exp(-z)) if z > -30 else -z)
    return sum(losses) / len(losses)
