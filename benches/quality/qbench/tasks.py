"""Task files: the benchmark's copy of a user's task, and what it needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

TASK_TYPES = {"InstructText": "instruct", "Dpo": "dpo", "Grpo": "grpo", "Image": "image"}
# Task types whose trainers can continue from a checkpoint (`spec.halving` is refused otherwise).
HALVING_TYPES = ("instruct", "dpo", "grpo")
# Weight of the first loss of the pair in the weighted loss (src/mechanism: text_test_weight,
# image_text_guided_weight): text types test/synth, image text-guided/no-text.
FIRST_WEIGHT = {"instruct": 0.7, "dpo": 0.7, "grpo": 0.7, "image": 0.25}


@dataclass(frozen=True)
class Task:
    source: Path
    name: str
    task_type: str  # instruct | dpo | grpo | image
    miners: int
    hours: float | None
    document: dict[str, Any]


def find(directory: Path) -> list[Path]:
    """Every task file under `directory` (`kind: Task`), sorted by path."""
    found = []
    for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "Task":
            found.append(path)
    return found


def load(path: Path) -> Task:
    doc = yaml.safe_load(path.read_text())
    spec = doc.get("spec") or {}
    kind = spec.get("taskType")
    if kind not in TASK_TYPES:
        raise ValueError(f"{path}: spec.taskType: {kind!r} is not one of {sorted(TASK_TYPES)}")
    hours = spec.get("hours")
    return Task(
        source=path.resolve(), name=str(doc["metadata"]["name"]), task_type=TASK_TYPES[kind],
        miners=len(spec.get("miners") or []), hours=float(hours) if hours is not None else None,
        document=doc,
    )


def _absolute(value: str, base: Path) -> str:
    """A path relative to the task file, made absolute; URIs, absolute paths and paths that
    start with a variable (`${GRADIENTS_BASE_MODELS}/…`) are left to `gradients run`."""
    if "://" in value or value.startswith(("/", "$", "~")):
        return value
    return str((base / value).resolve())


def benchmark_copy(task: Task, hours: float | None, halving: dict[str, int] | None = None) -> dict[str, Any]:
    """The task as the benchmark runs it: paths absolute (the copy lives elsewhere), no
    `baseline` reference inside the tournament (the benchmark trains its own with all of the
    budget), `hours` per miner replaced when the benchmark sets the budget, and `spec.halving`
    as given (`None`: the task's own, usually none)."""
    doc = yaml.safe_load(yaml.safe_dump(task.document))
    spec = doc["spec"]
    base = task.source.parent
    spec["baseModel"]["uri"] = _absolute(spec["baseModel"]["uri"], base)
    dataset = spec["dataset"]
    for key in ("uri", "syntheticUri"):
        if isinstance(dataset.get(key), str):
            dataset[key] = _absolute(dataset[key], base)
    generator = dataset.get("generator")
    if isinstance(generator, dict):
        for key in ("modelUri", "weakerModelUri"):
            if isinstance(generator.get(key), str):
                generator[key] = _absolute(generator[key], base)
    spec["baseline"] = False
    if halving is not None:
        spec["halving"] = dict(halving)
    if hours is not None:
        spec["hours"] = hours
        spec.pop("deadline", None)
    return doc


def weighted(task_type: str, first: float | None, second: float | None) -> float | None:
    """The mechanism's weighted loss of a (test, synth) or (text-guided, no-text) pair."""
    if first is None or second is None:
        return None
    w = FIRST_WEIGHT[task_type]
    return w * first + (1 - w) * second
