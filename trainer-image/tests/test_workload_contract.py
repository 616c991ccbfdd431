"""The workload contract as Rust renders it (``workload-contract.json``, generated from
``src/workloads/contract.rs``) against this package's parsers and layout: a drift on either
side fails here or in the Rust tests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from gradients_trainer import contract, synthgen
from gradients_trainer.cli import build_parser

CONTRACT = json.loads((Path(__file__).resolve().parent.parent / "workload-contract.json").read_text())
# Options of ours that no executor renders: for people and tests. ``--processes``: pods get one
# process per GPU they see (the default), CPU tests ask for two.
PYTHON_ONLY: dict[str, set[str]] = {"train": {"--processes"}, "evaluate": {"--processes"},
                                    "synthesize-eval": set()}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action.choices[name]
    raise AssertionError(f"no subcommand {name}")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}  # noqa: SLF001


@pytest.mark.parametrize("command", ["train", "evaluate", "synthesize-eval"])
def test_options_match_the_contract(command: str) -> None:
    spec = CONTRACT["commands"][command]
    assert spec["program"] == "trainer" and spec["subcommand"] == command
    options = _options(_subparser(command))
    declared = {f["name"]: f for f in spec["flags"]}
    assert set(options) - PYTHON_ONLY[command] == set(declared), "options differ from the contract"
    for name, flag in declared.items():
        action = options[name]
        takes_value = action.nargs != 0
        assert takes_value == flag["value"], f"{command} {name}: value"
        assert action.required == flag["required"], f"{command} {name}: required"


@pytest.mark.parametrize("example", ["train", "train_resume", "evaluate", "evaluate_base", "evaluate_generated",
                                     "synthesize"])
def test_rendered_invocations_parse(example: str) -> None:
    argv: list[str] = CONTRACT["examples"][example]
    args = build_parser().parse_args(argv)
    rendered: dict[str, Any] = dict(zip(argv[1::2], argv[2::2]))
    if example == "evaluate_base":
        assert args.score_base is True and args.submission is None
    elif example == "evaluate":
        assert str(args.submission) == "OUTPUT/" + CONTRACT["layout"]["model_dir"]
        assert args.submission_digest == rendered["--submission-digest"]
    elif example == "evaluate_generated":
        # The evaluator scores exactly the file the generator writes.
        layout = CONTRACT["layout"]
        assert layout["generated_file"] == synthgen.DATA_FILE
        assert str(args.synth_data) == f"DATA/{layout['heldout_dir']}/{layout['generated_dir']}/{synthgen.DATA_FILE}"
    elif example == "synthesize":
        assert args.rows == int(rendered["--rows"]) and args.temperature == float(rendered["--temperature"])
        assert str(args.output) == f"DATA/{CONTRACT['layout']['heldout_dir']}/{CONTRACT['layout']['generated_dir']}"
        assert str(args.termination_message_path) == CONTRACT["termination_message_path"]
    else:
        assert args.hours == float(rendered["--hours"])
        assert str(args.output) == "OUTPUT"
        assert (args.resume_from is None) == (example == "train")
        if example == "train_resume":
            assert str(args.resume_from) == rendered["--resume-from"]


def test_layout_and_limits_match() -> None:
    layout = CONTRACT["layout"]
    assert layout["model_dir"] == contract.MODEL_DIR
    assert layout["training_summary_file"] == contract.TRAINING_SUMMARY_FILE
    assert CONTRACT["termination_message_limit"] == contract.TERMINATION_MESSAGE_LIMIT
    assert CONTRACT["task_types"] == [t.value for t in contract.TaskType]
    assert CONTRACT["programs"]["trainer"] == ["python", "-m", "gradients_trainer"]
    # The reward file and the model the trainer writes are where the evaluator is pointed.
    train = CONTRACT["examples"]["train"]
    evaluate = CONTRACT["examples"]["evaluate"]
    assert train[train.index("--reward-functions") + 1] == evaluate[evaluate.index("--reward-functions") + 1]
    assert evaluate[evaluate.index("--submission") + 1] == \
        train[train.index("--output") + 1] + "/" + contract.MODEL_DIR
    # Held-out data is never among a trainer's inputs.
    assert layout["text"]["train"].startswith(f"DATA/{layout['training_dir']}/")
    for split in ("test", "synth"):
        assert layout["text"][split].startswith(f"DATA/{layout['heldout_dir']}/")
