"""Submission checks run before any submitted weights are loaded.

Only file names, JSON configs and safetensors headers are read here; tensors are read
with ``safetensors`` (no pickle) and compared with the base one at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import Check

FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy",
                      ".npz", ".h5", ".msgpack", ".dill", ".py", ".pyc", ".so")
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
ZIP_MAGIC = b"PK\x03\x04"
ARCH_FIELDS = ("architectures", "hidden_size", "n_layer", "intermediate_size", "head_dim",
               "hidden_act", "model_type", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads")
LORA_SUFFIX = re.compile(
    r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector|lora\.down|lora\.up)"
    r"(\.default)?(\.weight)?$"
)
MAX_FILES = 512
MAX_HEADER_BYTES = 100 << 20


class CheckFailed(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class Submission:
    path: Path
    kind: str = ""  # "lora" | "full" | "image-lora"
    weight_files: list[Path] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def passed(self, name: str, reason: str = "") -> None:
        self.checks.append(Check(name=name, ok=True, reason=reason))


def weights_sha256(files: list[Path]) -> str | None:
    if not files:
        return None
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """Parse a safetensors header without loading tensors; raises CheckFailed if invalid."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("file too short")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER_BYTES or length > path.stat().st_size - 8:
                raise ValueError("bad header length")
            header = json.loads(fh.read(length))
    except (OSError, ValueError) as exc:
        raise CheckFailed("safetensors", f"{path.name} is not a valid safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckFailed("safetensors", f"{path.name}: header is not an object")
    header.pop("__metadata__", None)
    return header


def _load_json(path: Path, check: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckFailed(check, f"{path.name}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckFailed(check, f"{path.name}: not a JSON object")
    return data


def scan_files(sub: Submission, max_bytes: int) -> None:
    """exists, no_pickle, no_remote_code, size."""
    if not sub.path.is_dir():
        raise CheckFailed("exists", f"submission {sub.path} is not a directory")
    files: list[Path] = []
    for root, dirs, names in os.walk(sub.path, followlinks=False):
        for name in names + dirs:
            p = Path(root) / name
            if p.is_symlink():
                raise CheckFailed("no_pickle", f"{p.relative_to(sub.path)} is a symlink")
        files.extend(Path(root) / n for n in names)
    if not files:
        raise CheckFailed("exists", "submission directory is empty")
    sub.passed("exists", f"{len(files)} files")
    if len(files) > MAX_FILES:
        raise CheckFailed("size", f"{len(files)} files (limit {MAX_FILES})")
    for f in files:
        rel = f.relative_to(sub.path)
        if f.suffix.lower() in FORBIDDEN_SUFFIXES:
            kind = "code" if f.suffix.lower() in (".py", ".pyc", ".so") else "pickle/non-safetensors"
            name = "no_remote_code" if kind == "code" else "no_pickle"
            raise CheckFailed(name, f"{rel}: {kind} files are not allowed (safetensors only)")
        if f.suffix.lower() != ".safetensors":
            with f.open("rb") as fh:
                head = fh.read(4)
            if head.startswith(PICKLE_MAGIC) or head == ZIP_MAGIC:
                raise CheckFailed("no_pickle", f"{rel}: looks like a pickle/torch archive")
    sub.passed("no_pickle", "only safetensors weights")
    for f in files:
        if f.name in ("config.json", "tokenizer_config.json", "adapter_config.json"):
            data = _load_json(f, "no_remote_code")
            if data.get("auto_map") or data.get("auto_mapping"):
                raise CheckFailed("no_remote_code", f"{f.name} declares custom code (auto_map)")
    sub.passed("no_remote_code", "no custom code, trust_remote_code is never set")
    total = sum(f.stat().st_size for f in files)
    if total > max_bytes:
        raise CheckFailed("size", f"{total} bytes exceeds the limit of {max_bytes}")
    sub.passed("size", f"{total} bytes (limit {max_bytes})")
    sub.weight_files = sorted(f for f in files if f.suffix == ".safetensors")
    if not sub.weight_files:
        raise CheckFailed("safetensors", "no .safetensors weight files")
    for f in sub.weight_files:
        safetensors_header(f)
    sub.passed("safetensors", f"{len(sub.weight_files)} safetensors files")


def base_weight_files(base: Path) -> list[Path]:
    return sorted(base.glob("*.safetensors"))


def base_header(files: list[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for f in files:
        merged.update(safetensors_header(f))
    return merged


def default_size_limit(base_files: list[Path]) -> int:
    env = os.environ.get("GRADIENTS_EVAL_MAX_SUBMISSION_BYTES")
    if env:
        return int(env)
    base_bytes = sum(f.stat().st_size for f in base_files)
    return 2 * base_bytes + (64 << 20)


def _module_of(key: str, prefixes: tuple[str, ...]) -> tuple[str, bool]:
    for prefix in prefixes:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    stripped = LORA_SUFFIX.sub("", key)
    return stripped, stripped != key


def check_lora_against(sub: Submission, sub_header: dict[str, Any], base_hdr: dict[str, Any],
                       prefixes: tuple[str, ...], label: str) -> None:
    """Every adapter tensor must target an existing base module with matching shapes."""
    if not sub_header:
        raise CheckFailed("architecture", "adapter has no tensors")
    for key, meta in sub_header.items():
        module, is_lora = _module_of(key, prefixes)
        shape = list(meta.get("shape", []))
        if not is_lora:
            base_key = module if module in base_hdr else module.replace(".modules_to_save.default", "")
            if base_key not in base_hdr or list(base_hdr[base_key]["shape"]) != shape:
                raise CheckFailed("architecture", f"{key}: no matching tensor in the {label}")
            continue
        target = base_hdr.get(module + ".weight")
        if target is None:
            raise CheckFailed("architecture", f"{key}: module {module} not in the {label}")
        tshape = list(target["shape"])
        if ".lora_A" in key or "lora.down" in key:
            if len(shape) < 2 or len(tshape) < 2 or shape[1] != tshape[1]:
                raise CheckFailed("architecture", f"{key}: shape {shape} does not fit {module} {tshape}")
        elif ".lora_B" in key or "lora.up" in key:
            if not shape or shape[0] != tshape[0]:
                raise CheckFailed("architecture", f"{key}: shape {shape} does not fit {module} {tshape}")
    sub.passed("architecture", f"LoRA adapter targets the {label}")


def lora_is_noop(files: list[Path]) -> bool:
    """True if every LoRA up/B matrix is all zeros (the adapter changes nothing)."""
    from safetensors import safe_open

    seen = False
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if ".lora_B" in key or "lora.up" in key:
                    seen = True
                    if bool((st.get_tensor(key) != 0).any()):
                        return False
    return seen


def full_is_identical(sub_files: list[Path], base_files: list[Path]) -> bool:
    from safetensors import safe_open

    base_index: dict[str, Path] = {}
    for f in base_files:
        base_index.update({k: f for k in safetensors_header(f)})
    for f in sub_files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key not in base_index:
                    return False
                with safe_open(str(base_index[key]), framework="pt") as bst:
                    b = bst.get_tensor(key)
                s = st.get_tensor(key)
                if s.shape != b.shape or not bool((s.float() == b.to(s.dtype).float()).all()):
                    return False
    return True


def check_text_submission(sub: Submission, base: Path) -> None:
    base_files = base_weight_files(base)
    if not base_files:
        raise CheckFailed("inputs", f"base model {base} has no safetensors weights")
    scan_files(sub, default_size_limit(base_files))
    base_hdr = base_header(base_files)
    adapter_cfg = sub.path / "adapter_config.json"
    if adapter_cfg.is_file():
        sub.kind = "lora"
        cfg = _load_json(adapter_cfg, "architecture")
        if str(cfg.get("peft_type", "")).upper() != "LORA":
            raise CheckFailed("architecture", f"unsupported adapter type {cfg.get('peft_type')!r}")
        files = [f for f in sub.weight_files if f.name.startswith("adapter_model")]
        if not files:
            raise CheckFailed("safetensors", "adapter_config.json without adapter_model.safetensors")
        header = base_header(files)
        check_lora_against(sub, header, base_hdr, ("base_model.model.",), "base model")
        if lora_is_noop(files):
            raise CheckFailed("is_fine_tune", "not a fine-tune: the adapter's LoRA B matrices are all zero")
        sub.passed("is_fine_tune", "adapter changes the base")
        sub.weight_files = files
        return
    cfg_path = sub.path / "config.json"
    if not cfg_path.is_file():
        raise CheckFailed("architecture", "neither adapter_config.json nor config.json present")
    sub.kind = "full"
    cfg = _load_json(cfg_path, "architecture")
    base_cfg = _load_json(base / "config.json", "inputs")
    for name in ARCH_FIELDS:
        if cfg.get(name) != base_cfg.get(name):
            raise CheckFailed("architecture", f"config field {name}: {cfg.get(name)!r} != base {base_cfg.get(name)!r}")
    if int(cfg.get("max_position_embeddings", 0) or 0) < int(base_cfg.get("max_position_embeddings", 0) or 0):
        raise CheckFailed("architecture", "max_position_embeddings shrank")
    sub_hdr = base_header(sub.weight_files)
    for key, meta in sub_hdr.items():
        if key not in base_hdr or list(base_hdr[key]["shape"]) != list(meta["shape"]):
            raise CheckFailed("architecture", f"tensor {key} does not match the base model")
    missing = set(base_hdr) - set(sub_hdr)
    if missing:
        raise CheckFailed("architecture", f"{len(missing)} base tensors missing, e.g. {sorted(missing)[0]}")
    sub.passed("architecture", "config and tensor shapes match the base model")
    if full_is_identical(sub.weight_files, base_files):
        raise CheckFailed("is_fine_tune", "not a fine-tune: weights are identical to the base model")
    sub.passed("is_fine_tune", "weights differ from the base")


def check_image_submission(sub: Submission, base: Path) -> None:
    denoiser = "transformer" if (base / "transformer").is_dir() else "unet"
    unet_files = sorted((base / denoiser).glob("*.safetensors"))
    if not unet_files:
        raise CheckFailed("inputs", f"base pipeline {base} has no {denoiser} safetensors")
    scan_files(sub, default_size_limit(unet_files))
    if (sub.path / "model_index.json").is_file() or (sub.path / "unet").is_dir():
        raise CheckFailed("architecture", "image submissions must be a LoRA, not a full pipeline")
    if len(sub.weight_files) != 1:
        raise CheckFailed("architecture", f"expected one LoRA safetensors file, found {len(sub.weight_files)}")
    sub.kind = "image-lora"
    header = safetensors_header(sub.weight_files[0])
    groups: dict[str, dict[str, Any]] = {denoiser: {}, "text_encoder": {}, "text_encoder_2": {}}
    for key, meta in header.items():
        prefix = key.split(".", 1)[0]
        if prefix not in groups:
            raise CheckFailed("architecture", f"unexpected tensor {key} (expected unet./text_encoder. keys)")
        groups[prefix][key] = meta
    if not groups[denoiser]:
        raise CheckFailed("architecture", f"no {denoiser} LoRA tensors")
    check_lora_against(sub, groups[denoiser], base_header(unet_files), (denoiser + ".",),
                       f"base {denoiser}")
    for name in ("text_encoder", "text_encoder_2"):
        if groups[name]:
            files = sorted((base / name).glob("*.safetensors"))
            if not files:
                raise CheckFailed("architecture", f"LoRA for {name}, which the base does not have")
            check_lora_against(sub, groups[name], base_header(files), (name + ".",), f"base {name}")
    if lora_is_noop(sub.weight_files):
        raise CheckFailed("is_fine_tune", "not a fine-tune: the LoRA up/B matrices are all zero")
    sub.passed("is_fine_tune", "LoRA changes the base UNet")
