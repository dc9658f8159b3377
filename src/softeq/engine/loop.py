"""One training loop for every task; the task plugs in small hooks (:class:`TaskHooks`).

The loop owns the epochs, the data order and its sharding over DDP processes, gradient
accumulation, clipping, bf16 autocast, the EMA of the weights, the atomic checkpoint after every
epoch and its resume, and best-epoch selection on a held-out split (docs/conventions.md §3).

Global batch. ``recipe.batch_size`` is the global batch of one optimizer step: each of the W
processes takes ``batch_size / (W x grad_accum)`` samples per micro-batch.  The epoch's order is
one permutation seeded by (seed, epoch), padded to a multiple of W (as DistributedSampler does)
and dealt round-robin, so the union of the W micro-batches number i is the single-process
micro-batch i.

Loss weighting. A task's loss hook returns a *sum* of per-term losses and :meth:`TaskHooks.count`
says how many terms a batch has (images, labelled pixels, agent steps).  Before the backward
passes of a step the counts of all its micro-batches are summed over the processes, and every
micro-batch backpropagates ``sum x W / global_count`` (DDP averages over W): the gradient is the
mean over the global batch whatever the split, even when processes hold different numbers of
terms (trajectory windows with different numbers of agents).

Auxiliary losses. A module of the model may define ``auxiliary_loss() -> Tensor``: a term of the
objective computed in its last forward, read as a per-term mean (a canonicalizer's prior, a
residual pathway's weight prior).  The loop adds it times the micro-batch's count to the summed
loss, so that it enters the global-batch mean with its own weight whatever the split.

Reproducibility. The order, the task's per-epoch draws and the global RNGs (dropout, drop path,
timm's mixup) of epoch e come from seeds of (seed, e, rank); with the checkpoint holding model,
optimizer, scheduler, EMA and best score, a run killed and resumed ends bit-identical to one that
was not.  Rank 0 writes every file.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.engine.checkpoint import save_checkpoint
from softeq.engine.distributed import Distributed, seed_everything
from softeq.engine.fingerprint import Fingerprint
from softeq.engine.recipe import TrainRecipe
from softeq.engine.schedule import epoch_seed, epochs_to_run, resume, save_state

__all__ = ["TaskHooks", "auxiliary_loss", "fit", "shard"]


def auxiliary_loss(model: nn.Module) -> Tensor | None:
    """The sum of the model's modules' ``auxiliary_loss()`` terms, or None when none has one."""
    terms = [m.auxiliary_loss() for m in model.modules() if hasattr(m, "auxiliary_loss")]
    terms = [t for t in terms if t is not None]
    return torch.stack([t.float() for t in terms]).sum() if terms else None


class TaskHooks:
    """What a task tells the loop; override what differs from these defaults."""

    collate_fn: Callable | None = None  # None: torch's default collate
    drop_last: bool = False  # drop an incomplete last micro-batch (and the sharding remainder)
    num_workers: int = 0
    find_unused_parameters: bool = False  # DDP: some parameters take no part in the loss
    select: str | None = None  # the score of :meth:`evaluate` that picks the best epoch

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        """The learning-rate factor per optimizer step (e.g. warmup + cosine)."""
        raise NotImplementedError

    def start_epoch(self, dataset: Dataset, epoch: int, seed: int) -> None:
        """Per-epoch set-up; ``seed`` is the epoch's seed (the same on every rank)."""
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def prepare(self, batch: Any, indices: list[int], device: torch.device) -> Any:
        """Move a collated batch to ``device`` and augment it (``indices``: its dataset rows)."""
        return [t.to(device, non_blocking=True) for t in batch]

    def count(self, batch: Any) -> Tensor | int:
        """How many terms the batch's loss sums (the weight of its share of the global mean)."""
        return len(batch[0])

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        """(the summed loss, statistics to sum over the epoch for :meth:`summary`)."""
        raise NotImplementedError

    def before_step(self, model: nn.Module, epoch: int) -> None:
        """Called with the accumulated gradients, before clipping and the optimizer step."""

    def summary(self, totals: dict[str, float]) -> dict[str, float]:
        """Extra fields of the epoch's record from the summed statistics (and ``count``)."""
        return {}

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        """Scores on the held-out split after an epoch (rank 0 only); None: no selection."""
        return None


