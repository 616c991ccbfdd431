"""``train``: validate inputs, run the task type's trainer, write model/ and training.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import dist, resume
from .contract import TRAINING_SUMMARY_FILE, InputError, TaskType, TrainingSummary, emit, log
from .data import load_image_folder, load_text_split, parse_columns
from .deadline import Budget, parse_deadline
from .launch import STARTED_ENV
from .runstate import RunState, final_loss
from .modelio import check_model_dir
from .sandbox import RewardSpec, load_reward_specs
from .strategies import Strategy


@dataclass
class TrainRequest:
    task: TaskType
    base_model: Path
    train_data: Path
    columns: str | None
    reward_functions: Path | None
    hours: float
    output: Path
    strategy: Strategy
    seed: int
    resume_from: Path | None = None


def run_train(req: TrainRequest) -> TrainingSummary:
    # Several processes count from the launcher's start, so they share one deadline.
    started = float(os.environ.get(STARTED_ENV, time.time())) if dist.distributed() else time.time()
    budget = Budget(parse_deadline(req.hours, started), start=started)
    previous = budget.install_sigterm()
    try:
        return _run_train(req, budget, started)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_train(req: TrainRequest, budget: Budget, started: float) -> TrainingSummary:
    check_model_dir(req.base_model)
    # Validate everything cheap before importing torch (exit 2 fast on bad input).
    specs: list[RewardSpec] = []
    examples: list[object] = []
    if req.task.is_text:
        columns = parse_columns(req.task, req.columns)
        examples = load_text_split(req.task, req.train_data, columns, "--train-data")
        if req.task is TaskType.GRPO:
            if req.reward_functions is None:
                raise InputError("--reward-functions", "required for --task-type grpo")
            specs = load_reward_specs(req.reward_functions)
    else:
        load_image_folder(req.train_data, "--train-data")
    print_ = resume.fingerprint(req.task, req.base_model, req.train_data)
    start_from = None
    done = 0.0
    if req.resume_from is not None:
        start_from = resume.check_resume(req.resume_from, print_, req.strategy, req.task)
        done = resume.epochs_done(req.resume_from)
    req.output.mkdir(parents=True, exist_ok=True)
    (req.output / ".trainer").mkdir(exist_ok=True)
    if dist.is_main():
        # Before the first step, so that even a killed slice hands on the count it started from.
        resume.write_checkpoint_info(req.output, print_, req.strategy, done)
    remaining = req.strategy.epochs - done
    if start_from is not None and remaining < EPOCH_EPSILON:
        return _schedule_complete(req, start_from, done, budget, started)

    from .basemodel import seed_everything

    seed_everything(req.seed)
    if req.task is TaskType.IMAGE:
        from .image import train_image

        result = train_image(req.base_model, req.train_data, req.strategy, req.output,
                             req.seed, budget)
        run, method = result.run, result.method
    else:
        run, method = _train_text(req, budget, examples, specs, start_from, remaining)
    if not dist.is_main():
        return _summary(req, run, method, budget, started)
    if req.task.is_text:
        resume.write_checkpoint_info(req.output, print_, req.strategy,
                                     resume.epochs_after(done, remaining, run.steps, run.schedule_steps))
    shutil.rmtree(req.output / ".trainer", ignore_errors=True)
    summary = _summary(req, run, method, budget, started)
    (req.output / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    emit("done", **summary.to_json())
    return summary


# Less than this of an epoch left: the schedule is complete (a fraction of one step).
EPOCH_EPSILON = 1e-3


def _schedule_complete(req: TrainRequest, start_from: Path, done: float, budget: Budget,
                       started: float) -> TrainingSummary:
    """The earlier slices trained all the strategy's epochs: this slice trains nothing and hands
    on the model it resumed, so an epoch-bound miner's later slices cost only their start."""
    if dist.is_main():
        log(f"resume: the earlier slices trained {done:g} of {req.strategy.epochs:g} epochs; "
            "nothing left to train, the resumed model is this slice's")
        shutil.copytree(start_from, req.output / resume.MODEL_DIR, dirs_exist_ok=True)
        shutil.rmtree(req.output / ".trainer", ignore_errors=True)
    method = "lora" if resume.is_adapter(start_from) else "full"
    summary = _summary(req, RunState(), method, budget, started)
    if dist.is_main():
        (req.output / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        emit("done", **summary.to_json())
    return summary


def _summary(req: TrainRequest, run: RunState, method: str, budget: Budget,
             started: float) -> TrainingSummary:
    return TrainingSummary(
        strategy=req.strategy.name,
        method=method,
        steps=run.steps,
        tokens=run.tokens,
        wall_s=round(time.time() - started, 3),
        final_train_loss=final_loss(run),
        stopped_by_deadline=budget.stopped_by_deadline,
        task_type=req.task.value,
        total_steps=run.planned_steps,
        seed=req.seed,
    )


def _train_text(
    req: TrainRequest, budget: Budget, examples: list[object], specs: list[RewardSpec],
    start_from: Path | None,
    epochs: float,
) -> tuple[RunState, str]:
    from .modelio import load_tokenizer
    from .textcommon import TextTrainContext

    tokenizer = load_tokenizer(req.base_model)
    ctx = TextTrainContext(
        task=req.task,
        base_model=req.base_model,
        examples=examples,
        strategy=req.strategy,
        output=req.output,
        seed=req.seed,
        budget=budget,
        tokenizer=tokenizer,
        rewards=specs,
        start_from=start_from,
        epochs=epochs,
    )
    if req.task is TaskType.INSTRUCT:
        from .sft import train_sft

        run = train_sft(ctx)
    elif req.task is TaskType.DPO:
        from .dpo import train_dpo

        run = train_dpo(ctx)
    else:
        from .grpo import train_grpo

        run = train_grpo(ctx)
    if dist.is_main():
        log(f"training finished after {run.steps} steps; saving")
    ctx.save_final()
    return run, ctx.method
