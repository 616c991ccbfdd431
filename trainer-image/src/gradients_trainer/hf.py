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


class BudgetCallback(TrainerCallback):  # type: ignore[misc]
    """Emits progress events, saves periodically, stops before the deadline or on SIGTERM."""

    def __init__(self, budget: Budget, saver: Callable[[Any], float], state: RunState) -> None:
        self.budget = budget
        self.saver = saver
        self.run = state

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.run.planned_steps = int(state.max_steps)
        self.budget.step_started()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Warmup schedules give the first optimiser step a learning rate of exactly 0, so a run
        # the deadline stops after one step would save an adapter identical to the base (and be
        # rejected as "not a fine-tune"). Start the warmup ramp one step in instead.
        optimizer = kwargs.get("optimizer")
        if state.global_step != 0 or optimizer is None:
            return
        warmup = max(1, int(args.get_warmup_steps(max(1, int(state.max_steps)))))
        for group in optimizer.param_groups:
            if group.get("lr", 0.0) == 0.0:
                group["lr"] = float(args.learning_rate) / (warmup + 1)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.budget.step_finished()
        self.run.steps = int(state.global_step)
        if state.global_step == 3:
            self.run.planned_steps = self.budget.replan(int(state.max_steps), 3)
        model = kwargs.get("model")
        stop = self.budget.should_stop() or self.budget.plan_exhausted(
            int(state.global_step), self.run.planned_steps, int(state.max_steps))
        # Several processes stop at the same step: any one's reason (its deadline estimate,
        # a SIGTERM) stops them all; one small all-reduce per optimiser step.
        stop, by_deadline = dist.any_of(stop, self.budget.stopped_by_deadline)
        self.budget.stopped_by_deadline = by_deadline
        if model is not None and dist.is_main() and self.budget.should_save() and not stop:
            self.budget.note_save(self.saver(model))
        if stop:
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        self.run.last_loss = loss
        self.run.losses.append(loss)
        if "num_tokens" in logs:
            self.run.tokens = int(logs["num_tokens"])
        progress(int(state.global_step), self.run.planned_steps, loss, self.budget)


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

