"""DPO full fine-tuning sharded with FSDP: TRL's sigmoid DPO objective in ``steploop``.

The same rows and numbers as the one-process TRL path (``dpo.py``): pairs tokenised as TRL 1
does (``textrules.preference_pair`` on the clipped prompt), each sequence cut to the maximum
length from its start (TRL's ``keep_start``) and a pair dropped when its prompt alone fills
it; the loss of a step is the mean over the global batch's pairs of
``-log σ(β·[(π_c − ref_c) − (π_r − ref_r)])`` with summed completion log-probs. The reference
of a full fine-tune is the initial policy (the base, also when resuming an earlier slice):
its log-probs are computed once, sharded, before the first step, so no second copy of the
model is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import dist, fsdp
from .contract import log
from .data import Preference
from .sft import Collator
from .steploop import dealt_evenly
from .textcommon import clip_prompt
from .textrules import IGNORE, preference_pair


def pair_rows(tokenizer: Any, examples: list[Preference], max_len: int,
              prompt_tokens: int) -> list[dict[str, Any]]:
    """Tokenised pairs as TRL's DPOTrainer trains on them (see the module's docstring)."""
    rows: list[dict[str, Any]] = []
    for e in examples:
        prompt = clip_prompt(tokenizer, e.prompt, prompt_tokens)
        good, bad = preference_pair(tokenizer, prompt, e.chosen, e.rejected)
        prompt_len = next((i for i, v in enumerate(good["labels"]) if v != IGNORE),
                          len(good["labels"]))
        if prompt_len >= max_len:
            continue
        rows.append({"index": len(rows),
                     "chosen": {k: v[:max_len] for k, v in good.items()},
                     "rejected": {k: v[:max_len] for k, v in bad.items()}})
    if not rows:
        raise ValueError(f"no preference pair whose prompt fits {max_len} tokens")
    return rows


def sequence_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Each sequence's summed log-probs of its labelled (completion) tokens, in float32."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits[:, :-1]
    target = batch["labels"][:, 1:]
    picked = -F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE,
                              reduction="none")
    return picked.sum(-1)


class Dpo:
    """``steploop.Objective`` for DPO: the mean over pairs of the sigmoid DPO loss."""

    def __init__(self, rows: list[dict[str, Any]], pad_id: int, beta: float, batch_size: int,
                 reference_from: Path | None = None) -> None:
        self.rows = rows
        self.collator = Collator(pad_id)
        self.beta = beta
        self.batch_size = batch_size
        # A resumed slice's reference is still the base, loaded from here.
        self.reference_from = reference_from
        self.reference: Any = None  # [pairs, 2]: (chosen, rejected) log-probs

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Chosen sequences first, then rejected (as TRL), and the pairs' row indices."""
        import torch

        batch = dict(self.collator([r["chosen"] for r in rows] + [r["rejected"] for r in rows]))
        batch["pairs"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
        return batch

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["pairs"].numel())

    def prepare(self, model: Any, device: Any) -> None:
        """The reference log-probs of every pair, each batch computed by one process (all run
        as many forwards: the sharded layers gather collectively), then summed across."""
        import torch

        reference = model
        if self.reference_from is not None:
            from .modelio import load_causal_lm

            log(f"dpo: reference log-probs from the base {self.reference_from}")
            reference = fsdp.shard(load_causal_lm(self.reference_from, sharded=True))
        n, world = len(self.rows), dist.world_size()
        chunks = [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]
        dealt = dealt_evenly(chunks, world)
        flat = [0.0] * (2 * n)
        reference.eval()
        with torch.no_grad():
            for j in range(dist.rank(), len(dealt), world):
                batch = self.collate([self.rows[i] for i in dealt[j]])
                batch = {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}
                values = sequence_logps(reference, batch).tolist()
                if j >= len(chunks):
                    continue  # a repeat that only keeps the processes in step
                half = len(dealt[j])
                for k, i in enumerate(dealt[j]):
                    flat[2 * i], flat[2 * i + 1] = values[k], values[half + k]
        self.reference = torch.tensor(dist.sum_of(*flat), dtype=torch.float32,
                                      device=device).view(n, 2)
        fsdp.reshard(model)
        del reference

    def loss(self, model: Any, batch: dict[str, Any], total: Any) -> Any:
        import torch.nn.functional as F

        policy_chosen, policy_rejected = sequence_logps(model, batch).chunk(2)
        ref = self.reference[batch["pairs"]]
        z = self.beta * ((policy_chosen - ref[:, 0]) - (policy_rejected - ref[:, 1]))
        return -F.logsigmoid(z).sum() / total
