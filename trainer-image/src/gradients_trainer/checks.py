"""Submission checks run before any submitted weights are loaded.

Order: the directory listing (regular files only, caps on entries and bytes; see
``evaluate/tree.py``), the tree digest (and ``--submission-digest``), forbidden formats,
the allow-listed files and configurations (``evaluate/allowlist.py``), safetensors headers
(length read first and capped), shapes against the base, and "is this a fine-tune" in the
evaluation dtype. Tensors are read with ``safetensors`` (no pickle), one at a time.
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
from .evaluate import allowlist
from .evaluate.tree import Entry, TreeRefused, list_tree, open_regular, tree_digest

FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy",
                      ".npz", ".h5", ".msgpack", ".dill", ".py", ".pyc", ".so")
CODE_SUFFIXES = (".py", ".pyc", ".so")
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
ZIP_MAGIC = b"PK\x03\x04"
LORA_SUFFIX = re.compile(
    r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector|lora\.down|lora\.up)"
    r"(\.default)?(\.weight)?$"
)
MAX_HEADER_BYTES = 8 << 20  # one safetensors header (a 70B shard's is ~100 KB)
MAX_TOTAL_HEADER_BYTES = 32 << 20  # all headers of one submission together
MAX_JSON_BYTES = 1 << 20  # config.json, adapter_config.json


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
    entries: list[Entry] = field(default_factory=list)
    digest: str | None = None
    adapter_config: dict[str, Any] | None = None  # the sanitized one (text LoRA)
    header_bytes: int = 0

    def passed(self, name: str, reason: str = "") -> None:
        self.checks.append(Check(name=name, ok=True, reason=reason))


def weights_sha256(files: list[Path]) -> str | None:
    if not files:
        return None
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        fd = open_regular(f)
        try:
            for chunk in iter(lambda: os.read(fd, 1 << 20), b""):
                digest.update(chunk)
        finally:
            os.close(fd)
    return digest.hexdigest()


def _read_exact(fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def safetensors_header(path: Path, limit: int = MAX_HEADER_BYTES) -> tuple[dict[str, Any], int]:
    """(tensors, header length) without loading tensors. The 8-byte length is read and
    checked against ``limit`` and the file size before a byte of JSON is read."""
    try:
        fd = open_regular(path)
        try:
            size = os.fstat(fd).st_size
            raw = _read_exact(fd, 8)
            if len(raw) != 8:
                raise ValueError("file too short")
            (length,) = struct.unpack("<Q", raw)
            if length > limit:
                raise ValueError(f"header of {length} bytes exceeds the {limit}-byte cap")
            if length > size - 8:
                raise ValueError("header length past the end of the file")
            header = json.loads(_read_exact(fd, length))
        finally:
            os.close(fd)
    except (OSError, ValueError, TreeRefused) as exc:
        raise CheckFailed("safetensors", f"{path.name} is not a valid safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckFailed("safetensors", f"{path.name}: header is not an object")
    header.pop("__metadata__", None)
    for key, meta in header.items():
        if not isinstance(meta, dict) or meta.get("dtype") not in allowlist.FLOAT_DTYPES \
                or not isinstance(meta.get("shape"), list):
            raise CheckFailed("safetensors", f"{path.name}: tensor {key} is not a float tensor")
    return header, int(length)


def _load_json(path: Path, check: str) -> dict[str, Any]:
    try:
        fd = open_regular(path)
        try:
            if os.fstat(fd).st_size > MAX_JSON_BYTES:
                raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
            data = json.loads(_read_exact(fd, MAX_JSON_BYTES).decode("utf-8"))
        finally:
            os.close(fd)
    except (OSError, ValueError, TreeRefused) as exc:
        raise CheckFailed(check, f"{path.name}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckFailed(check, f"{path.name}: not a JSON object")
    return data


def scan_files(sub: Submission, max_bytes: int, expected_digest: str | None = None) -> None:
    """files (listing and caps), digest, no_pickle, no_remote_code, size."""
    try:
        sub.entries = list_tree(sub.path)
    except TreeRefused as exc:
        raise CheckFailed("files", str(exc)) from None
    if not sub.entries:
        raise CheckFailed("exists", "submission directory is empty")
    sub.passed("exists", f"{len(sub.entries)} files")
    total = sum(e.size for e in sub.entries)
    if total > max_bytes:
        raise CheckFailed("size", f"{total} bytes exceeds the limit of {max_bytes}")
    sub.digest = tree_digest(sub.entries)
    if expected_digest is not None:
        if sub.digest != expected_digest:
            raise CheckFailed("digest", f"tree digest {sub.digest} != sealed {expected_digest}")
        sub.passed("digest", "matches the sealed manifest")
    for e in sub.entries:
        suffix = Path(e.rel).suffix.lower()
        if suffix in FORBIDDEN_SUFFIXES:
            code = suffix in CODE_SUFFIXES
            name = "no_remote_code" if code else "no_pickle"
            kind = "code" if code else "pickle/non-safetensors"
            raise CheckFailed(name, f"{e.rel}: {kind} files are not allowed (safetensors only)")
        if suffix != ".safetensors":
            fd = open_regular(e.path)
            try:
                head = os.read(fd, 4)
            finally:
                os.close(fd)
            if head.startswith(PICKLE_MAGIC) or head == ZIP_MAGIC:
                raise CheckFailed("no_pickle", f"{e.rel}: looks like a pickle/torch archive")
    sub.passed("no_pickle", "only safetensors weights")
    sub.passed("size", f"{total} bytes (limit {max_bytes})")


def top_level(sub: Submission, name: str) -> Path | None:
    return next((e.path for e in sub.entries if e.rel == name), None)


def read_headers(sub: Submission, files: list[Path]) -> dict[str, Any]:
    """Merged headers of ``files``, within the per-file and per-submission caps."""
    merged: dict[str, Any] = {}
    for f in files:
        budget = min(MAX_HEADER_BYTES, MAX_TOTAL_HEADER_BYTES - sub.header_bytes)
        header, length = safetensors_header(f, budget)
        sub.header_bytes += length
        for key, meta in header.items():
            if key in merged:
                raise CheckFailed("safetensors", f"tensor {key} appears in two files")
            merged[key] = {**meta, "file": f.name}
    return merged


def base_weight_files(base: Path) -> list[Path]:
    return sorted(base.glob("*.safetensors"))


def base_header(files: list[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for f in files:
        merged.update(safetensors_header(f, 1 << 30)[0])
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


def eval_dtype() -> Any:
    """The dtype weights are evaluated in (bf16 on a GPU, fp32 on CPU): what a change must
    survive to count as a fine-tune."""
    import torch

    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def lora_is_noop(files: list[Path], dtype: Any = None) -> bool:
    """True if every LoRA up/B matrix is zero in the evaluation dtype."""
    from safetensors import safe_open

    dtype = dtype or eval_dtype()
    seen = False
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if ".lora_B" in key or "lora.up" in key:
                    seen = True
                    if bool((st.get_tensor(key).to(dtype) != 0).any()):
                        return False
    return seen


def full_is_identical(sub_files: list[Path], base_files: list[Path], dtype: Any = None) -> bool:
    """True if every tensor equals the base's once both are cast to the evaluation dtype."""
    from safetensors import safe_open

    dtype = dtype or eval_dtype()
    base_index: dict[str, Path] = {}
    for f in base_files:
        base_index.update({k: f for k in safetensors_header(f, 1 << 30)[0]})
    for f in sub_files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key not in base_index:
                    return False
                with safe_open(str(base_index[key]), framework="pt") as bst:
                    b = bst.get_tensor(key).to(dtype)
                s = st.get_tensor(key).to(dtype)
                if s.shape != b.shape or not bool((s == b).all()):
                    return False
    return True


