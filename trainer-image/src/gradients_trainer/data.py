"""Datasets: JSONL loading, column mappings, prompt formatting, image folders/zips."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import InputError, TaskType

REQUIRED_COLUMNS: dict[TaskType, tuple[str, ...]] = {
    TaskType.INSTRUCT: ("instruction", "output"),
    TaskType.DPO: ("prompt", "chosen", "rejected"),
    TaskType.GRPO: ("prompt",),
    TaskType.IMAGE: (),
}
OPTIONAL_COLUMNS: dict[TaskType, tuple[str, ...]] = {
    TaskType.INSTRUCT: ("input", "system"),
    TaskType.DPO: ("system",),
    TaskType.GRPO: ("extra",),
    TaskType.IMAGE: (),
}
TEMPLATE_KEYS = ("format", "no_input_format")
DEFAULT_FORMAT = "{instruction} {input}"
DEFAULT_NO_INPUT_FORMAT = "{instruction}"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_ZIP_BYTES = 4 << 30


@dataclass(frozen=True)
class Columns:
    mapping: dict[str, str]
    format: str = DEFAULT_FORMAT
    no_input_format: str = DEFAULT_NO_INPUT_FORMAT

    def get(self, key: str) -> str | None:
        return self.mapping.get(key)


def parse_columns(task: TaskType, raw: str | None, argument: str = "--columns") -> Columns:
    """Parse and validate a column mapping JSON (keys are roles, values dataset columns)."""
    if raw is None or raw.strip() == "":
        if task is TaskType.IMAGE:
            return Columns(mapping={})
        return Columns(mapping={k: k for k in REQUIRED_COLUMNS[task]})
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(argument, f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(argument, "must be a JSON object mapping roles to column names")
    allowed = set(REQUIRED_COLUMNS[task]) | set(OPTIONAL_COLUMNS[task])
    if task is TaskType.INSTRUCT:
        allowed |= set(TEMPLATE_KEYS)
    mapping: dict[str, str] = {}
    templates: dict[str, str] = {}
    for key, value in data.items():
        if key not in allowed:
            raise InputError(
                argument, f"unknown key '{key}' for task type {task.value} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InputError(argument, f"value of '{key}' must be a string")
        if key in TEMPLATE_KEYS:
            templates[key] = value
        else:
            mapping[key] = value
    for key in REQUIRED_COLUMNS[task]:
        if key not in mapping:
            raise InputError(argument, f"missing required key '{key}' for {task.value}")
    return Columns(
        mapping=mapping,
        format=templates.get("format", DEFAULT_FORMAT),
        no_input_format=templates.get("no_input_format", DEFAULT_NO_INPUT_FORMAT),
    )


def load_rows(path: Path, argument: str) -> list[dict[str, Any]]:
    """Load a JSONL (or JSON list) file of objects."""
    if not path.is_file():
        raise InputError(argument, f"file not found: {path}")
    text = path.read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(argument, f"{path.name}: invalid JSON ({exc.msg})") from None
        rows = [r for r in loaded if isinstance(r, dict)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    argument, f"{path.name} line {number}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(value, dict):
                raise InputError(argument, f"{path.name} line {number}: not a JSON object")
            rows.append(value)
    if not rows:
        raise InputError(argument, f"{path.name}: no rows")
    return rows


def check_columns(rows: list[dict[str, Any]], columns: Columns, path: Path) -> None:
    present: set[str] = set()
    for row in rows:
        present.update(row)
    for role, column in columns.mapping.items():
        if column not in present:
            raise InputError(
                "--columns", f"column '{column}' (for '{role}') not in dataset {path.name}"
            )


def _text(row: dict[str, Any], column: str | None) -> str:
    if column is None:
        return ""
    value = row.get(column)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _with_system(system: str, prompt: str) -> str:
    return f"{system}\n{prompt}" if system else prompt


@dataclass(frozen=True)
class PromptCompletion:
    prompt: str
    completion: str


def instruct_examples(rows: list[dict[str, Any]], columns: Columns) -> list[PromptCompletion]:
    """Rows → (prompt, completion) pairs; the loss is taken on the completion only."""
    out: list[PromptCompletion] = []
    for row in rows:
        instruction = _text(row, columns.get("instruction"))
        output = _text(row, columns.get("output"))
        if not output:
            continue
        inp = _text(row, columns.get("input"))
        system = _text(row, columns.get("system"))
        template = columns.format if inp else columns.no_input_format
        values = {"instruction": instruction, "input": inp, "system": system}
        try:
            prompt = template.format_map(values)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError("--columns", f"bad format template {template!r}: {exc}") from None
        out.append(PromptCompletion(prompt=_with_system(system, prompt), completion=output))
    return out


@dataclass(frozen=True)
class Preference:
    prompt: str
    chosen: str
    rejected: str


def dpo_examples(rows: list[dict[str, Any]], columns: Columns) -> list[Preference]:
    out: list[Preference] = []
    for row in rows:
        chosen = _text(row, columns.get("chosen"))
        rejected = _text(row, columns.get("rejected"))
        if not chosen or not rejected:
            continue
        prompt = _with_system(_text(row, columns.get("system")), _text(row, columns.get("prompt")))
        out.append(Preference(prompt=prompt, chosen=chosen, rejected=rejected))
    return out


@dataclass(frozen=True)
class GrpoPrompt:
    prompt: str
    extra: Any


def grpo_examples(rows: list[dict[str, Any]], columns: Columns) -> list[GrpoPrompt]:
    out: list[GrpoPrompt] = []
    extra_col = columns.get("extra")
    for row in rows:
        prompt = _text(row, columns.get("prompt"))
        if not prompt:
            continue
        out.append(GrpoPrompt(prompt=prompt, extra=row.get(extra_col) if extra_col else None))
    return out


def load_text_split(
    task: TaskType, path: Path, columns: Columns, argument: str
) -> list[Any]:
    rows = load_rows(path, argument)
    check_columns(rows, columns, path)
    examples: list[Any]
    if task is TaskType.INSTRUCT:
        examples = list(instruct_examples(rows, columns))
    elif task is TaskType.DPO:
        examples = list(dpo_examples(rows, columns))
    elif task is TaskType.GRPO:
        examples = list(grpo_examples(rows, columns))
    else:
        raise InputError("--task-type", "not a text task type")
    if not examples:
        raise InputError(argument, f"{path.name}: no usable rows after applying --columns")
    return examples


@dataclass(frozen=True)
class ImageCaption:
    image: Path
    caption: str


def _safe_extract(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        total = sum(i.file_size for i in zf.infolist())
        if total > MAX_ZIP_BYTES:
            raise InputError("--train-data", f"{archive.name}: unpacks to {total} bytes")
        root = target.resolve()
        for info in zf.infolist():
            dest = (target / info.filename).resolve()
            if root not in dest.parents and dest != root:
                raise InputError("--train-data", f"{archive.name}: unsafe path {info.filename}")
        zf.extractall(target)


def load_image_folder(path: Path, argument: str) -> list[ImageCaption]:
    """A folder or .zip of images, each with a same-stem ``.txt`` caption."""
    if not path.exists():
        raise InputError(argument, f"not found: {path}")
    folder = path
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(argument, f"{path.name}: neither a folder nor a zip archive")
        folder = Path(tempfile.mkdtemp(prefix="gradients-images-"))
        atexit.register(shutil.rmtree, folder, True)
        _safe_extract(path, folder)
    items: list[ImageCaption] = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if image.name.startswith("._"):
            continue
        caption_file = image.with_suffix(".txt")
        if not caption_file.is_file():
            raise InputError(argument, f"image {image.name} has no caption file {caption_file.name}")
        items.append(ImageCaption(image=image, caption=caption_file.read_text().strip()))
    if not items:
        raise InputError(argument, f"{path.name}: no images (.png/.jpg/.jpeg/.webp)")
    return items
