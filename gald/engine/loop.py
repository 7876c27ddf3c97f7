"""Pieces of the training loop shared by segmentation (:mod:`gald.engine.segmentation`) and detection
(:mod:`gald.engine.detection`) training."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Mapping

import torch
import yaml
from torch import nn

from gald.engine import checkpoint as ckpt
from gald.engine import distributed as dist
from gald.engine.checkpoint import rng_state
from gald.engine.distributed import all_gather_object
from gald.engine.runtime import resolve_device, run_logging, seed_everything
from gald.errors import ConfigError, GaldError, NonFiniteStop

__all__ = [
    "LossMeter", "non_finite_stop", "check_world_size", "check_finite_state", "training_state", "prepare_run",
    "open_run", "StartGuard", "resume_run", "save_run_state",
]


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


# The steps both fit() functions take, in this order: prepare_run (before any process joins the
# group), open_run, resume_run, the guard's disarm before the first step, then save_run_state at
# every checkpoint.


def prepare_run(cfg, build: Callable[[], nn.Module] | None = None):
    """Checks and tidying before any process joins the group or writes: the device, the model the
    config describes (``build`` runs on the meta device: no memory, milliseconds), the world size
    against the global batch, the run folder (:func:`gald.engine.checkpoint.prepare_run_dir`), and,
    under a torchrun restart, ``resume="auto"``: every worker continues from this run's ``last.pt``
    (also over a ``--resume`` file given at the first start, which would lose the progress since).
    Returns the config to train with.

    Raises:
        ConfigError: a device this machine lacks, or a model the builders refuse (a ``ValueError``
            of a builder, e.g. channels a GA module cannot split, is reported as this config's).
    """
    resolve_device(cfg.device)
    try:
        if build is not None:
            with torch.device("meta"):
                build()
    except GaldError:
        raise
    except ValueError as err:
        raise ConfigError(f"the model of this config cannot be built: {err}") from None
    check_world_size(cfg.batch_size)
    restarted = dist.elastic_restart_count() > 0
    if restarted and (cfg.resume is None or os.path.isfile(os.path.join(cfg.run_dir, "last.pt"))):
        cfg = dataclasses.replace(cfg, resume="auto")
    ckpt.prepare_run_dir(cfg.run_dir, resume=cfg.resume, overwrite=cfg.overwrite,
                         main=int(os.environ.get("RANK", "0")) == 0)
    return cfg


def open_run(cfg, cleanup: contextlib.ExitStack) -> tuple[torch.device, bool, int, StartGuard]:
    """Join the process group, start the run log and ``config.yaml`` (rank 0), seed this process.
    Returns ``(device, distributed, world size, guard)``: call ``guard.disarm()`` when the data,
    model and resume state are ready, just before the first step (see :class:`StartGuard`)."""
    device = resolve_device(cfg.device)
    distributed = dist.init_distributed(device, timeout=cfg.dist_timeout)
    world = check_world_size(cfg.batch_size, dist.world_size())
    guard = StartGuard(cfg.run_dir)
    if dist.is_main():
        cleanup.push(guard)  # runs after the log file is closed
        cleanup.enter_context(run_logging(cfg.run_dir))
        with open(os.path.join(cfg.run_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    seed_everything(cfg.seed + dist.rank())
    return device, distributed, world, guard


class StartGuard:
    """Until :meth:`disarm`, an exit callback that removes what this start wrote (``config.yaml``,
    ``train.log``, a new run folder and its new parents) when your input stopped it: a
    :class:`~gald.errors.GaldError` found while the data, the model or the resume state are built
    (a missing dataset folder, a broken validation image, ``--init-from`` weights that do not fit).
    A refused start leaves no new folder behind; files that were there before are kept. Once the
    training loop starts, ``train.log`` is the run's record and stays, whatever happens."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.armed = True
        self._before = {n for n in ("config.yaml", "train.log") if os.path.exists(os.path.join(run_dir, n))}
        self._new_folders = []  # the run folder and any parents this start creates, deepest first
        folder = os.path.abspath(run_dir)
        while not os.path.isdir(folder) and folder != os.path.dirname(folder):
            self._new_folders.append(folder)
            folder = os.path.dirname(folder)

    def disarm(self) -> None:
        self.armed = False

    def __call__(self, exc_type, exc, tb) -> bool:
        if not self.armed or exc_type is None or not issubclass(exc_type, GaldError):
            return False
        for name in {"config.yaml", "train.log"} - self._before:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.run_dir, name))
        for folder in self._new_folders:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: something else is in it, keep it
                break
        return False  # the error goes on to the command's one line


def resume_run(cfg, last_path: str, *, model: nn.Module, optimizer, scheduler, scaler, distributed: bool, world: int,
               log: logging.Logger) -> tuple[int, dict]:
    """:func:`gald.engine.checkpoint.resume_training` for this process, then a check that every
    process resumed from the same step. Returns ``(step, history)``."""
    start, history, resumed = ckpt.resume_training(
        cfg.resume, last_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        rank=dist.rank(), world_size=world, config=cfg.to_dict(),
    )
    if distributed:
        starts = all_gather_object(start)
        if len(set(starts)) > 1:
            raise ConfigError(f"the processes resumed from different steps {starts}: {cfg.run_dir} must be on a "
                              "filesystem every node shares (rank 0 alone writes last.pt)")
    if resumed:
        restart = dist.elastic_restart_count()
        log.info("resumed from %s at step %d%s", resumed, start, f" (torchrun restart {restart})" if restart else "")
    return start, history


def save_run_state(net: nn.Module, optimizer, scheduler, scaler, step: int, cfg, history: dict, last_path: str, *,
                   distributed: bool) -> None:
    """Write ``last.pt`` at ``step`` (rank 0), after every process checked its model state finite
    (a NaN or infinite BatchNorm statistic can follow a finite loss) and shared its RNG states."""
    try:
        check_finite_state(net, every_process=distributed)
    except FloatingPointError as err:
        raise non_finite_stop(err, step, scheduler.get_last_lr()[0], last_path) from None
    rng_ranks = all_gather_object(rng_state()) if distributed else None
    if dist.is_main():
        state = training_state(net, optimizer, scheduler, scaler, step, cfg, history, rng_ranks)
        ckpt.save_checkpoint(state, last_path)
