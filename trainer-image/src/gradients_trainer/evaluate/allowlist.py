"""What a submission may ship, and which of its settings the evaluator accepts.

Files (top level of the submission directory):

- read and used: ``adapter_model.safetensors`` + ``adapter_config.json`` (a text LoRA),
  ``model.safetensors`` or ``model-NNNNN-of-NNNNN.safetensors`` + ``config.json`` (a full
  text fine-tune), one ``*.safetensors`` (an image LoRA);
- read and checked, then discarded: ``config.json`` (must match the base's architecture
  and shape keys; the model is built from the base's own ``config.json``) and
  ``adapter_config.json`` (every key on the allow-list below; the adapter is loaded with a
  configuration the evaluator writes from the accepted values);
- rejected: any weight format other than safetensors (by name or by pickle/zip content),
  code (``.py``, ``.so``…), ``auto_map``;
- ignored, never opened: everything else (tokenizer files, ``generation_config.json``,
  ``model.safetensors.index.json`` (rebuilt from the headers), READMEs, logs).
"""

from __future__ import annotations

import re
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FULL_CONFIG = "config.json"
FULL_WEIGHTS = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")

# config.json keys of a full fine-tune that must equal the base's (the public evaluator's
# list plus the vocabulary); every other key is ignored because the base's config is used.
ARCH_FIELDS = ("architectures", "model_type", "hidden_size", "n_layer", "intermediate_size",
               "head_dim", "hidden_act", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size")

# Whole modules a LoRA may replace (trained embeddings / output head).
MODULES_TO_SAVE = frozenset({"lm_head", "embed_tokens"})
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
MAX_RANK = 4096


class Rejected(Exception):
    """An adapter configuration key or value the evaluator does not accept."""


def _neutral(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {} or value == ""


def _number(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise Rejected(f"{key}={value!r}: must be a number in [{low}, {high}]")
    return float(value)


def _names(key: str, value: Any) -> list[str] | str | None:
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    if isinstance(value, list) and all(isinstance(v, str) and 0 < len(v) <= 128 for v in value) \
            and len(value) <= 256:
        return list(value)
    raise Rejected(f"{key}: must be a module name list or a pattern")


def _layers(key: str, value: Any, num_layers: int) -> list[int] | int | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_layers for v in items):
        raise Rejected(f"{key}={value!r}: must name layers of the base (0..{num_layers - 1})")
    return value  # type: ignore[no-any-return]


def _pattern_map(key: str, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 1024:
        raise Rejected(f"{key}: must be an object of module pattern -> number")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise Rejected(f"{key}: keys must be strings")
        out[k] = _number(f"{key}[{k}]", v, 1e-6, MAX_RANK * 16)
    return out


# Keys PEFT writes that carry no behaviour at evaluation (accepted with any value, never
# passed on): the adapter's weights come from the file, dropout is off, and
# ``megatron_core`` / ``qalora_group_size`` only act with ``megatron_config`` / ``use_qalora``,
# which must be neutral; ``peft_version`` (PEFT >= 0.18) only records who wrote the file.
INERT_KEYS = frozenset({"base_model_name_or_path", "revision", "inference_mode", "lora_dropout",
                        "init_lora_weights", "auto_mapping", "runtime_config", "megatron_core",
                        "qalora_group_size", "peft_version"})


def sanitize_adapter_config(cfg: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """The adapter configuration the evaluator loads: accepted values only, written anew.

    Raises Rejected naming the first key or value outside the allow-list. Unknown keys are
    accepted only with a neutral value (null, false, empty), as newer PEFT versions write.
    """
    peft_type = str(cfg.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise Rejected(f"peft_type={cfg.get('peft_type')!r}: only LORA adapters are accepted")
    task_type = cfg.get("task_type")
    if task_type not in (None, "CAUSAL_LM"):
        raise Rejected(f"task_type={task_type!r}: must be CAUSAL_LM")
    if cfg.get("auto_mapping"):
        raise Rejected("auto_mapping: custom adapter classes are not accepted")
    r = int(_number("r", cfg.get("r", 8), 1, MAX_RANK))
    if r != cfg.get("r", 8):
        raise Rejected(f"r={cfg.get('r')!r}: must be an integer")
    out: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": _number("lora_alpha", cfg.get("lora_alpha", 8), 1e-6, MAX_RANK * 16),
        "lora_dropout": 0.0,
        "target_modules": _names("target_modules", cfg.get("target_modules")),
        "exclude_modules": _names("exclude_modules", cfg.get("exclude_modules")),
        "layers_to_transform": _layers("layers_to_transform", cfg.get("layers_to_transform"), num_layers),
        "layers_pattern": _names("layers_pattern", cfg.get("layers_pattern")),
        "rank_pattern": _pattern_map("rank_pattern", cfg.get("rank_pattern")),
        "alpha_pattern": _pattern_map("alpha_pattern", cfg.get("alpha_pattern")),
        "use_rslora": _flag(cfg, "use_rslora"),
        "use_dora": _flag(cfg, "use_dora"),
        "fan_in_fan_out": False,
        "bias": "none",
        # Weights come from the file: no initialisation may touch the base (PiSSA, OLoRA…).
        "init_lora_weights": False,
        "inference_mode": True,
    }
    if out["target_modules"] is None:
        raise Rejected("target_modules: missing")
    if cfg.get("fan_in_fan_out") not in (None, False):
        raise Rejected("fan_in_fan_out: must be false")
    if cfg.get("bias", "none") != "none":
        raise Rejected(f"bias={cfg.get('bias')!r}: must be 'none'")
    modules = cfg.get("modules_to_save")
    if modules is not None:
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise Rejected("modules_to_save: must be a list of module names")
        outside = sorted(set(modules) - MODULES_TO_SAVE)
        if outside:
            raise Rejected(f"modules_to_save: {outside} not in the allow-list {sorted(MODULES_TO_SAVE)}")
        out["modules_to_save"] = list(modules) or None
    handled = set(out) | INERT_KEYS | {"modules_to_save"}
    for key, value in cfg.items():
        if key in handled:
            continue
        if not _neutral(value):
            raise Rejected(f"{key}={_short(value)}: not on the allow-list (only null/false/empty)")
    return out


def _flag(cfg: dict[str, Any], key: str) -> bool:
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise Rejected(f"{key}={value!r}: must be true or false")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def check_full_config(cfg: dict[str, Any], base_cfg: dict[str, Any]) -> None:
    """A full fine-tune's ``config.json`` must match the base on every architecture key."""
    if cfg.get("auto_map"):
        raise Rejected("auto_map: custom model code is not accepted")
    for name in ARCH_FIELDS:
        if cfg.get(name) != base_cfg.get(name):
            raise Rejected(f"config field {name}: {_short(cfg.get(name))} != base {_short(base_cfg.get(name))}")
