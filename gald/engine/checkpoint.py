"""Checkpoints: plain dicts, written atomically, read with ``weights_only=True``.

A training checkpoint holds the model, optimiser, scheduler and grad-scaler states, the step, the
RNG states of ``random``, NumPy and torch (and CUDA), and the config as a plain dict — nothing that
needs unpickling of arbitrary classes.
"""

from __future__ import annotations

import logging
import os
import glob
import random
import re
import shutil
import socket
import tempfile
from typing import Any

import numpy as np
import torch

from gald.errors import CheckpointError, CheckpointWriteError, OutputExistsError
from gald.models.state_dict import load_state_dict_checked, read_weights_file

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "resume_training", "prepare_run_dir"]

#: What a finished or interrupted run leaves in its folder; ``--overwrite`` removes them first.
RUN_FILES = ("last.pt", "model.pt", "metrics.json", "metrics.csv", "curves.png")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous file intact. A failed write (a full disk shows up in
    ``torch.save`` only as "unexpected pos …") raises :class:`~gald.errors.CheckpointWriteError`
    with the file, the free space left and what was kept: commands stop with exit code 1.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    # the writer's host and pid in the name: prepare_run_dir removes it if that process died
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{socket.gethostname()}-{os.getpid()}-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, (OSError, RuntimeError)):  # torch reports a full disk as "unexpected pos …"
            free_mib = shutil.disk_usage(folder).free / 2**20
            kept = "the previous file is unchanged" if os.path.exists(path) else "nothing was written"
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({free_mib:.0f} MiB free in {folder}): {e}; {kept}"
            ) from e
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``."""
    return read_weights_file(path)


def rng_state() -> dict[str, Any]:
    """The RNG states of ``random``, NumPy and torch as plain containers and tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_training(
    resume: str | None, last_path: str, *, model: torch.nn.Module, optimizer, scheduler, scaler=None,
    rank: int = 0, world_size: int = 1, config: dict | None = None,
) -> tuple[int, dict, str | None]:
    """Restore a run from ``resume`` (a ``last.pt``; ``"auto"``: ``last_path`` when it exists).

    Loads the model (strictly), the optimiser, the scheduler, the GradScaler when given, and the RNG
    states — process ``rank``'s own when the checkpoint holds one per process of the same world size;
    the caller's data stream is a function of the step, so it continues exactly. With ``config``
    (the run's ``to_dict()``), settings that differ from the checkpoint's are logged as a warning
    (continuing with, say, more iterations is legitimate; continuing another experiment is not).
    Returns ``(step, history, path)``, or ``(0, empty history, None)`` when there is nothing to resume.
    """
    path = last_path if resume == "auto" and os.path.isfile(last_path) else resume
    if not path or path == "auto":
        return 0, {"train": [], "val": []}, None
    state = load_checkpoint(path)
    _check_training_state(state, path)
    recorded = state.get("config", {}).get("train") or {}
    if config is not None and recorded:
        run_keys = {"resume", "overwrite", "stop_at", "workers", "device", "dist_timeout", "output_dir"}
        changed = sorted(k for k in config if k not in run_keys and k in recorded and recorded[k] != config[k])
        if changed:
            log.warning("resuming %s with settings that differ from its own: %s", path,
                        ", ".join(f"{k} {recorded[k]!r} -> {config[k]!r}" for k in changed[:8]))
    load_state_dict_checked(model, state["model"], what=path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "scaler" in state:  # detection checkpoints before 0.2.1 have none
        scaler.load_state_dict(state["scaler"])
    ranks = state.get("rng_ranks")
    set_rng_state(ranks[rank] if ranks is not None and len(ranks) == world_size else state["rng"])
    return state["step"], state["history"], path


def _check_training_state(state: dict[str, Any], path: str) -> None:
    missing = [k for k in ("model", "optimizer", "scheduler", "step", "rng", "history") if k not in state]
    if missing:
        raise CheckpointError(
            f"--resume {path!r} is not a training state (it lacks {', '.join(missing)}; a model.pt holds weights "
            f"only): resume from the run's last.pt, or start from these weights with --init-from {path}"
        )


def prepare_run_dir(run_dir: str, *, resume: str | None, overwrite: bool, main: bool = True) -> None:
    """Check that a run may write to ``run_dir`` before anything is written, and tidy it.

    A ``resume`` file must be a training state (``last.pt``). A folder that holds a checkpoint is
    never reused implicitly: it takes ``resume`` (continue it) or ``overwrite`` (its
    :data:`RUN_FILES` are removed first, by the ``main`` process). Temp files of checkpoint writes
    whose process has exited on this host (a kill during a write) are removed; those of live
    processes, e.g. other DDP ranks, are kept.

    Raises:
        OutputExistsError: naming the folder, its step and the three ways on.
    """
    if resume not in (None, "auto"):  # a file to resume is checked before the run writes anything
        _check_training_state(load_checkpoint(resume), resume)
    held = [name for name in ("last.pt", "model.pt") if os.path.isfile(os.path.join(run_dir, name))]
    if held and resume is None and not overwrite:
        step = ""
        if "last.pt" in held:
            try:
                step = f" at step {load_checkpoint(os.path.join(run_dir, 'last.pt')).get('step')}"
            except Exception:  # the refusal must not depend on the old file being readable
                step = ""
        raise OutputExistsError(
            f"{run_dir} already holds a run ({' and '.join(held)}{step}); continue it with --resume auto, "
            "replace it with --overwrite true, or choose another --name"
        )
    if not main:
        return
    if overwrite and resume is None:
        events = glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*"))  # TensorBoard's
        for path in [os.path.join(run_dir, name) for name in RUN_FILES] + events:
            if os.path.isfile(path):
                os.remove(path)
                log.info("--overwrite: removed %s", path)
    host = socket.gethostname()
    for tmp in glob.glob(os.path.join(glob.escape(run_dir), ".tmp-*.pt")):
        m = re.fullmatch(r"\.tmp-(.+)-(\d+)-[^-]+\.pt", os.path.basename(tmp))
        if m is None or m.group(1) != host or _alive(int(m.group(2))):
            continue
        os.remove(tmp)
        log.info("removed %s, left by an interrupted checkpoint write (process %s)", tmp, m.group(2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