def _base_config(base: Path) -> dict[str, Any]:
    return _load_json(base / "config.json", "inputs")


def check_text_submission(sub: Submission, base: Path, expected_digest: str | None = None) -> None:
    base_files = base_weight_files(base)
    if not base_files:
        raise CheckFailed("inputs", f"base model {base} has no safetensors weights")
    scan_files(sub, default_size_limit(base_files), expected_digest)
    base_hdr = base_header(base_files)
    base_cfg = _base_config(base)
    adapter_cfg = top_level(sub, allowlist.ADAPTER_CONFIG)
    if adapter_cfg is not None:
        _check_text_lora(sub, adapter_cfg, base_hdr, base_cfg)
        return
    cfg_path = top_level(sub, allowlist.FULL_CONFIG)
    if cfg_path is None:
        raise CheckFailed("architecture", "neither adapter_config.json nor config.json present")
    sub.kind = "full"
    try:
        allowlist.check_full_config(_load_json(cfg_path, "architecture"), base_cfg)
    except allowlist.Rejected as exc:
        name = "no_remote_code" if "auto_map" in str(exc) else "architecture"
        raise CheckFailed(name, str(exc)) from None
    sub.weight_files = sorted(e.path for e in sub.entries
                              if "/" not in e.rel and allowlist.FULL_WEIGHTS.match(e.rel))
    if not sub.weight_files:
        raise CheckFailed("safetensors", "no model.safetensors / model-NNNNN-of-NNNNN.safetensors")
    sub_hdr = read_headers(sub, sub.weight_files)
    sub.passed("safetensors", f"{len(sub.weight_files)} safetensors files")
    for key, meta in sub_hdr.items():
        if key not in base_hdr or list(base_hdr[key]["shape"]) != list(meta["shape"]):
            raise CheckFailed("architecture", f"tensor {key} does not match the base model")
    missing = set(base_hdr) - set(sub_hdr)
    if missing:
        raise CheckFailed("architecture", f"{len(missing)} base tensors missing, e.g. {sorted(missing)[0]}")
    sub.passed("architecture", "config and tensor shapes match the base model; the base's config is used")
    if full_is_identical(sub.weight_files, base_files):
        raise CheckFailed("is_fine_tune", "not a fine-tune: weights equal the base model's in the evaluation dtype")
    sub.passed("is_fine_tune", "weights differ from the base in the evaluation dtype")


