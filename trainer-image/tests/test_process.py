"""Process-level contract: real subprocesses, exit codes, stdout discipline, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import INS_COLUMNS, Data

SRC = Path(__file__).resolve().parent.parent / "src"


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "gradients_trainer", *[str(a) for a in args]]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC)
    return e


def test_missing_column_subprocess_exit_2(data: Data, text_base: Path, tmp_path: Path) -> None:
    cols = json.dumps({"instruction": "task", "output": "answer_text"})
    proc = subprocess.run(cli("train", "--task-type", "instruct", "--base-model", text_base,
                              "--train-data", data.ins_train, "--columns", cols, "--hours", "1",
                              "--output", tmp_path / "o", "--strategy", "baseline"),
                          capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error: --columns: column 'answer_text'" in proc.stderr
    assert "not in dataset ins_train.jsonl" in proc.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(cli("train", "--task-type", "video"), capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 2 and "error:" in proc.stderr


def test_sigterm_saves_model_and_exits_0(data: Data, text_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sigterm"
    proc = subprocess.Popen(
        cli("train", "--task-type", "instruct", "--base-model", text_base, "--train-data",
            data.ins_train, "--columns", INS_COLUMNS, "--hours", "1", "--output", out,
            "--strategy", "lora-long", "--strategy-overrides", '{"epochs": 500}'),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(),
    )
    assert proc.stdout is not None
    lines: list[dict] = []
    try:
        for line in proc.stdout:
            event = json.loads(line)
            lines.append(event)
            if event["event"] == "progress" and event["step"] >= 2:
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.stdout.read()
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += [json.loads(x) for x in rest.splitlines() if x.strip()]
    assert rc == 0
    assert lines[-1]["event"] == "done" and lines[-1]["stopped_by_deadline"] is True
    progress = [e for e in lines if e["event"] == "progress"]
    assert {"step", "total_steps", "loss", "elapsed_s"} <= set(progress[0])
    summary = json.loads((out / "training.json").read_text())
    assert summary["stopped_by_deadline"] is True and summary["steps"] < summary["total_steps"]
    assert (out / "model" / "adapter_model.safetensors").is_file()