def shard(n: int, seed: int, epoch: int, rank: int, world: int, drop_last: bool) -> list[int]:
    """This rank's share of epoch ``epoch``'s order of ``n`` samples (DistributedSampler-style:
    one permutation seeded by (seed, epoch), padded or cut to a multiple of ``world``)."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=generator).tolist()
    if drop_last:
        order = order[: n - n % world]
    elif n % world:
        total = math.ceil(n / world) * world
        order = (order * (total // n + 1))[:total]
    return order[rank::world]


def _micro_batches(indices: list[int], size: int, drop_last: bool) -> list[list[int]]:
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    if drop_last and batches and len(batches[-1]) < size:
        batches.pop()
    return batches


class _Run:
    """The state of one call of :func:`fit`."""

    def __init__(self, model, dataset, hooks, recipe, seed, ctx, desc) -> None:
        self.model, self.dataset, self.hooks, self.recipe = model, dataset, hooks, recipe
        self.seed, self.ctx, self.desc = seed, ctx, desc
        per_step = ctx.world_size * recipe.grad_accum
        if recipe.batch_size % per_step:
            raise ValueError(
                f"batch_size {recipe.batch_size} is not divisible by {ctx.world_size} processes x "
                f"{recipe.grad_accum} accumulation steps"
            )
        self.micro = recipe.batch_size // per_step
        self.replica = model
        if ctx.world_size > 1:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.replica = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=hooks.find_unused_parameters
            )
        batches = len(self.batches(0))
        if batches == 0:
            raise ValueError(f"{desc}: {len(dataset)} samples make no batch of {self.micro}")
        self.steps_per_epoch = math.ceil(batches / recipe.grad_accum)
        self.optimizer = hooks.optimizer(model)
        factor = hooks.lr_factor(self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.ema = None
        if recipe.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=recipe.ema)

    def batches(self, epoch: int) -> list[list[int]]:
        ctx, drop = self.ctx, self.hooks.drop_last
        indices = shard(len(self.dataset), self.seed, epoch, ctx.rank, ctx.world_size, drop)
        return _micro_batches(indices, self.micro, drop)

    def steps(self, epoch: int) -> Iterator[list[tuple[list[int], Any]]]:
        """The epoch's optimizer steps, each a list of (indices, collated micro-batch)."""
        batches = self.batches(epoch)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=self.hooks.collate_fn,
            num_workers=self.hooks.num_workers,
            pin_memory=self.ctx.device.type == "cuda",
        )
        group = []
        for indices, batch in zip(batches, loader, strict=True):
            group.append((indices, batch))
            if len(group) == self.recipe.grad_accum:
                yield group
                group = []
        if group:
            yield group

    def all_sum(self, values: Tensor) -> Tensor:
        if self.ctx.world_size > 1:
            dist.all_reduce(values)
        return values

    def step(self, epoch: int, group: list[tuple[list[int], Any]], totals: dict) -> None:
        """One optimizer step over the micro-batches of ``group``."""
        hooks, ctx = self.hooks, self.ctx
        batches = [hooks.prepare(batch, indices, ctx.device) for indices, batch in group]
        counts = torch.stack(
            [
                torch.as_tensor(hooks.count(b), dtype=torch.float64, device=ctx.device)
                for b in batches
            ]
        )
        count = self.all_sum(counts.sum())
        scale = ctx.world_size / float(count.clamp_min(1))
        for i, batch in enumerate(batches):
            last = i + 1 == len(batches)
            # gradients are all-reduced on the last micro-batch of each optimizer step only
            sync = nullcontext() if last or ctx.world_size == 1 else self.replica.no_sync()
            with sync:
                with torch.autocast(ctx.device.type, torch.bfloat16, enabled=self.recipe.bf16):
                    loss, stats = hooks.loss(self.replica, batch)
                    extra = auxiliary_loss(self.model)
                    if extra is not None:
                        loss = loss + extra * float(counts[i])
                        stats = {**stats, "auxiliary": extra.detach() * float(counts[i])}
                (loss * scale).backward()
            for key, value in {"loss": loss.detach(), **stats}.items():
                value = torch.as_tensor(value, dtype=torch.float64, device=ctx.device)
                totals[key] = totals.get(key, 0) + value
        totals["count"] = totals.get("count", 0) + counts.sum()
        hooks.before_step(self.model, epoch)
        if self.recipe.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step=self.scheduler.last_epoch)

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch; the record of its summed statistics over all processes."""
        self.replica.train()
        seed = epoch_seed(self.seed, epoch)
        seed_everything(seed * 1009 + self.ctx.rank)  # dropout, drop path, mixup, erasing
        self.hooks.start_epoch(self.dataset, epoch, seed)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, Tensor] = {}
        label = f"{self.desc} epoch {epoch + 1}/{self.recipe.epochs}"
        bar = tqdm(
            self.steps(epoch),
            desc=label,
            total=self.steps_per_epoch,
            leave=False,
            disable=not self.ctx.is_main,
        )
        for group in bar:
            self.step(epoch, group, totals)
        keys = sorted(totals)
        summed = self.all_sum(torch.stack([totals[k] for k in keys])).tolist()
        totals = dict(zip(keys, summed, strict=True))
        record = {"epoch": epoch + 1, "loss": totals["loss"] / max(totals["count"], 1)}
        record.update(self.hooks.summary(totals))
        if "auxiliary" in totals:  # the mean auxiliary term (already inside the loss)
            record["auxiliary"] = totals["auxiliary"] / max(totals["count"], 1)
        record["lr"] = self.scheduler.get_last_lr()[0]
        for group, lr in zip(
            self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True
        ):
            if "name" in group:
                record[f"lr_{group['name']}"] = lr
        return record

    def select(self, record: dict, epoch: int, best: float, path: str | Path | None) -> float:
        """Score the epoch on the held-out split (rank 0); write the best weights to ``path``.

        With an EMA the EMA is scored and kept: it is the model the run hands back (as timm's
        checkpoint saver does with ``--model-ema``)."""
        scored = self.ema.module if self.ema is not None else self.model
        scores = self.hooks.evaluate(scored) if self.ctx.is_main else None
        if scores is None:
            return best
        record.update({f"val_{k}": v for k, v in scores.items()})
        metric = self.hooks.select
        if metric is None or scores[metric] <= best:
            return best
        if path is not None:
            weights = {"model": scored.state_dict(), "epoch": epoch}
            save_checkpoint({**weights, "score": scores[metric], "metric": metric}, path)
        return scores[metric]


def _resume(
    run: _Run,
    checkpoint: str | Path | None,
    fingerprint: Fingerprint,
    restart: bool,
    best_checkpoint: str | Path | None,
) -> tuple[list[dict], int, dict]:
    """Resume ``run`` from ``checkpoint`` when it holds these inputs (the log says which way it
    went); a run that starts from scratch removes a best-epoch file left by earlier inputs."""

    def say(message: str) -> None:
        if run.ctx.is_main:
            print(f"{run.desc}: {message}", file=sys.stderr, flush=True)

    history, start, state = resume(
        checkpoint, fingerprint, run.model, run.optimizer, run.scheduler, restart, say
    )
    if run.ema is not None and state:
        run.ema.module.load_state_dict(state["ema"])
    if start == 0 and best_checkpoint is not None and run.ctx.is_main:
        Path(best_checkpoint).unlink(missing_ok=True)
    return history, start, state


def fit(
    model: nn.Module,
    dataset: Dataset,
    hooks: TaskHooks,
    recipe: TrainRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    desc: str = "train",
    stop_after_epochs: int | None = None,
    best_checkpoint: str | Path | None = None,
    fingerprint: Fingerprint | None = None,
    until_epoch: int | None = None,
) -> tuple[list[dict[str, float]], nn.Module | None]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.

    Launched by torchrun (WORLD_SIZE > 1) every process trains a DDP replica on its share.
    Returns the history (one record per epoch: loss, the task's statistics, learning rates and
    ``val_<score>`` with a held-out split) and the EMA model (None without one).  The best epoch
    by ``hooks.select`` is written to ``best_checkpoint`` (``{"model", "epoch", "score",
    "metric"}``).  ``stop_after_epochs`` ends the call early, as if killed (tests of resume);
    ``until_epoch`` ends it after that epoch of the recipe's schedule (the learning rate follows
    the whole schedule): a rung of successive halving, which a later call resumes.

    ``fingerprint`` binds the checkpoint to the run's inputs (:mod:`softeq.engine.fingerprint`):
    a checkpoint of other inputs starts the run over.  Without one, the checkpoint is bound to
    (recipe, seed) and a mismatch is refused.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the training set is empty")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    ctx = Distributed.from_env(device)
    model.to(ctx.device)
    run = _Run(model, dataset, hooks, recipe, seed, ctx, desc)
    restart = fingerprint is not None  # the caller named the inputs: start over on a change
    fingerprint = fingerprint or Fingerprint(recipe=recipe, seed=seed)
    history, start, state = _resume(run, checkpoint, fingerprint, restart, best_checkpoint)
    best = float(state.get("best", -math.inf)) if state else -math.inf
    for epoch in epochs_to_run(recipe.epochs, start, stop_after_epochs, until_epoch):
        record = run.epoch(epoch)
        best = run.select(record, epoch, best, best_checkpoint)
        history.append(record)
        if ctx.is_main:
            ema = run.ema.module.state_dict() if run.ema is not None else None
            save_state(
                checkpoint,
                fingerprint,
                epoch,
                history,
                model,
                run.optimizer,
                run.scheduler,
                world_size=ctx.world_size,
                ema=ema,
                best=best,
            )
        ctx.barrier()
    return history, (run.ema.module if run.ema is not None else None)
