"""Glue for HF/TRL trainers: training arguments from a strategy, budget callback, summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from . import dist
from .deadline import Budget, progress
from .modelio import device
from .runstate import RunState
from .strategies import Strategy


class StepControl:
    """After every optimiser step, for the HF trainers and the sharded loop alike: progress
    events, periodic saves, the budget's replan and the stop every process agrees on.

    ``collective``: a save needs every process (FSDP gathers the sharded weights), so every
    process calls the saver; otherwise rank 0 alone does. The decision to save is agreed
    either way (any process's clock), in the same all-reduce as the stop flags."""

    def __init__(self, budget: Budget, saver: Callable[[Any], float], state: RunState,
                 collective: bool = False) -> None:
        self.budget = budget
        self.saver = saver
        self.run = state
        self.collective = collective

    def begin(self, max_steps: int) -> None:
        self.run.planned_steps = max_steps
        self.run.schedule_steps = max_steps
        self.budget.step_started()

    def end(self, step: int, max_steps: int, model: Any) -> bool:
        """True when every process stops after ``step``."""
        self.budget.step_finished()
        self.run.steps = step
        if step == 3:
            self.run.planned_steps = self.budget.replan(max_steps, 3)
        stop = self.budget.should_stop() or self.budget.plan_exhausted(
            step, self.run.planned_steps, max_steps)
        # Several processes stop at the same step: any one's reason (its deadline estimate,
        # a SIGTERM) stops them all; one small all-reduce per optimiser step.
        stop, by_deadline, save = dist.any_of(stop, self.budget.stopped_by_deadline,
                                              self.budget.should_save())
        self.budget.stopped_by_deadline = by_deadline
        if model is not None and save and not stop:
            seconds = self.saver(model) if self.collective or dist.is_main() else 0.0
            self.budget.note_save(seconds)
        return stop

    def logged(self, step: int, loss: float) -> None:
        self.run.last_loss = loss
        self.run.losses.append(loss)
        progress(step, self.run.planned_steps, loss, self.budget)


def first_step_lr(optimizer: Any, learning_rate: float, warmup: int) -> None:
    """Warmup schedules give the first optimiser step a learning rate of exactly 0, so a run
    the deadline stops after one step would save a model identical to the base (and be
    rejected as "not a fine-tune"). Start the warmup ramp one step in instead."""
    for group in optimizer.param_groups:
        if group.get("lr", 0.0) == 0.0:
            group["lr"] = float(learning_rate) / (max(1, warmup) + 1)


class BudgetCallback(TrainerCallback):  # type: ignore[misc]
    """``StepControl`` for the HF and TRL trainers (one process or DDP)."""

    def __init__(self, budget: Budget, saver: Callable[[Any], float], state: RunState) -> None:
        self.control = StepControl(budget, saver, state)
        self.run = state

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.control.begin(int(state.max_steps))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if state.global_step != 0 or optimizer is None:
            return
        first_step_lr(optimizer, args.learning_rate,
                      int(args.get_warmup_steps(max(1, int(state.max_steps)))))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.control.end(int(state.global_step), int(state.max_steps), kwargs.get("model")):
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        if "num_tokens" in logs:
            self.run.tokens = int(logs["num_tokens"])
        self.control.logged(int(state.global_step), float(logs["loss"]))


def quiet(trainer: Any) -> Any:
    """Drop transformers' stdout log printer: progress goes out as our JSON events."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def common_args(strategy: Strategy, output: Path, seed: int, epochs: float | None = None) -> dict[str, Any]:
    """TrainingArguments keyword arguments shared by SFT, DPO and GRPO."""
    on_gpu = device() == "cuda"
    return dict(
        output_dir=str(output / ".trainer"),
        num_train_epochs=strategy.epochs if epochs is None else epochs,
        per_device_train_batch_size=strategy.batch_size,
        gradient_accumulation_steps=strategy.grad_accum,
        learning_rate=strategy.learning_rate,
        # A float below 1 is a share of the steps (transformers 5 folded warmup_ratio into it).
        warmup_steps=strategy.warmup_ratio,
        lr_scheduler_type=strategy.scheduler,
        optim=strategy.optimizer,
        weight_decay=strategy.weight_decay,
        max_grad_norm=strategy.max_grad_norm,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        bf16=on_gpu,
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Several processes: every trainable parameter gets a gradient (LoRA and full), so
        # DDP need not search the graph for unused ones each step.
        ddp_find_unused_parameters=False,
        ddp_timeout=int(dist.timeout_s()),
        # Non-reentrant checkpointing on GPU (memory); off on CPU. Reentrant checkpointing
        # silently drops LoRA gradients when the inputs do not require grad.
        activation_checkpointing=on_gpu,
        activation_checkpointing_kwargs={"use_reentrant": False},
    )

