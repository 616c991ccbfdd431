"""Loading and saving models the same way for tiny test checkpoints and real ones."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from .contract import InputError

ATTN_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj")


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_model_dir(path: Path, argument: str = "--base-model") -> None:
    if not path.is_dir():
        raise InputError(argument, f"not a directory: {path}")
    if not (path / "config.json").is_file() and not (path / "model_index.json").is_file():
        raise InputError(argument, f"{path}: no config.json or model_index.json")


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    if "token_type_ids" in tok.model_input_names:  # causal LMs take no token types
        tok.model_input_names = [n for n in tok.model_input_names if n != "token_type_ids"]
    return tok


def load_causal_lm(path: Path, quantize_4bit: bool = False) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        trust_remote_code=False, local_files_only=True, use_safetensors=True
    )
    if device() == "cuda":
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": 0}
        if quantize_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
    else:
        kwargs["dtype"] = torch.float32
    return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)


def qlora_available() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def lora_config(strategy: Any, task_type: str = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    target: Any = strategy.target_modules
    if isinstance(target, tuple):
        target = list(target)
    return LoraConfig(
        r=strategy.lora_r,
        lora_alpha=strategy.lora_alpha,
        lora_dropout=strategy.lora_dropout,
        target_modules=target,
        use_dora=strategy.use_dora,
        use_rslora=strategy.use_rslora,
        bias="none",
        task_type=task_type,
    )


def save_text_model(model: Any, output_model_dir: Path, tokenizer: Any | None) -> float:
    """Atomically (re)write ``OUTPUT/model`` with safetensors weights; returns seconds."""
    started = time.time()
    tmp = output_model_dir.parent / (".model.tmp-" + str(os.getpid()))
    if tmp.exists():
        shutil.rmtree(tmp)
    to_save = model
    if hasattr(to_save, "module"):
        to_save = to_save.module
    to_save.save_pretrained(str(tmp), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, output_model_dir)
    return time.time() - started


def replace_dir(tmp: Path, final: Path) -> None:
    old = final.parent / (".model.old-" + str(os.getpid()))
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
