"""The step loop of a sharded (FSDP) full fine-tune (instruct and DPO), with HF Trainer's numbers.

It keeps what the HF Trainer does for one process or DDP, so a sharded run trains the same
model: the optimiser and its weight-decay groups, the scheduler and its warmup, gradient
accumulation, clipping, and the loss of each optimiser step normalised over the whole global
batch (all processes, all accumulated micro-batches): by its target tokens for instruct
(``CausalLM``), by its pairs for DPO (``dposharded.Dpo``). The global batch is the strategy's
batch times the processes, as with DDP. Budget, stop, periodic saves and
progress events go through ``hf.StepControl`` like every other text trainer; the saves are
collective (the weights are gathered from the shards, rank 0 writes them).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol

from . import dist, fsdp
from .hf import StepControl, common_args, first_step_lr
from .runstate import RunState
from .textcommon import TextTrainContext
from .textrules import IGNORE


def micro_batches(rows: int, per_rank: int, world: int, seed: int, epoch: int) -> list[list[int]]:
    """This process's micro-batches (row indices) of one epoch: a seeded shuffle cut into
    batches of ``per_rank``, dealt round-robin; when the batches do not divide by the
    processes the first ones are dealt again, so every process runs as many steps (the
    collectives need it; accelerate's ``even_batches`` does the same)."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    order = torch.randperm(rows, generator=generator).tolist()
    batches = dealt_evenly([order[i:i + per_rank] for i in range(0, rows, per_rank)], world)
    return batches[dist.rank()::world]


def dealt_evenly(batches: list[list[int]], world: int) -> list[list[int]]:
    """``batches`` repeated from the first until they divide by the processes (even when
    there are fewer batches than processes), so every process runs as many forwards."""
    out = list(batches)
    while len(out) % world:
        out.append(batches[len(out) % len(batches)])
    return out


def steps_per_epoch(rows: int, per_rank: int, world: int, accum: int) -> int:
    micro = math.ceil(math.ceil(rows / per_rank) / world)
    return max(1, math.ceil(micro / accum))


def optimiser_steps(rows: int, per_rank: int, world: int, accum: int, seed: int
                    ) -> Iterator[list[list[int]]]:
    """The micro-batches of each optimiser step, epoch after epoch (an epoch's last step may
    accumulate fewer, as in HF Trainer)."""
    epoch = 0
    while True:
        batches = micro_batches(rows, per_rank, world, seed, epoch)
        for i in range(0, len(batches), accum):
            yield batches[i:i + accum]
        epoch += 1


def target_tokens(batch: dict[str, Any]) -> int:
    """Tokens the causal-LM loss counts: labels after the shift that are not ignored."""
    return int((batch["labels"][..., 1:] != IGNORE).sum())


class Objective(Protocol):
    """What the loop minimises: ``loss`` is one micro-batch's share of the global batch's
    mean, whose denominator is the sum over every process of ``count``."""

    def collate(self, rows: list[Any]) -> dict[str, Any]: ...

    def count(self, batch: dict[str, Any]) -> int: ...

    def prepare(self, model: Any, device: Any) -> None:
        """Once the model is sharded, before the first step (collective)."""

    def loss(self, model: Any, batch: dict[str, Any], total: Any) -> Any: ...


class CausalLM:
    """Instruct: the token mean of the causal-LM loss over the labelled tokens."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def collate(self, rows: list[Any]) -> dict[str, Any]:
        return dict(self.collator(rows))

    def count(self, batch: dict[str, Any]) -> int:
        return target_tokens(batch)

    def prepare(self, model: Any, device: Any) -> None:
        pass

    def loss(self, model: Any, batch: dict[str, Any], total: Any) -> Any:
        return model(**batch, num_items_in_batch=total).loss


def train_sharded(ctx: TextTrainContext, model: Any, dataset: Any, objective: Objective) -> RunState:
    import torch
    from transformers import Trainer, TrainingArguments, get_scheduler

    args = TrainingArguments(**common_args(ctx.strategy, ctx.output, ctx.seed, ctx.epochs))
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    model.config.use_cache = False
    if args.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = fsdp.shard(model)
    objective.prepare(model, device)
    model.train()

    # The Trainer's own rule (no norms, no biases); the method does not use its instance.
    decay = set(Trainer.get_decay_parameter_names(None, model))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    optimizer = optimizer_cls([
        {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ], **optimizer_kwargs)

    world, rows = dist.world_size(), len(dataset)
    per_epoch = steps_per_epoch(rows, args.per_device_train_batch_size, world,
                                args.gradient_accumulation_steps)
    max_steps = max(1, math.ceil(args.num_train_epochs * per_epoch))
    warmup = int(args.get_warmup_steps(max_steps))
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                              num_training_steps=max_steps,
                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    first_step_lr(optimizer, args.learning_rate, warmup)

    run = RunState()
    control = StepControl(ctx.budget, ctx.saver(), run, collective=True)
    control.begin(max_steps)
    step = 0
    for step, group in enumerate(optimiser_steps(rows, args.per_device_train_batch_size, world,
                                                 args.gradient_accumulation_steps, ctx.seed), 1):
        inputs = [objective.collate([dataset[i] for i in indices]) for indices in group]
        items = dist.sum_of(float(sum(objective.count(b) for b in inputs)))[0]
        count = torch.tensor(int(items), device=device)
        loss_sum = torch.zeros((), device=device)
        for batch in inputs:
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
            loss = objective.loss(model, batch, count)
            # FSDP averages the gradients over the processes; the loss is already a share
            # of the global mean, so undo the average (as HF Trainer does for DDP).
            (loss * world).backward()
            loss_sum += loss.detach()
        if args.max_grad_norm and args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        mean_loss = dist.sum_of(float(loss_sum))[0]  # the global batch's mean
        stop = control.end(step, max_steps, model)
        control.logged(step, mean_loss)
        if stop or step >= max_steps:
            break
    fsdp.report(model, optimizer, step)
    ctx.final_model = model
    return run
