"""State shared by the three text trainers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .contract import MODEL_DIR, InputError, TaskType, log
from .deadline import Budget
from .modelio import load_causal_lm, lora_config, qlora_available, save_text_model
from .resume import is_adapter
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
    # ``--resume-from``: the checked model directory of an earlier slice to start from.
    start_from: Path | None = None
    # Epochs to train: the strategy's, less those the earlier slices trained (None: all).
    epochs: float | None = None
    method: str = "lora"
    final_model: Any = None
    # FSDP: the weights are sharded, so every process takes part in each save.
    sharded: bool = False

    @property
    def model_dir(self) -> Path:
        return self.output / MODEL_DIR

    def saver(self) -> Callable[[Any], float]:
        """Rank 0 writes ``OUTPUT/model``; sharded, every process must call it (the gather)."""
        tokenizer = self.tokenizer

        def save(model: Any) -> float:
            if not self.sharded:
                return save_text_model(model, self.model_dir, tokenizer)
            import time

            from . import dist
            from .fsdp import full_state_dict

            started = time.time()
            weights = full_state_dict(model)
            if dist.is_main():
                save_text_model(model, self.model_dir, tokenizer, state_dict=weights)
                log(f"fsdp: saved {MODEL_DIR}/ gathered from {dist.world_size()} shards")
            return time.time() - started

        return save

    def save_final(self) -> None:
        from . import dist

        if self.sharded or dist.is_main():  # one writer: the ranks hold the same weights
            self.saver()(self.final_model)


def clip_prompt(tokenizer: Any, prompt: str, max_tokens: int) -> str:
    """The prompt's last ``max_tokens`` tokens (its end holds the question), unchanged if it fits.

    TRL 1 dropped ``max_prompt_length`` (DPO and GRPO): the trainer clips prompts itself so a
    long prompt cannot take the completion's share of the sequence or the step's memory."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return prompt
    return str(tokenizer.decode(ids[-max_tokens:], skip_special_tokens=False))


def resolve_method(strategy: Strategy) -> str:
    if strategy.method == "qlora" and not qlora_available():
        log("qlora requested but no CUDA GPU with bitsandbytes: using plain LoRA")
        return "lora"
    return strategy.method


def prepare_model(ctx: TextTrainContext) -> tuple[Any, str]:
    """The model to train: the base with a new adapter (or the base itself for a full
    fine-tune), or, resuming, the earlier slice's adapter on the base (or its full model)."""
    method = resolve_method(ctx.strategy)
    full = method == "full"
    if ctx.start_from is not None and full == is_adapter(ctx.start_from):
        raise InputError("--resume-from", f"{ctx.start_from} holds a {'LoRA adapter' if full else 'full model'}, "
                         f"but the strategy trains {'the full model' if full else 'an adapter'}")
    source = ctx.start_from if full and ctx.start_from is not None else ctx.base_model
    model = load_causal_lm(source, quantize_4bit=method == "qlora", sharded=ctx.sharded)
    if full:
        model.train()
        return model, method
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model)
    if ctx.start_from is not None:
        log(f"continuing from the adapter in {ctx.start_from}")
        return PeftModel.from_pretrained(model, str(ctx.start_from), is_trainable=True), method
    model = get_peft_model(model, lora_config(ctx.strategy))
    return model, method
