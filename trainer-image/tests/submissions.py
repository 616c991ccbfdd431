"""Submissions made without training (seeded weight changes on the tiny base), for the
manipulation and reference tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def full_finetune(base: Path, out: Path, scale: float = 0.02, seed: int = 7) -> Path:
    """The base with seeded noise on every weight, saved as a trainer would (safetensors)."""
    import torch

    from gradients_trainer.modelio import load_causal_lm

    if (out / "model.safetensors").is_file():
        return out
    model = load_causal_lm(base)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def lora(base: Path, out: Path, scale: float = 0.05, seed: int = 7) -> Path:
    """An all-linear LoRA with seeded non-zero B matrices, saved by PEFT."""
    import torch
    from peft import get_peft_model

    from gradients_trainer.modelio import load_causal_lm, lora_config
    from gradients_trainer.strategies import get

    if (out / "adapter_model.safetensors").is_file():
        return out
    model = get_peft_model(load_causal_lm(base), lora_config(get("lora-fast")))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(str(out))
    return out


def variant(src: Path, dest: Path, edit: dict[str, Any] | None = None, config: str = "config.json",
            extra: dict[str, str] | None = None) -> Path:
    """A copy of ``src`` with JSON keys of ``config`` changed and extra files written."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    if edit:
        cfg = json.loads((dest / config).read_text())
        cfg.update(edit)
        (dest / config).write_text(json.dumps(cfg))
    for name, text in (extra or {}).items():
        (dest / name).write_text(text)
    return dest
