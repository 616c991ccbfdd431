"""``evaluate``: checks, then losses; always ends with one JSON result line (exit 0).

A failing submission (bad files, wrong architecture, crashing reward code, a model that
errors in forward) yields ``ok=false`` with a reason; only a crash of the evaluator's own
bookkeeping exits non-zero.
"""

from __future__ import annotations

import argparse
import math
import time
import traceback
from typing import Any

from ..checks import CheckFailed, Submission, check_image_submission, check_text_submission, weights_sha256
from ..contract import (
    EXIT_FAILURE,
    EXIT_OK,
    Check,
    EvalResult,
    InputError,
    TaskType,
    log,
    write_stdout,
)
from ..data import Columns, load_image_folder, load_text_split, parse_columns
from ..sandbox import RewardSpec, SandboxError, SandboxUnavailable, load_reward_specs, probe


def main_evaluate(args: argparse.Namespace) -> int:
    result = EvalResult()
    started = time.time()
    try:
        evaluate(args, result, started)
    except Exception as exc:  # noqa: BLE001 - a submission must never crash the evaluator
        traceback.print_exc()
        result.fail(f"evaluation error: {type(exc).__name__}: {exc}")
    result.timings["total_s"] = round(time.time() - started, 3)
    try:
        text = result.to_json()
        if args.termination_message_path is not None:
            args.termination_message_path.parent.mkdir(parents=True, exist_ok=True)
            args.termination_message_path.write_text(text)
        write_stdout(text)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return EXIT_FAILURE
    return EXIT_OK


def _inputs(args: argparse.Namespace, task: TaskType) -> tuple[Columns | None, list[Any], list[Any], list[RewardSpec]]:
    if not args.base_model.is_dir():
        raise InputError("--base-model", f"not a directory: {args.base_model}")
    if task is TaskType.IMAGE:
        return None, load_image_folder(args.test_data, "--test-data"), [], []
    columns = parse_columns(task, args.columns)
    test = load_text_split(task, args.test_data, columns, "--test-data")
    synth = load_text_split(task, args.synth_data, columns, "--synth-data")
    specs: list[RewardSpec] = []
    if task is TaskType.GRPO:
        if args.reward_functions is None:
            raise InputError("--reward-functions", "required for --task-type grpo")
        specs = load_reward_specs(args.reward_functions)
    return columns, test, synth, specs


def evaluate(args: argparse.Namespace, result: EvalResult, started: float) -> None:
    task = TaskType(args.task_type)
    try:
        _, test, synth, specs = _inputs(args, task)
    except InputError as exc:
        result.checks.append(Check("inputs", False, str(exc)))
        result.fail(f"evaluator input: {exc}")
        return
    result.checks.append(Check("inputs", True, ""))
    score_base = bool(getattr(args, "score_base", False))
    sub = Submission(path=args.submission if args.submission else args.base_model)
    if not score_base:
        try:
            if task is TaskType.IMAGE:
                check_image_submission(sub, args.base_model)
            else:
                check_text_submission(sub, args.base_model)
        except CheckFailed as exc:
            result.checks.extend(sub.checks)
            result.checks.append(Check(exc.name, False, exc.reason))
            files = sub.weight_files
            if not files and sub.path.is_dir():
                files = sorted(sub.path.glob("*.safetensors"))
            result.weights_sha256 = weights_sha256(files)
            result.fail(f"{exc.name}: {exc.reason}")
            return
        result.checks.extend(sub.checks)
        result.weights_sha256 = weights_sha256(sub.weight_files)
    else:
        result.checks.append(Check("score_base", True, "scoring the base model itself"))
    for spec in specs:
        try:
            probe(spec, [e.prompt for e in test[:2]], [e.extra for e in test[:2]])
        except SandboxUnavailable:
            raise  # this machine cannot confine rewards: a crash (retried), not the miner's fault
        except SandboxError as exc:
            result.checks.append(Check("reward_functions", False, str(exc)))
            result.fail(f"reward_functions: {exc}")
            return
    if specs:
        result.checks.append(Check("reward_functions", True, f"{len(specs)} rewards sandboxed"))
    result.timings["checks_s"] = round(time.time() - started, 3)
    try:
        if task is TaskType.IMAGE:
            _evaluate_image(args, sub, score_base, test, result)
        else:
            _evaluate_text(args, task, sub, score_base, test, synth, specs, result)
    except SandboxError as exc:
        result.checks.append(Check("reward_functions", False, str(exc)))
        result.fail(f"reward_functions: {exc}")
        return
    losses = [v for v in (result.test_loss, result.synth_loss, result.text_guided_loss,
                          result.no_text_loss) if v is not None]
    if not losses or not all(math.isfinite(v) for v in losses):
        result.checks.append(Check("finite_loss", False, f"losses {losses}"))
        result.fail("finite_loss: the submission produces non-finite losses")
        return
    result.ok = True


