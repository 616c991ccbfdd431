"""``python -m gradients_trainer <train|evaluate|make-base-model|synthesize-eval|strategies>``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from pathlib import Path
from typing import NoReturn, Sequence

from .contract import (
    EXIT_FAILURE,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    InputError,
    TaskType,
    force_offline,
    reserve_stdout,
    write_stdout,
)

TASK_TYPES = [t.value for t in TaskType]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(EXIT_INVALID_INPUT)


def _digest(value: str) -> str:
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not sha256:<64 lowercase hex digits>")
    return value


def _processes(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


PROCESSES_HELP = ("processes to run, one per device (default: one per visible GPU, else 1); "
                  "more than one on CPU uses the gloo backend")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gradients_trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tr = sub.add_parser("train", help="fine-tune a base model with a strategy")
    tr.add_argument("--task-type", required=True, choices=TASK_TYPES)
    tr.add_argument("--base-model", required=True, type=Path)
    tr.add_argument("--train-data", required=True, type=Path)
    tr.add_argument("--columns", default=None)
    tr.add_argument("--reward-functions", type=Path, default=None)
    tr.add_argument("--hours", required=True, type=float,
                    help="time budget from the trainer's start (the workload contract's only clock)")
    tr.add_argument("--output", required=True, type=Path)
    tr.add_argument("--strategy", default="baseline")
    tr.add_argument("--strategy-overrides", default=None,
                    help="JSON object of strategy fields to override (testing/tuning)")
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--processes", type=_processes, default=None, help=PROCESSES_HELP)
    tr.add_argument("--resume-from", type=Path, default=None,
                    help="continue from this earlier training's output directory (its model/ and "
                         "checkpoint.json) with the new --hours; refused for another base model, "
                         "task, dataset or strategy")

    ev = sub.add_parser("evaluate", help="check and score a submission")
    ev.add_argument("--task-type", required=True, choices=TASK_TYPES)
    ev.add_argument("--base-model", required=True, type=Path)
    ev.add_argument("--submission", type=Path, default=None,
                    help="submitted model dir (required unless --score-base)")
    ev.add_argument("--test-data", required=True, type=Path)
    ev.add_argument("--synth-data", required=True, type=Path)
    ev.add_argument("--columns", default=None)
    ev.add_argument("--reward-functions", type=Path, default=None)
    ev.add_argument("--submission-digest", type=_digest, default=None,
                    help="sha256:<hex> tree digest of --submission from the seal step; "
                         "a mismatch fails the submission before anything is loaded")
    ev.add_argument("--profile", choices=["production", "paper", "fast"], default="production",
                    help="image: per-family settings (README); grpo: fast = 32 new tokens")
    ev.add_argument("--seed", type=int, default=42)
    ev.add_argument("--termination-message-path", type=Path, default=None)
    ev.add_argument("--score-base", action="store_true",
                    help="score the base model itself (no submission checks): reference losses")
    ev.add_argument("--processes", type=_processes, default=None, help=PROCESSES_HELP)

    mk = sub.add_parser("make-base-model", help="build a tiny local base model")
    mk.add_argument("--task-type", required=True, choices=TASK_TYPES)
    mk.add_argument("--output", required=True, type=Path)
    mk.add_argument("--pretrain-data", type=Path, default=None)
    mk.add_argument("--seed", type=int, default=42)
    mk.add_argument("--architecture", choices=["llama", "qwen2", "sd", "sdxl", "flux"],
                    default=None, help="text: llama (default) | qwen2; image: sdxl (default) | sd | flux")
    mk.add_argument("--pretrain-steps", type=int, default=40)
    mk.add_argument("--size", choices=["tiny", "small"], default="tiny",
                    help="text only: tiny (tests, ~0.1M params) or small (~25M, GPU checks)")

    sg = sub.add_parser("synthesize-eval",
                        help="write a synthetic evaluation set with a generator model (§3.3)")
    sg.add_argument("--task-type", required=True, choices=TASK_TYPES)
    sg.add_argument("--generator", required=True, type=Path)
    sg.add_argument("--weaker-model", type=Path, default=None,
                    help="DPO: writes the rejected answers (default: a corrupted decode)")
    sg.add_argument("--train-data", required=True, type=Path)
    sg.add_argument("--test-data", type=Path, default=None,
                    help="seed rows (default: --train-data, e.g. the whole dataset)")
    sg.add_argument("--columns", default=None)
    sg.add_argument("--rows", type=int, required=True)
    sg.add_argument("--temperature", type=float, default=0.7)
    sg.add_argument("--max-new-tokens", type=int, default=48)
    sg.add_argument("--seed", type=int, default=42)
    sg.add_argument("--output", required=True, type=Path)
    sg.add_argument("--termination-message-path", type=Path, default=None,
                    help="also write the done record there (the operator's Job reads it)")

    sub.add_parser("strategies", help="print the strategy catalogue as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    force_offline()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    reserve_stdout()
    if args.command not in ("train", "evaluate"):
        return _run(args)
    from . import dist

    if dist.distributed():  # one of several processes (our launcher or torchrun)
        return _run_worker(args)
    from . import transfers

    try:
        staged = transfers.take_from_env()
        if staged is not None:
            transfers.fetch_all(staged)
    except transfers.TransferError as exc:
        sys.stderr.write(f"error: fetching artifacts: {exc}\n")
        return EXIT_FAILURE
    code = _launch_or_run(args, argv)
    if staged is not None and args.command == "train" and code == EXIT_OK:
        try:
            transfers.store_all(staged)
        except transfers.TransferError as exc:
            sys.stderr.write(f"error: storing the output: {exc}\n")
            return EXIT_FAILURE
    return code


def _launch_or_run(args: argparse.Namespace, argv: list[str]) -> int:
    from . import launch

    world = launch.process_count(args.command, TaskType(args.task_type), args.processes)
    if world == 1:
        return _run(args)
    outcome = launch.run_workers(argv, world)
    if args.command == "evaluate":
        return launch.evaluation_outcome(outcome, args.termination_message_path)
    return launch.training_outcome(outcome)


def _run_worker(args: argparse.Namespace) -> int:
    from . import dist
    from .contract import reserve_stdout_fd

    reserve_stdout_fd()
    try:
        dist.init()
    except Exception as exc:  # noqa: BLE001 - the launcher reports which rank failed
        sys.stderr.write(f"error: rank {dist.rank()}: joining the process group: {exc}\n")
        return EXIT_FAILURE
    try:
        return _run(args)
    finally:
        dist.finish()


def _run(args: argparse.Namespace) -> int:
    if args.command == "evaluate":
        if args.submission is None and not args.score_base:
            sys.stderr.write("error: --submission: required unless --score-base\n")
            return EXIT_INVALID_INPUT
        from .evaluate.runner import main_evaluate

        return main_evaluate(args)
    try:
        return _dispatch(args)
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_INVALID_INPUT
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the contract maps any other failure to 1
        traceback.print_exc()
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    from . import strategies

    if args.command == "strategies":
        write_stdout(json.dumps(strategies.catalogue_json(), indent=2))
        return EXIT_OK
    task = TaskType(args.task_type)
    if args.command == "make-base-model":
        from .basemodel import make_base_model

        arch = args.architecture or ("sdxl" if task is TaskType.IMAGE else "llama")
        info = make_base_model(task, args.output, args.seed, args.pretrain_data,
                               arch, args.pretrain_steps, args.size)
        write_stdout(json.dumps({"event": "done", "output": str(args.output), **info}))
        return EXIT_OK
    if args.command == "synthesize-eval":
        from dataclasses import asdict

        from .synthgen import Request, run

        record = run(Request(
            task=task, generator=args.generator, weaker=args.weaker_model,
            train_data=args.train_data, test_data=args.test_data, columns=args.columns,
            rows=args.rows, temperature=args.temperature,
            max_new_tokens=args.max_new_tokens, seed=args.seed, output=args.output,
        ))
        done = json.dumps({"event": "done", **asdict(record)})
        if args.termination_message_path is not None:
            args.termination_message_path.write_text(done)
        write_stdout(done)
        return EXIT_OK
    strategy = strategies.get(args.strategy)
    if args.strategy_overrides:
        try:
            overrides = json.loads(args.strategy_overrides)
        except json.JSONDecodeError as exc:
            raise InputError("--strategy-overrides", f"invalid JSON ({exc.msg})") from None
        if not isinstance(overrides, dict):
            raise InputError("--strategy-overrides", "must be a JSON object")
        strategy = strategies.with_overrides(strategy, overrides)
    from .train import TrainRequest, run_train

    run_train(
        TrainRequest(
            task=task,
            base_model=args.base_model,
            train_data=args.train_data,
            columns=args.columns,
            reward_functions=args.reward_functions,
            hours=args.hours,
            output=args.output,
            strategy=strategy,
            seed=args.seed,
            resume_from=args.resume_from,
        )
    )
    return EXIT_OK
