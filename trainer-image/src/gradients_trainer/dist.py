"""One process per device: rank and world from the environment, and the few collectives the
trainer and the evaluator need, each with a bounded wait.

The launcher (``launch.py``) starts the processes with the variables ``torchrun`` sets
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so the same code
also runs under ``torchrun``. With one process nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Sequence

TIMEOUT_ENV = "GRADIENTS_DIST_TIMEOUT_S"
# Longer than any save rank 0 makes while the others wait in the next step's all-reduce.
DEFAULT_TIMEOUT_S = 1800.0


class RankFailed(RuntimeError):
    """Another process failed while computing its share (its exception type and message)."""


class CollectiveFailed(RuntimeError):
    """The processes could not agree: a peer is gone or did not answer within the timeout."""


def world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 alone writes the model, training.json, events and the termination message."""
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def init() -> None:
    """Join the process group (once): NCCL on GPUs (this rank's device), gloo on CPUs."""
    if not distributed():
        return
    import torch
    import torch.distributed as td

    if td.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "nccl"
    else:
        backend = "gloo"
    td.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s()))


def finish() -> None:
    if not distributed():
        return
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def _device() -> Any:
    import torch
    import torch.distributed as td

    if td.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(values: Sequence[float], op: str, dtype: Any = None) -> list[float]:
    import torch
    import torch.distributed as td

    tensor = torch.tensor(list(values), dtype=dtype or torch.float64, device=_device())
    try:
        td.all_reduce(tensor, op=td.ReduceOp.MAX if op == "max" else td.ReduceOp.SUM)
    except Exception as exc:  # noqa: BLE001 - gloo and NCCL raise several types
        raise CollectiveFailed(f"all-reduce across {world_size()} processes failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    return [float(v) for v in tensor.tolist()]


def any_of(*flags: bool) -> list[bool]:
    """Each flag is true when it is true on any process (identity with one process)."""
    if not distributed():
        return list(flags)
    return [v > 0 for v in _all_reduce([1.0 if f else 0.0 for f in flags], "max")]


def sum_of(*values: float) -> list[float]:
    """Element-wise sums over the processes (float64; identity with one process)."""
    if not distributed():
        return list(values)
    return _all_reduce(values, "sum")


OOM = 2
ERROR = 1


def _failure_code(exc: BaseException) -> int:
    text = str(exc).lower()
    return OOM if isinstance(exc, MemoryError) or "out of memory" in text else ERROR


def spread(sizes: Sequence[int], work: Callable[[int], Sequence[float]]) -> list[list[float]]:
    """Run ``work(i)`` for every job ``i`` (job ``i`` yields ``sizes[i]`` numbers), the jobs
    dealt round-robin over the processes, and return every job's numbers on every process.

    Each job is computed by exactly one process, with the same inputs a single process would
    use, and the others add zeros: the gathered numbers are bit-identical to a one-process run.
    A job that raises stops this process's share; every process then raises (the failing one
    its own exception, the others ``RankFailed`` with its type and message) instead of waiting.
    """
    if not distributed():
        return [list(work(i)) for i in range(len(sizes))]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    flat = [0.0] * offsets[-1]
    failure: BaseException | None = None
    for i in range(rank(), len(sizes), world_size()):
        try:
            values = list(work(i))
        except Exception as exc:  # noqa: BLE001 - reported to every process below
            failure = exc
            break
        if len(values) != sizes[i]:
            failure = ValueError(f"job {i} gave {len(values)} numbers, expected {sizes[i]}")
            break
        flat[offsets[i]:offsets[i + 1]] = values
    code = 0 if failure is None else _failure_code(failure)
    worst = _all_reduce([float(code)], "max")[0]
    if worst > 0:
        _raise_agreed(failure)
    total = _all_reduce(flat, "sum") if flat else []
    return [total[offsets[i]:offsets[i + 1]] for i in range(len(sizes))]


def _raise_agreed(failure: BaseException | None) -> None:
    import torch.distributed as td

    message = None if failure is None else f"rank {rank()}: {type(failure).__name__}: {failure}"
    gathered: list[Any] = [None] * world_size()
    try:
        td.all_gather_object(gathered, message)
    except Exception as exc:  # noqa: BLE001
        raise CollectiveFailed(f"gathering the failure failed: {exc}") from exc
    if failure is not None:
        raise failure
    first = next(m for m in gathered if m)
    raise RankFailed(str(first)[:1000])
