"""The reference trainer's hyperparameter space, as Optuna samples it.

A trial picks a strategy of the catalogue (`python -m gradients_trainer strategies`) as its
family (method, target modules, DoRA/rsLoRA, packing, optimiser) and overrides the fields
every strategy has, through the trainer's own `--strategy-overrides` (which rejects unknown
fields). Text task types tune the text fields, image tasks the `image_*` fields.
"""

from __future__ import annotations

from typing import Any, Protocol

# Every catalogue strategy is a family; `baseline` too (its method is QLoRA, LoRA on CPU).
FAMILIES = (
    "baseline", "lora-fast", "lora-wide", "lora-attn-small", "full-ft", "full-careful",
    "lora-packed", "lora-long", "qlora-4bit", "dora", "rslora-big-batch",
)
TEXT_SCHEDULERS = ("linear", "cosine", "constant_with_warmup", "cosine_with_restarts")
IMAGE_SCHEDULERS = ("constant", "cosine", "linear")


class Suggests(Protocol):
    """The part of `optuna.Trial` the space uses (so tests can pass a fixed stand-in)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


def suggest(trial: Suggests, task_type: str) -> tuple[str, dict[str, Any]]:
    """(strategy, overrides) for one trial of a `task_type` (`instruct`, `dpo`, `grpo`, `image`)."""
    family = str(trial.suggest_categorical("family", FAMILIES))
    if task_type == "image":
        rank = int(trial.suggest_categorical("image_lora_r", (4, 8, 16, 32)))
        return family, {
            "image_learning_rate": trial.suggest_float("image_learning_rate", 1e-5, 1e-2, log=True),
            "image_lora_r": rank,
            "image_steps": trial.suggest_int("image_steps", 20, 500),
            "image_batch_size": int(trial.suggest_categorical("image_batch_size", (1, 2, 4))),
            "image_scheduler": str(trial.suggest_categorical("image_scheduler", IMAGE_SCHEDULERS)),
        }
    rank = int(trial.suggest_categorical("lora_r", (4, 8, 16, 32, 64)))
    alpha = int(trial.suggest_categorical("lora_alpha_per_rank", (1, 2, 4)))
    return family, {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "lora_r": rank,
        "lora_alpha": rank * alpha,
        "batch_size": int(trial.suggest_categorical("batch_size", (1, 2, 4, 8))),
        "epochs": float(trial.suggest_int("epochs", 1, 5)),
        "scheduler": str(trial.suggest_categorical("scheduler", TEXT_SCHEDULERS)),
    }
