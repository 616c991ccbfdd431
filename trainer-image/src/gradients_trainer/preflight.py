"""``python -m gradients_trainer.preflight``: what a runner checks before any workload starts.

Prints one JSON object on stdout: the package's contract version, the base model's
architecture (its configuration loaded the way the trainer loads it, offline, no remote code)
and the GPUs visible to this process. Exits 2 with the reason on stderr when the base model
cannot be loaded or fewer GPUs are visible than ``--gpus`` asks for. The runner compares the
version with its own (``TRAINER_CONTRACT_VERSION`` in ``src/local/preflight.rs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import CONTRACT_VERSION
from .contract import EXIT_INVALID_INPUT, TaskType, force_offline


def base_model_config(task_type: TaskType, base: Path) -> str:
    """The architecture named by the base model's configuration; raises when it cannot load."""
    if task_type.is_text:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(base), trust_remote_code=False, local_files_only=True)
        return str((getattr(config, "architectures", None) or [config.model_type])[0])
    from .image import pipeline_class

    return pipeline_class(base)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradients_trainer.preflight")
    parser.add_argument("--task-type", required=True, choices=[t.value for t in TaskType])
    parser.add_argument("--base-model", required=True, type=Path)
    parser.add_argument("--gpus", type=int, default=0, help="GPUs the run asks for (0: none)")
    args = parser.parse_args(argv)
    force_offline()
    result: dict[str, Any] = {"contract_version": CONTRACT_VERSION}
    try:
        result["base_model"] = base_model_config(TaskType(args.task_type), args.base_model)
    except Exception as e:  # noqa: BLE001 - any load failure is reported as the cause
        sys.stderr.write(f"--base-model {args.base_model}: cannot load its configuration: {e}\n")
        print(json.dumps(result))
        return EXIT_INVALID_INPUT
    # torch is imported only when GPUs are asked for: it is most of this check's time.
    result["gpus"] = visible_gpus() if args.gpus > 0 else None
    print(json.dumps(result))
    if args.gpus > 0 and result["gpus"] < args.gpus:
        sys.stderr.write(f"{args.gpus} GPU(s) asked for, {result['gpus']} visible to this Python\n")
        return EXIT_INVALID_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