def _evaluate_text(args: argparse.Namespace, task: TaskType, sub: Submission, score_base: bool,
                   test: list[Any], synth: list[Any], specs: list[RewardSpec],
                   result: EvalResult) -> None:
    import torch

    from ..basemodel import seed_everything
    from ..modelio import load_causal_lm, load_tokenizer
    from . import grpo as grpo_eval
    from .text import dpo_loss, instruct_loss

    seed_everything(args.seed)
    t0 = time.time()
    tokenizer = load_tokenizer(args.base_model)
    reference: Any = None
    reference_ctx = None
    if score_base:
        model = load_causal_lm(args.base_model)
        if task is TaskType.DPO:
            reference = model
    elif sub.kind == "lora":
        from peft import PeftModel

        base = load_causal_lm(args.base_model)
        model = PeftModel.from_pretrained(base, str(sub.path), is_trainable=False)
        reference_ctx = model.disable_adapter
    else:
        model = load_causal_lm(sub.path)
        if task is TaskType.DPO:  # the base is only needed as the DPO reference
            reference = load_causal_lm(args.base_model)
    model.eval()
    result.timings["load_s"] = round(time.time() - t0, 3)
    profile = grpo_eval.FAST if args.profile == "fast" else grpo_eval.PAPER

    def score(examples: list[Any]) -> float:
        if task is TaskType.INSTRUCT:
            return instruct_loss(model, tokenizer, examples)
        if task is TaskType.DPO:
            return dpo_loss(model, reference_ctx, reference, tokenizer, examples, beta=0.1)
        return grpo_eval.grpo_loss(model, tokenizer, examples, specs, profile, args.seed)

    with torch.no_grad():
        t1 = time.time()
        result.test_loss = score(test)
        result.timings["test_s"] = round(time.time() - t1, 3)
        t2 = time.time()
        result.synth_loss = score(synth)
        result.timings["synth_s"] = round(time.time() - t2, 3)
    log(f"test_loss={result.test_loss:.6f} synth_loss={result.synth_loss:.6f}")


def _evaluate_image(args: argparse.Namespace, sub: Submission, score_base: bool,
                    test: list[Any], result: EvalResult) -> None:
    from ..basemodel import seed_everything
    from ..image import load_pipeline
    from . import image as image_eval

    seed_everything(args.seed)
    t0 = time.time()
    pipe = load_pipeline(args.base_model)
    if not score_base:
        pipe.load_lora_weights(str(sub.path), weight_name=sub.weight_files[0].name)
    result.timings["load_s"] = round(time.time() - t0, 3)
    profile = image_eval.FAST if args.profile == "fast" else image_eval.PAPER
    t1 = time.time()
    text_loss, no_text_loss = image_eval.reconstruction_losses(pipe, test, profile, args.seed)
    result.text_guided_loss, result.no_text_loss = text_loss, no_text_loss
    result.timings["test_s"] = round(time.time() - t1, 3)
    result.timings["synth_s"] = 0.0
    log(f"text_guided_loss={text_loss:.6f} no_text_loss={no_text_loss:.6f}")
