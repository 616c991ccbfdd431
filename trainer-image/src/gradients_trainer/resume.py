"""``train --resume-from DIR``: continue from an earlier training's own output (successive
halving across miners trains a miner in slices, each with a new deadline).

Every training writes ``OUTPUT/checkpoint.json`` before its first step: the fingerprint of
what it trains (task type, base model, training data) and its strategy. The periodic saves
keep ``OUTPUT/model/`` valid, so even a training stopped at its deadline can be continued.
A resumed training starts from those weights (the adapter, or the full model) with a fresh
optimiser, and continues the strategy's epochs: ``checkpoint.json`` counts the epochs trained
so far (``epochs_done``, over all slices), a slice trains only the rest, and once the epochs are
all done a further slice trains nothing and hands on the model it resumed (so an epoch-bound
miner costs a halving tournament no more than one full training). A checkpoint of another base
model, task, dataset or strategy is refused (exit 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .contract import MODEL_DIR, InputError, TaskType
from .strategies import Strategy

CHECKPOINT_FILE = "checkpoint.json"
ARGUMENT = "--resume-from"


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def _hash_tree(digest: Any, root: Path) -> None:
    """Names and sizes of every file (weights are large: their size stands for them), and the
    bytes of the small configuration files."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        if path.suffix == ".json" and path.stat().st_size < (1 << 20):
            _hash_file(digest, path)


def fingerprint(task: TaskType, base_model: Path, train_data: Path) -> str:
    digest = hashlib.sha256(f"{task.value}\0".encode())
    _hash_tree(digest, base_model)
    digest.update(b"\0data\0")
    if train_data.is_dir():
        _hash_tree(digest, train_data)
    else:
        _hash_file(digest, train_data)
    return "sha256:" + digest.hexdigest()


def strategy_key(strategy: Strategy) -> str:
    fields = asdict(strategy)
    fields.pop("notes", None)
    fields.pop("description", None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_checkpoint_info(output: Path, print_: str, strategy: Strategy, epochs_done: float = 0.0) -> None:
    info = {"fingerprint": print_, "strategy": strategy.name, "strategy_key": strategy_key(strategy),
            "epochs_done": round(epochs_done, 6)}
    (output / CHECKPOINT_FILE).write_text(json.dumps(info, indent=2) + "\n")


def epochs_done(resume: Path) -> float:
    """The epochs the checkpoint's trainings trained in all (0 for a checkpoint without the count)."""
    try:
        value = json.loads((resume / CHECKPOINT_FILE).read_text()).get("epochs_done", 0.0)
        return max(0.0, float(value))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


def epochs_after(before: float, epochs: float, steps: int, schedule_steps: int) -> float:
    """Epochs done once ``steps`` of a ``schedule_steps`` schedule over ``epochs`` ran."""
    if schedule_steps <= 0:
        return before
    return before + epochs * min(1.0, steps / schedule_steps)


def check_resume(resume: Path, print_: str, strategy: Strategy, task: TaskType) -> Path:
    """The checkpoint's model directory, once it is known to be this training's own kind."""
    if task is TaskType.IMAGE:
        raise InputError(ARGUMENT, "image trainers cannot continue from a checkpoint yet")
    info_path = resume / CHECKPOINT_FILE
    if not info_path.is_file():
        raise InputError(ARGUMENT, f"{resume}: no {CHECKPOINT_FILE}; not the output of a training to continue")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(ARGUMENT, f"{info_path}: unreadable ({exc})") from None
    if info.get("fingerprint") != print_:
        raise InputError(
            ARGUMENT,
            f"{resume} was trained on another base model, task type or training data "
            "(its fingerprint differs); start from the base model instead",
        )
    if info.get("strategy") != strategy.name or info.get("strategy_key") != strategy_key(strategy):
        raise InputError(
            ARGUMENT,
            f"{resume} was trained with strategy {info.get('strategy')!r} and other settings, "
            f"not {strategy.name!r} as now",
        )
    model = resume / MODEL_DIR
    if not model.is_dir() or not any(model.iterdir()):
        raise InputError(ARGUMENT, f"{resume}: no saved {MODEL_DIR}/ to continue from")
    return model


def is_adapter(model: Path) -> bool:
    return (model / "adapter_config.json").is_file()
