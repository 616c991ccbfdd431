"""Trainer and evaluator invocations, built from the ones `gradients run` used.

The tournament's run directory keeps each workload's exact argv (`work/ID/command.json`);
the other contenders reuse them with only their own paths, strategy and budget changed, so
they train on the same split, with the same base model, columns, seed and reward functions,
and are scored by the same evaluator with the same profile and seed.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from . import meter, tasks


def command(workdir: Path) -> list[str]:
    """`work/ID/command.json` as an argv without the program (it is the metered wrapper)."""
    data = json.loads((workdir / "command.json").read_text())
    return [str(a) for a in data["args"]]


def replace_arg(argv: list[str], name: str, value: str | None) -> list[str]:
    """`argv` with `name`'s value set to `value` (appended when absent; removed when None)."""
    out = list(argv)
    if name in out:
        i = out.index(name)
        del out[i:i + 2]
        if value is not None:
            out[i:i] = [name, value]
    elif value is not None:
        out += [name, value]
    return out


def train_argv(template: list[str], *, output: Path, strategy: str, hours: float,
               overrides: dict[str, Any] | None = None, train_data: Path | None = None) -> list[str]:
    argv = replace_arg(template, "--output", str(output))
    argv = replace_arg(argv, "--strategy", strategy)
    argv = replace_arg(argv, "--hours", f"{hours:.8f}")
    argv = replace_arg(argv, "--strategy-overrides", json.dumps(overrides, sort_keys=True) if overrides else None)
    if train_data is not None:
        argv = replace_arg(argv, "--train-data", str(train_data))
    return argv


def eval_argv(template: list[str], *, submission: Path, heldout: tuple[Path, Path] | None = None) -> list[str]:
    argv = replace_arg(template, "--submission", str(submission))
    argv = replace_arg(argv, "--submission-digest", None)
    argv = replace_arg(argv, "--termination-message-path", None)
    if heldout is not None:
        argv = replace_arg(argv, "--test-data", str(heldout[0]))
        argv = replace_arg(argv, "--synth-data", str(heldout[1]))
    return argv


def loss_pair(task_type: str, result: dict[str, Any]) -> tuple[float | None, float | None]:
    if task_type == "image":
        return result.get("text_guided_loss"), result.get("no_text_loss")
    return result.get("test_loss"), result.get("synth_loss")


def evaluate(python: str, argv: list[str], workdir: Path, task_type: str, unit: str) -> dict[str, Any]:
    """Runs the evaluator; its result with `first`, `second`, `weighted` and the record's cost."""
    record = meter.run([python, *argv], workdir, workdir)
    lines = [l for l in (workdir / "stdout.log").read_text().splitlines() if l.strip()]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    ok = bool(result.get("ok"))
    first, second = loss_pair(task_type, result) if ok else (None, None)
    return {
        "ok": ok, "first": first, "second": second, "weighted": tasks.weighted(task_type, first, second),
        "failure": None if ok else (result.get("failure") or f"evaluator exit {record.exit_code}"),
        "cost": record.cost(unit), "cpu_s": record.cpu_s, "wall_s": record.wall_s,
    }


def split_validation(train: Path, out: Path, share: float, seed: int) -> tuple[Path, Path]:
    """Holds out `share` of the training split (at least 4 rows or images) for a search's
    validation: (train, validation). JSONL: lines; a folder: files grouped by stem."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if train.is_file():
        rows = [l for l in train.read_text().splitlines() if l.strip()]
        rng.shuffle(rows)
        n = max(4, round(share * len(rows)))
        (out / "train.jsonl").write_text("\n".join(rows[n:]) + "\n")
        (out / "val.jsonl").write_text("\n".join(rows[:n]) + "\n")
        return out / "train.jsonl", out / "val.jsonl"
    stems = sorted({p.stem for p in train.iterdir() if p.is_file()})
    rng.shuffle(stems)
    n = max(4, round(share * len(stems)))
    for name, chosen in (("train", set(stems[n:])), ("val", set(stems[:n]))):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for p in train.iterdir():
            if p.is_file() and p.stem in chosen:
                shutil.copy2(p, folder / p.name)
    return out / "train", out / "val"
