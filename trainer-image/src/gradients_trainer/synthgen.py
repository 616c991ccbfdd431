"""A synthetic evaluation set written by a generator model (white paper §3.3).

For each seed row of the test split (or of the whole dataset, before any split, when no test
split is given: the result is then disjoint from every row and fits `spec.dataset.syntheticUri`
of a Task), the generator (loaded like every other model: local
directory, safetensors only, never remote code) writes a new row of the same schema at the
configured temperature:

- instruct: a new instruction from the seed's, then the generator's answer to it;
- DPO: a new prompt, the generator's answer as ``chosen`` and, as ``rejected``, the answer of a
  weaker model when one is given, else a corrupted decode (the generator at a much higher
  temperature);
- GRPO: a new prompt (the ``extra`` column is copied from the seed row).

Rows with an empty field, a DPO pair whose answers are equal, or a key text (instruction or
prompt) already in train, test or the set itself are dropped. The set is written as JSONL
with the dataset's own column names, with ``synthetic.json`` recording how it was made. Image
tasks are refused: new image-text pairs would need a diffusion generator and a captioner;
image tasks keep the held-out rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .contract import InputError, TaskType
from .data import Columns, load_rows, parse_columns
from .modelio import check_model_dir, load_causal_lm, load_tokenizer

RECORD_FILE = "synthetic.json"
DATA_FILE = "synthetic.jsonl"
MAX_FIELD_CHARS = 4000
ATTEMPTS_PER_ROW = 4

Generate = Callable[[str, float], str]


@dataclass(frozen=True)
class Request:
    task: TaskType
    generator: Path
    train_data: Path
    test_data: Path | None
    output: Path
    rows: int
    temperature: float = 0.7
    columns: str | None = None
    weaker: Path | None = None
    max_new_tokens: int = 48
    seed: int = 42


@dataclass
class Record:
    version: int
    task_type: str
    generator: str
    rejected_by: str
    temperature: float
    seed: int
    requested: int
    written: int
    dropped: dict[str, int] = field(default_factory=dict)
    weaker: str | None = None


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def key_role(task: TaskType) -> str:
    return "instruction" if task is TaskType.INSTRUCT else "prompt"


def check_request(req: Request) -> Columns:
    if req.task is TaskType.IMAGE:
        raise InputError("--task-type", "image tasks have no generated set (they keep held-out rows)")
    if req.rows < 1:
        raise InputError("--rows", f"must be at least 1, found {req.rows}")
    if not 0.0 < req.temperature <= 2.0:
        raise InputError("--temperature", f"must be in (0, 2], found {req.temperature}")
    check_model_dir(req.generator, "--generator")
    if req.weaker is not None:
        if req.task is not TaskType.DPO:
            raise InputError("--weaker-model", "only DPO sets have rejected answers")
        check_model_dir(req.weaker, "--weaker-model")
    return parse_columns(req.task, req.columns)


def sampler(path: Path, max_new_tokens: int, seed: int) -> Generate:
    """A text sampler over a causal LM loaded by the shared loading code."""
    import torch

    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path)
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def generate(prompt: str, temperature: float) -> str:
        encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        with torch.no_grad():
            out = model.generate(
                **encoded,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                max_new_tokens=max_new_tokens,
                min_new_tokens=4,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, encoded["input_ids"].shape[1]:]
        return str(tokenizer.decode(new, skip_special_tokens=True)).strip()[:MAX_FIELD_CHARS]

    return generate


def make_row(task: TaskType, seed_row: dict[str, Any], columns: Columns, generate: Generate,
             rejected: Generate, temperature: float) -> dict[str, str]:
    """One new row by role: the roles of the task type, copied columns kept as they are."""
    def field_of(role: str) -> str:
        column = columns.get(role)
        value = seed_row.get(column) if column else None
        return value if isinstance(value, str) else ""

    key = key_role(task)
    new_key = generate(f"Write a new {key} like this one.\n{key.title()}: {field_of(key)}\n"
                       f"New {key}:", temperature)
    row = {key: new_key}
    if task is TaskType.INSTRUCT:
        row["output"] = generate(f"{new_key}\n", temperature)
    elif task is TaskType.DPO:
        row["chosen"] = generate(f"{new_key}\n", temperature)
        row["rejected"] = rejected(f"{new_key}\n", temperature)
    for role in ("input", "system", "extra"):
        if columns.get(role) and field_of(role):
            row[role] = field_of(role)
    return row


def why_dropped(task: TaskType, row: dict[str, str], seen: set[str]) -> str | None:
    if any(not value.strip() for value in row.values()):
        return "empty"
    if task is TaskType.DPO and normalize(row["chosen"]) == normalize(row["rejected"]):
        return "same_answers"
    if normalize(row[key_role(task)]) in seen:
        return "duplicate"
    return None


def generate_set(req: Request, generate: Generate, rejected: Generate) -> tuple[list[dict[str, Any]], Record]:
    """The new rows (dataset column names) and the record; pure given the two samplers."""
    columns = check_request(req)
    train = load_rows(req.train_data, "--train-data")
    test = train if req.test_data is None else load_rows(req.test_data, "--test-data")
    key_column = columns.get(key_role(req.task)) or key_role(req.task)
    seen = {normalize(str(r.get(key_column, ""))) for r in train + test}
    rows: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    for attempt in range(req.rows * ATTEMPTS_PER_ROW):
        if len(rows) == req.rows:
            break
        row = make_row(req.task, test[attempt % len(test)], columns, generate, rejected, req.temperature)
        reason = why_dropped(req.task, row, seen)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        seen.add(normalize(row[key_role(req.task)]))
        rows.append({(columns.get(role) or role): value for role, value in row.items()})
    record = Record(
        version=1,
        task_type=req.task.value,
        generator=str(req.generator),
        weaker=None if req.weaker is None else str(req.weaker),
        rejected_by=("weaker-model" if req.weaker else "corrupted-decode") if req.task is TaskType.DPO else "",
        temperature=req.temperature,
        seed=req.seed,
        requested=req.rows,
        written=len(rows),
        dropped=dropped,
    )
    return rows, record


def run(req: Request) -> Record:
    check_request(req)
    generate = sampler(req.generator, req.max_new_tokens, req.seed)
    if req.weaker is not None:
        weaker = sampler(req.weaker, req.max_new_tokens, req.seed + 1)
        rejected: Generate = weaker
    else:
        # A corrupted decode: the same generator, far hotter than the chosen answer.
        def rejected(prompt: str, temperature: float) -> str:
            return generate(prompt, min(2.0, max(1.5, 3.0 * temperature)))
    rows, record = generate_set(req, generate, rejected)
    if not rows:
        raise RuntimeError(f"the generator wrote no valid row ({record.dropped})")
    req.output.mkdir(parents=True, exist_ok=True)
    with (req.output / DATA_FILE).open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    (req.output / RECORD_FILE).write_text(json.dumps(asdict(record), indent=2) + "\n")
    return record
