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


def load_causal_lm(path: Path, quantize_4bit: bool = False, sharded: bool = False) -> Any:
    """``sharded``: loaded into host memory; ``fsdp.shard`` then moves each process's share
    to its device (the whole model never sits on one device)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        trust_remote_code=False, local_files_only=True, use_safetensors=True
    )
    if device() == "cuda":
        kwargs["dtype"] = torch.bfloat16
        from . import dist

        if not sharded:
            kwargs["device_map"] = {"": dist.local_rank()}  # this process's device
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


def save_text_model(model: Any, output_model_dir: Path, tokenizer: Any | None,
                    state_dict: dict[str, Any] | None = None) -> float:
    """Atomically (re)write ``OUTPUT/model`` with safetensors weights; returns seconds.
    ``state_dict``: the weights gathered from a sharded model (``fsdp.full_state_dict``)."""
    started = time.time()
    tmp = output_model_dir.parent / (".model.tmp-" + str(os.getpid()))
    if tmp.exists():
        shutil.rmtree(tmp)
    to_save = model
    if hasattr(to_save, "module"):
        to_save = to_save.module
    extra = {} if state_dict is None else {"state_dict": state_dict}
    to_save.save_pretrained(str(tmp), safe_serialization=True, **extra)
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


def trusted_model_dir(base: Path, weight_files: list[Path], staging: Path,
                      adapter_config: dict[str, Any] | None = None) -> Path:
    """A directory holding only what the evaluator trusts: the submission's weights (links to
    files already checked) with the *base's* ``config.json`` and ``generation_config.json``
    (full fine-tune), or the sanitized ``adapter_config.json`` (LoRA). A submission's own
    configuration files are never handed to transformers or PEFT."""
    import json

    staging.mkdir(parents=True, exist_ok=True)
    for f in weight_files:
        (staging / f.name).symlink_to(f.resolve())
    if adapter_config is not None:
        (staging / "adapter_config.json").write_text(json.dumps(adapter_config))
        return staging
    for name in ("config.json", "generation_config.json"):
        if (base / name).is_file():
            shutil.copyfile(base / name, staging / name)
    if len(weight_files) > 1:  # the index is rebuilt from the headers, never taken from the submission
        from .checks import safetensors_header

        weight_map = {key: f.name for f in weight_files for key in safetensors_header(f, 1 << 30)[0]}
        (staging / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}))
    return staging


def base_generation_config(base: Path) -> Any:
    """The base model's generation configuration (its file, else derived from its config)."""
    from transformers import AutoConfig, GenerationConfig

    if (base / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(str(base), local_files_only=True)
    cfg = AutoConfig.from_pretrained(str(base), trust_remote_code=False, local_files_only=True)
    return GenerationConfig.from_model_config(cfg)
