"""Pieces of the training loop shared by segmentation (:mod:`gald.engine.segmentation`) and detection
(:mod:`gald.engine.detection`) training."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

import torch
from torch import nn

from gald.engine.checkpoint import rng_state
from gald.engine.distributed import all_gather_object
from gald.errors import ConfigError, NonFiniteStop

__all__ = ["LossMeter", "non_finite_stop", "check_world_size", "check_finite_state", "training_state"]


class LossMeter:
    """Running means of the per-step loss terms, read (and reset) once per log interval."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0

    def update(self, losses: Mapping[str, float]) -> None:
        for k, v in losses.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1

    def pop(self) -> dict[str, float]:
        """The means since the last ``pop``; the meter starts over."""
        means = {k: v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return means


def non_finite_stop(err: Exception, step: int, lr: float, last_path: str) -> NonFiniteStop:
    """The error that stops training at a non-finite loss or model state (``step`` counted from 1);
    the last checkpoint was written before this step and checked finite, so it is good and says so."""
    return NonFiniteStop(
        f"stopping at step {step}: {err}; lr={lr:.3g}. The last good checkpoint ({last_path}) was left untouched."
    )


def check_world_size(global_batch: int, world_size: int | None = None) -> int:
    """The world size (``torchrun``'s ``WORLD_SIZE`` unless given), or one line naming both numbers
    when the global batch cannot be split evenly over the processes: checked before any process
    joins the group or trains."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else int(world_size)
    if world > global_batch:
        raise ConfigError(f"{world} processes (--nproc_per_node × nodes) for a global batch_size of {global_batch}: "
                         "each process needs at least one image; use at most batch_size processes")
    if global_batch % world:
        raise ConfigError(f"global batch_size {global_batch} is not divisible by the world size {world}")
    return world


def check_finite_state(model: nn.Module, *, every_process: bool = False) -> None:
    """Raise ``FloatingPointError`` naming the first parameter or buffer (e.g. a BatchNorm running
    variance) that holds a NaN or an infinity: such a state is never written as a checkpoint.

    ``every_process`` (a collective under DDP): the processes share what they found and all raise
    together, so that none waits in the next collective for one that stopped (BatchNorm buffers
    differ per process without SyncBN).
    """
    problem = next((f"non-finite model state: {name} holds NaN or inf"
                    for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
                    if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if every_process:
        problem = next((p for p in all_gather_object(problem) if p is not None), None)
    if problem is not None:
        raise FloatingPointError(problem)


def training_state(model: nn.Module, optimizer, scheduler, scaler, step: int, cfg, history: dict,
                   rng_ranks: list | None = None) -> dict:
    """The ``last.pt`` of both tasks: everything :func:`gald.engine.checkpoint.resume_training`
    restores (model, optimiser, scheduler, GradScaler, RNG states), the step, the config and the
    history. ``model`` is the bare model (not its DDP wrapper). ``rng_ranks``: every process's RNG
    states under DDP (``gald.engine.distributed.all_gather_object(rng_state())``), so that each
    resumes its own (dropout draws from them)."""
    extra = {"rng_ranks": rng_ranks} if rng_ranks is not None and len(rng_ranks) > 1 else {}
    return {**extra,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "rng": rng_state(),
        "config": {"train": cfg.to_dict(), "model": model.config},
        "history": history,
        "format_version": 1,
    }
