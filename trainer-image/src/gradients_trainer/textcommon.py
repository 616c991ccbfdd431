"""State shared by the three text trainers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .contract import MODEL_DIR, TaskType, log
from .deadline import Budget
from .modelio import load_causal_lm, lora_config, qlora_available, save_text_model
from .strategies import Strategy


@dataclass
class TextTrainContext:
    task: TaskType
    base_model: Path
    examples: list[Any]
    strategy: Strategy
    output: Path
    seed: int
    budget: Budget
    tokenizer: Any
    rewards: list[Any] = field(default_factory=list)
    method: str = "lora"
    final_model: Any = None

    @property
    def model_dir(self) -> Path:
        return self.output / MODEL_DIR

    def saver(self) -> Callable[[Any], float]:
        tokenizer = self.tokenizer

        def save(model: Any) -> float:
            return save_text_model(model, self.model_dir, tokenizer)

        return save


def resolve_method(strategy: Strategy) -> str:
    if strategy.method == "qlora" and not qlora_available():
        log("qlora requested but no CUDA GPU with bitsandbytes: using plain LoRA")
        return "lora"
    return strategy.method


def prepare_model(ctx: TextTrainContext) -> tuple[Any, str]:
    method = resolve_method(ctx.strategy)
    model = load_causal_lm(ctx.base_model, quantize_4bit=method == "qlora")
    if method == "full":
        model.train()
        return model, method
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, lora_config(ctx.strategy))
    return model, method
