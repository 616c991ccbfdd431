"""``evaluate``: checks, then losses; always ends with one JSON result line (exit 0).

A failing submission (bad files, wrong architecture, crashing reward code, a model that
errors in forward) yields ``ok=false`` with a reason; only a crash of the evaluator's own
bookkeeping exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .. import dist
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
from ..sandbox import RewardSpec, SandboxError, SandboxUnavailable, load_reward_specs


def main_evaluate(args: argparse.Namespace) -> int:
    result = EvalResult()
    started = time.time()
    try:
        evaluate(args, result, started)
    except Exception as exc:  # noqa: BLE001 - a submission must never crash the evaluator
        traceback.print_exc()
        result.fail(f"evaluation error: {type(exc).__name__}: {exc}")
    result.timings["total_s"] = round(time.time() - started, 3)
    if not dist.is_main():  # rank 0 alone reports; the others computed their share
        return EXIT_OK
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
        result.fail(f"evaluator input: {exc}", "task")
        return
    result.checks.append(Check("inputs", True, ""))
    score_base = bool(getattr(args, "score_base", False))
    sub = Submission(path=args.submission if args.submission else args.base_model)
    if not score_base:
        digest = getattr(args, "submission_digest", None)
        try:
            if task is TaskType.IMAGE:
                check_image_submission(sub, args.base_model, digest)
            else:
                check_text_submission(sub, args.base_model, digest)
        except CheckFailed as exc:
            result.checks.extend(sub.checks)
            result.checks.append(Check(exc.name, False, exc.reason))
            result.model_digest = sub.digest
            if exc.name not in ("safetensors", "files"):
                result.weights_sha256 = weights_sha256(sub.weight_files)
            result.fail(f"{exc.name}: {exc.reason}", "task" if exc.name == "inputs" else "submission")
            return
        result.checks.extend(sub.checks)
        result.model_digest = sub.digest
        result.weights_sha256 = weights_sha256(sub.weight_files)
    else:
        result.checks.append(Check("score_base", True, "scoring the base model itself"))
    if specs:
        from .grpo import RewardProbeFailed, probe_rewards

        try:
            probe_rewards(specs, test)
        except SandboxUnavailable as exc:
            result.checks.append(Check("reward_functions", False, str(exc)))
            result.fail(f"reward_functions: this machine cannot confine reward code: {exc}", "evaluator")
            return
        except RewardProbeFailed as exc:
            result.checks.append(Check("reward_functions", False, f"on the task's prompts: {exc}"))
            result.fail(f"reward_functions: the task's reward code fails on its own prompts: {exc}", "task")
            return
        result.checks.append(Check("reward_functions", True, f"{len(specs)} rewards sandboxed"))
    result.timings["checks_s"] = round(time.time() - started, 3)
    try:
        with tempfile.TemporaryDirectory(prefix="gradients-eval-") as staging:
            if task is TaskType.IMAGE:
                _evaluate_image(args, sub, score_base, test, result, Path(staging))
            else:
                _evaluate_text(args, task, sub, score_base, test, synth, specs, result, Path(staging))
    except SandboxUnavailable as exc:
        result.checks.append(Check("reward_functions", False, str(exc)))
        result.fail(f"reward_functions: this machine cannot confine reward code: {exc}", "evaluator")
        return
    except SandboxError as exc:
        result.checks.append(Check("reward_functions", False, f"on the submission's completions: {exc}"))
        result.fail(f"reward_functions: {exc}")
        return
    except dist.CollectiveFailed as exc:
        result.checks.append(Check("processes", False, str(exc)[:300]))
        result.fail(f"processes: the evaluator's processes lost each other: {exc}", "evaluator")
        return
    except Exception as exc:  # noqa: BLE001 - classify resource failures, re-raise the rest
        if not is_out_of_memory(exc):
            raise
        result.checks.append(Check("resources", False, str(exc)[:300]))
        result.fail(f"resources: the evaluator ran out of memory ({type(exc).__name__})", "evaluator")
        return
    losses = [v for v in (result.test_loss, result.synth_loss, result.text_guided_loss,
                          result.no_text_loss) if v is not None]
    if not losses or not all(math.isfinite(v) for v in losses):
        result.checks.append(Check("finite_loss", False, f"losses {losses}"))
        result.fail("finite_loss: the submission produces non-finite losses")
        return
    result.ok = True


def is_out_of_memory(exc: BaseException) -> bool:
    from .image import EvaluatorOutOfMemory

    if isinstance(exc, (EvaluatorOutOfMemory, MemoryError)):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _load_text_models(args: argparse.Namespace, task: TaskType, sub: Submission, score_base: bool,
                      staging: Path) -> tuple[Any, Any, Any]:
    """(model, adapter-disabling context or None, separate base model or None).

    The model is built from what the evaluator trusts only (``modelio.trusted_model_dir``):
    the base's config and generation config, the submission's checked weights."""
    from ..modelio import load_causal_lm, trusted_model_dir

    base_dir = args.base_model
    if score_base:
        return load_causal_lm(base_dir), None, None
    if sub.kind == "lora":
        from peft import PeftModel

        adapter = trusted_model_dir(base_dir, sub.weight_files, staging / "adapter", sub.adapter_config)
        model = PeftModel.from_pretrained(load_causal_lm(base_dir), str(adapter), is_trainable=False)
        return model, model.disable_adapter, None
    model = load_causal_lm(trusted_model_dir(base_dir, sub.weight_files, staging / "model"))
    # The base is needed as the DPO reference and the GRPO KL reference.
    base = load_causal_lm(base_dir) if task in (TaskType.DPO, TaskType.GRPO) else None
    return model, None, base


def _evaluate_text(args: argparse.Namespace, task: TaskType, sub: Submission, score_base: bool,
                   test: list[Any], synth: list[Any], specs: list[RewardSpec],
                   result: EvalResult, staging: Path) -> None:
    import torch

    from ..basemodel import seed_everything
    from ..modelio import load_tokenizer
    from ..textrules import window_of
    from . import grpo as grpo_eval
    from .text import dpo_loss, instruct_loss

    seed_everything(args.seed)
    t0 = time.time()
    tokenizer = load_tokenizer(args.base_model)
    window = window_of(json.loads((args.base_model / "config.json").read_text()))
    model, base_ctx, base = _load_text_models(args, task, sub, score_base, staging)
    model.eval()
    if base is not None:
        base.eval()
    result.timings["load_s"] = round(time.time() - t0, 3)
    sampling = grpo_eval.FAST if args.profile == "fast" else grpo_eval.PRODUCTION
    reference = model if score_base else base

    def score(examples: list[Any], split: str) -> float:
        if task is TaskType.INSTRUCT:
            return instruct_loss(model, tokenizer, examples, window)
        if task is TaskType.DPO:
            return dpo_loss(model, base_ctx, reference, tokenizer, examples, window, beta=0.1)
        g = grpo_eval.grpo_score(model, tokenizer, examples, specs, sampling, args.seed,
                                 base_ctx=base_ctx, base=base)
        setattr(result, f"{split}_kl", g.kl)
        setattr(result, f"{split}_rewards", g.rewards)
        return g.loss

    with torch.no_grad():
        t1 = time.time()
        result.test_loss = score(test, "test")
        result.timings["test_s"] = round(time.time() - t1, 3)
        t2 = time.time()
        result.synth_loss = score(synth, "synth")
        result.timings["synth_s"] = round(time.time() - t2, 3)
    log(f"test_loss={result.test_loss:.6f} synth_loss={result.synth_loss:.6f}")


def _evaluate_image(args: argparse.Namespace, sub: Submission, score_base: bool,
                    test: list[Any], result: EvalResult, staging: Path) -> None:
    from safetensors.torch import load_file

    from ..basemodel import seed_everything
    from ..image import load_pipeline
    from . import image as image_eval

    seed_everything(args.seed)
    t0 = time.time()
    pipe = load_pipeline(args.base_model)
    if not score_base:
        # A state dict, not the file: the safetensors metadata (a LoRA config) is ignored.
        pipe.load_lora_weights(load_file(str(sub.weight_files[0])))
    result.timings["load_s"] = round(time.time() - t0, 3)
    profile = image_eval.profile_for(pipe, args.profile)
    t1 = time.time()
    batches = image_eval.Batches()
    text_loss, no_text_loss = image_eval.reconstruction_losses(pipe, test, profile, args.seed,
                                                               batches=batches)
    result.text_guided_loss, result.no_text_loss = text_loss, no_text_loss
    result.timings["test_s"] = round(time.time() - t1, 3)
    result.timings["synth_s"] = 0.0
    log(f"text_guided_loss={text_loss:.6f} no_text_loss={no_text_loss:.6f} "
        f"(profile {args.profile}, batch {batches.size}, {batches.backoffs} out-of-memory back-offs)")
