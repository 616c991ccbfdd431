"""Full fine-tuning across processes: the model sharded with FSDP2 (``fully_shard``).

ZeRO-3: each process keeps 1/N of every parameter, of its gradient and of the AdamW state;
a decoder layer's full weights exist only while that layer runs (all-gathered, then freed).
So full fine-tuning fits when weights, gradients and optimiser state fit the N devices
together instead of one. HF Trainer's own ``fsdp`` option (accelerate) falls back to DDP
without a GPU, so the sharded model is trained by our own step loop (``steploop.py``), which
the two-CPU-process tests run exactly as a GPU pod does (there NCCL, bf16).
"""

from __future__ import annotations

from typing import Any

from . import dist
from .contract import log


def wanted(method: str) -> bool:
    """Full fine-tuning in several processes is sharded; LoRA stays data-parallel (its
    trainable share is small, and DDP on the frozen base is cheaper)."""
    return method == "full" and dist.distributed()


def shard(model: Any) -> Any:
    """Shard ``model`` in place: each decoder layer its own unit (gathered one at a time),
    then the root (embeddings, final norm, output head). On GPUs the compute runs in bf16
    and the gradients are reduced in fp32. Returns the model (its class now ``FSDP…``)."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    on_gpu = torch.cuda.is_available()
    mesh = init_device_mesh("cuda" if on_gpu else "cpu", (dist.world_size(),))
    kwargs: dict[str, Any] = {"mesh": mesh}
    if on_gpu:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                   reduce_dtype=torch.float32)
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        raise RuntimeError(f"{type(model).__name__}: no decoder layers to shard "
                           f"(_no_split_modules={sorted(blocks)})")
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    local, total = share(model)
    log(f"fsdp: rank {dist.rank()} of {dist.world_size()} holds {local} of {total} parameters "
        f"({len(layers)} sharded layers)")
    return model


def reshard(model: Any) -> None:
    """Free the gathered weights after forwards without a backward (DPO's reference
    log-probs): FSDP keeps the root's gathered for the backward it expects, and its
    gradients would then not reach the shards the optimiser steps."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def share(model: Any) -> tuple[int, int]:
    """(this process's parameter elements, the model's): about 1/N once sharded."""
    local = total = 0
    for p in model.parameters():
        total += p.numel()
        local += _local_numel(p)
    return local, total


def report(model: Any, optimizer: Any, step: int) -> None:
    """After training: this process's share of the parameters and of the optimiser state
    (AdamW: two moments per parameter element), so a test sees that both stayed sharded."""
    local, total = share(model)
    state = sum(_local_numel(v) for per_param in optimizer.state.values()
                for v in per_param.values() if getattr(v, "dim", lambda: 0)() > 0)
    log(f"fsdp: rank {dist.rank()} after step {step} holds {local} of {total} parameters "
        f"and {state} optimiser state elements")


def _local_numel(tensor: Any) -> int:
    return int(tensor.to_local().numel() if hasattr(tensor, "to_local") else tensor.numel())


def full_state_dict(model: Any) -> dict[str, Any]:
    """The whole model's weights on rank 0's CPU (empty on the others). Collective: every
    process must call it, at the same step.

    Tied parameters (an output head sharing the input embedding) come back as separate
    copies; they are made one tensor again, so ``save_pretrained`` drops the alias as it does
    for an unsharded model (the evaluator refuses a tensor the base does not have)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = dict(get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)))
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(param), name)
        if owner != name and owner in weights and name in weights:
            weights[name] = weights[owner]
    return weights
