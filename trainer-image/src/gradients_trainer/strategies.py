"""The miner strategy catalogue, plus ``baseline`` (HuggingFace AutoTrain defaults).

A strategy is a named bundle of hyperparameters. Text task types (instruct, DPO, GRPO) use
the common fields; the image task type uses the ``image_*`` fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .contract import InputError

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    method: str = "lora"  # "lora" | "qlora" | "full"
    learning_rate: float = 2e-3
    epochs: float = 3.0
    batch_size: int = 2
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    optimizer: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = ALL_LINEAR
    use_dora: bool = False
    use_rslora: bool = False
    packing: bool = False
    max_seq_len: int = 1024
    # DPO
    dpo_beta: float = 0.1
    max_prompt_length: int = 128
    # GRPO
    grpo_num_generations: int = 4
    grpo_beta: float = 0.04
    grpo_max_completion_length: int = 24
    grpo_temperature: float = 1.0
    # image (diffusion LoRA on the UNet)
    image_learning_rate: float = 1e-3
    image_steps: int = 60
    image_batch_size: int = 2
    image_grad_accum: int = 1
    image_lora_r: int = 8
    image_resolution: int = 1024
    image_scheduler: str = "constant"
    image_weight_decay: float = 1e-2
    image_targets: str = "extended"  # "attention" (DreamBooth) | "extended" (+ff, proj, resnet convs)
    notes: dict[str, str] = field(default_factory=dict)

    def catalogue_entry(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notes")
        if isinstance(data["target_modules"], tuple):
            data["target_modules"] = list(data["target_modules"])
        entry: dict[str, Any] = {
            "name": data.pop("name"),
            "description": data.pop("description"),
            "method": data.pop("method"),
            "hyperparameters": data,
        }
        if self.notes:
            entry["notes"] = dict(self.notes)
        return entry


BASELINE = Strategy(
    name="baseline",
    description=(
        "HuggingFace AutoTrain LLM defaults (clm params.py; epochs=3 as in the AutoTrain UI): "
        "lr 3e-5, batch 2, grad-accum 4, warmup 0.1, adamw_torch, linear, wd 0, "
        "max_grad_norm 1.0, LoRA r16/alpha32/dropout 0.05 all-linear, int4 (QLoRA) where a "
        "CUDA GPU and bitsandbytes exist, dpo_beta 0.1, max_prompt_length 128, block 1024. "
        "Image: last AutoTrain DreamBooth LoRA defaults (lr 1e-4, rank 4, constant, "
        "batch 1 x grad-accum 4, 500 steps, resolution 1024, AdamW wd 1e-2)."
    ),
    method="qlora",
    learning_rate=3e-5,
    epochs=3.0,
    batch_size=2,
    grad_accum=4,
    warmup_ratio=0.1,
    scheduler="linear",
    weight_decay=0.0,
    max_grad_norm=1.0,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    max_seq_len=1024,
    dpo_beta=0.1,
    max_prompt_length=128,
    image_learning_rate=1e-4,
    image_steps=500,
    image_batch_size=1,
    image_grad_accum=4,
    image_lora_r=4,
    image_resolution=1024,
    image_scheduler="constant",
    image_weight_decay=1e-2,
    image_targets="attention",
    notes={
        "source": "autotrain-advanced src/autotrain/trainers/clm/params.py + app/params.py",
        "epochs": "class default 1, UI default 3; we use 3 (what a UI user gets)",
        "quantization": "int4 needs CUDA + bitsandbytes; on CPU it falls back to plain LoRA",
    },
)

CATALOGUE: tuple[Strategy, ...] = (
    BASELINE,
    Strategy(
        name="lora-fast",
        description="LoRA r16 all-linear, high lr, cosine, 2 epochs, batch 4",
        learning_rate=3e-3, epochs=2, batch_size=4, scheduler="cosine", warmup_ratio=0.05,
        image_learning_rate=2e-3, image_steps=40,
    ),
    Strategy(
        name="lora-wide",
        description="LoRA r64/alpha128 all-linear, lr 1e-3, cosine, 3 epochs",
        learning_rate=1e-3, lora_r=64, lora_alpha=128, scheduler="cosine",
        image_lora_r=32, image_learning_rate=5e-4,
    ),
    Strategy(
        name="lora-attn-small",
        description="LoRA r4 on attention q/v only, lr 5e-3, linear, 3 epochs",
        learning_rate=5e-3, lora_r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"),
        image_lora_r=4,
    ),
    Strategy(
        name="full-ft",
        description="full fine-tuning, lr 5e-4, cosine, 2 epochs, batch 4",
        method="full", learning_rate=5e-4, epochs=2, batch_size=4, scheduler="cosine",
        weight_decay=0.01,
    ),
    Strategy(
        name="full-careful",
        description="full fine-tuning, lr 1e-4, constant with warmup, 3 epochs, wd 0.01",
        method="full", learning_rate=1e-4, scheduler="constant_with_warmup", weight_decay=0.01,
        image_learning_rate=3e-4, image_steps=80,
    ),
    Strategy(
        name="lora-packed",
        description="LoRA r32 with sequence packing (SFT), lr 2e-3, cosine, 3 epochs",
        learning_rate=2e-3, lora_r=32, lora_alpha=64, packing=True, scheduler="cosine",
    ),
    Strategy(
        name="lora-long",
        description="LoRA r16, 5 epochs, lr 1e-3, cosine with restarts, batch 8",
        learning_rate=1e-3, epochs=5, batch_size=8, scheduler="cosine_with_restarts",
        image_steps=100, image_scheduler="cosine",
    ),
    Strategy(
        name="qlora-4bit",
        description="QLoRA int4 (bitsandbytes, CUDA) r16, lr 2e-3; plain LoRA where no GPU",
        method="qlora", learning_rate=2e-3, scheduler="cosine",
    ),
    Strategy(
        name="dora",
        description="DoRA (weight-decomposed LoRA) r16 all-linear, lr 2e-3, linear, 3 epochs",
        learning_rate=2e-3, use_dora=True,
    ),
    Strategy(
        name="rslora-big-batch",
        description="rank-stabilised LoRA r32, lr 2e-3, batch 4 x grad-accum 2, 4 epochs",
        learning_rate=2e-3, lora_r=32, lora_alpha=32, use_rslora=True, batch_size=4,
        grad_accum=2, epochs=4, dpo_beta=0.2, grpo_beta=0.0,
    ),
)

_BY_NAME = {s.name: s for s in CATALOGUE}


def names() -> list[str]:
    return [s.name for s in CATALOGUE]


def get(name: str) -> Strategy:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(
            "--strategy", f"unknown strategy '{name}' (known: {', '.join(names())})"
        ) from None


def with_overrides(strategy: Strategy, overrides: dict[str, Any]) -> Strategy:
    """Apply ``GRADIENTS_STRATEGY_OVERRIDES``-style overrides (used by tests and miners)."""
    fields = set(asdict(strategy))
    unknown = set(overrides) - fields
    if unknown:
        raise InputError("--strategy-overrides", f"unknown fields {sorted(unknown)}")
    return replace(strategy, **overrides)


def catalogue_json() -> list[dict[str, Any]]:
    return [s.catalogue_entry() for s in CATALOGUE]