def _check_text_lora(sub: Submission, cfg_path: Path, base_hdr: dict[str, Any],
                     base_cfg: dict[str, Any]) -> None:
    sub.kind = "lora"
    raw = _load_json(cfg_path, "architecture")
    layers = int(base_cfg.get("num_hidden_layers") or base_cfg.get("n_layer") or 0)
    try:
        sub.adapter_config = allowlist.sanitize_adapter_config(raw, layers)
    except allowlist.Rejected as exc:
        name = "no_remote_code" if "auto_mapping" in str(exc) else "adapter_config"
        raise CheckFailed(name, str(exc)) from None
    sub.passed("adapter_config", "every key on the allow-list")
    weights = top_level(sub, allowlist.ADAPTER_WEIGHTS)
    if weights is None:
        raise CheckFailed("safetensors", "adapter_config.json without adapter_model.safetensors")
    sub.weight_files = [weights]
    header = read_headers(sub, sub.weight_files)
    sub.passed("safetensors", "adapter_model.safetensors")
    check_lora_against(sub, header, base_hdr, ("base_model.model.",), "base model")
    allowed = set(sub.adapter_config.get("modules_to_save") or [])
    for key in header:
        module, is_lora = _module_of(key, ("base_model.model.",))
        if not is_lora and not allowed & set(module.split(".")):
            raise CheckFailed("adapter_config", f"{key}: a whole-tensor replacement outside modules_to_save {sorted(allowed)}")
    if lora_is_noop(sub.weight_files):
        raise CheckFailed("is_fine_tune", "not a fine-tune: the adapter's LoRA B matrices are zero in the evaluation dtype")
    sub.passed("is_fine_tune", "adapter changes the base")


def check_image_submission(sub: Submission, base: Path, expected_digest: str | None = None) -> None:
    denoiser = "transformer" if (base / "transformer").is_dir() else "unet"
    unet_files = sorted((base / denoiser).glob("*.safetensors"))
    if not unet_files:
        raise CheckFailed("inputs", f"base pipeline {base} has no {denoiser} safetensors")
    scan_files(sub, default_size_limit(unet_files), expected_digest)
    if top_level(sub, "model_index.json") is not None or any(e.rel.startswith("unet/") for e in sub.entries):
        raise CheckFailed("architecture", "image submissions must be a LoRA, not a full pipeline")
    sub.weight_files = [e.path for e in sub.entries if "/" not in e.rel and e.rel.endswith(".safetensors")]
    if len(sub.weight_files) != 1:
        raise CheckFailed("architecture", f"expected one LoRA safetensors file, found {len(sub.weight_files)}")
    sub.kind = "image-lora"
    header = read_headers(sub, sub.weight_files)
    sub.passed("safetensors", sub.weight_files[0].name)
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
        raise CheckFailed("is_fine_tune", "not a fine-tune: the LoRA up/B matrices are zero in the evaluation dtype")
    sub.passed("is_fine_tune", "LoRA changes the base denoiser")
