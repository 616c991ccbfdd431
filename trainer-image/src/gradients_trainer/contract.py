"""The workload contract shared with the Rust side: task types, exit codes, events, results.

Everything the operator and the local runner rely on is defined here and documented in
``trainer-image/README.md``; keep the two in sync.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2

TERMINATION_MESSAGE_LIMIT = 4096

# The output layout (``workload-contract.json`` ``layout``, defined in ``src/workloads/contract.rs``).
MODEL_DIR = "model"
TRAINING_SUMMARY_FILE = "training.json"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
}


def force_offline() -> None:
    """Never touch the network: set the hub's offline switches before any HF import."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    # CPU threads: half the cores (oversubscribed BLAS threads are very slow on busy hosts).
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(key, threads)
    # Deterministic cuBLAS (seed_everything turns on deterministic algorithms).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class TaskType(str, Enum):
    INSTRUCT = "instruct"
    DPO = "dpo"
    GRPO = "grpo"
    IMAGE = "image"

    @property
    def is_text(self) -> bool:
        return self is not TaskType.IMAGE


class InputError(Exception):
    """Invalid user input (argument, column, file): the CLI exits with code 2."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


_STDOUT: TextIO = sys.stdout


def reserve_stdout() -> None:
    """Keep the real stdout for contract output only; anything else printed goes to stderr.

    Libraries (transformers' printer callback, diffusers, user code) print freely; the Rust
    side must only ever see our JSON lines on stdout.
    """
    global _STDOUT
    if sys.stdout is not sys.stderr:
        _STDOUT = sys.stdout
        sys.stdout = sys.stderr


def reserve_stdout_fd() -> None:
    """Like ``reserve_stdout`` for native code too: file descriptor 1 becomes stderr and the
    contract lines go to a private copy of the real stdout (gloo and NCCL print on fd 1)."""
    global _STDOUT
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    _STDOUT = os.fdopen(private, "w", buffering=1)
    sys.stdout = sys.stderr


def write_stdout(line: str) -> None:
    """One contract line; only rank 0 of several processes has a say (the others log it)."""
    out = _STDOUT if os.environ.get("RANK", "0") == "0" else sys.stderr
    out.write(line.rstrip("\n") + "\n")
    out.flush()


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout (the Rust runner parses these)."""
    payload: dict[str, Any] = {"event": event}
    payload.update(fields)
    write_stdout(json.dumps(payload, separators=(",", ":")))


def log(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


@dataclass
class TrainingSummary:
    """``OUTPUT/training.json``."""

    strategy: str
    method: str  # "lora" | "qlora" | "full"
    steps: int
    tokens: int
    wall_s: float
    final_train_loss: float | None
    stopped_by_deadline: bool
    task_type: str = ""
    total_steps: int = 0
    seed: int = 42

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Check:
    name: str
    ok: bool
    reason: str = ""


@dataclass
class EvalResult:
    """The evaluator's single result object (last stdout line / termination message)."""

    ok: bool = False
    test_loss: float | None = None
    synth_loss: float | None = None
    text_guided_loss: float | None = None
    no_text_loss: float | None = None
    weights_sha256: str | None = None
    checks: list[Check] = field(default_factory=list)
    failure: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The tree digest (sha256:<hex>) of every submission the evaluator read.
    model_digest: str | None = None
    # Whose fault a failure is (ok=false only): see FAILURE_CATEGORIES.
    category: str | None = None
    # GRPO: KL(base‖submission) per prompt token, and each reward's mean (None ignored).
    test_kl: float | None = None
    synth_kl: float | None = None
    test_rewards: dict[str, float | None] | None = None
    synth_rewards: dict[str, float | None] | None = None

    def fail(self, reason: str, category: str = "submission") -> EvalResult:
        self.ok = False
        self.failure = reason
        self.category = category
        self.test_loss = self.synth_loss = None
        self.text_guided_loss = self.no_text_loss = None
        self.test_kl = self.synth_kl = None
        self.test_rewards = self.synth_rewards = None
        return self

    def to_json(self) -> str:
        """Serialise, shrinking check reasons until the object fits the 4096-byte limit."""
        data = _finite(asdict(self))
        text = json.dumps(data, separators=(",", ":"))
        if len(text.encode()) >= TERMINATION_MESSAGE_LIMIT:
            data["test_rewards"] = data["synth_rewards"] = None
            text = json.dumps(data, separators=(",", ":"))
        limit = 300
        while len(text.encode()) >= TERMINATION_MESSAGE_LIMIT and limit > 8:
            for check in data["checks"]:
                check["reason"] = _truncate(check["reason"], limit)
            if data["failure"]:
                data["failure"] = _truncate(data["failure"], limit * 2)
            text = json.dumps(data, separators=(",", ":"))
            limit //= 2
        if len(text.encode()) >= TERMINATION_MESSAGE_LIMIT:
            data["checks"] = [c for c in data["checks"] if not c["ok"]][:4]
            text = json.dumps(data, separators=(",", ":"))
        return text


# "submission": the miner's model or files (final, no retry); "task": the task's own inputs,
# e.g. reward code failing on the task's prompts (final, not the miner's fault);
# "evaluator": the evaluation itself, e.g. out of memory at the smallest batch (worth a retry).
FAILURE_CATEGORIES = ("submission", "task", "evaluator")


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
