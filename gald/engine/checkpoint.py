"""Checkpoints: plain dicts, written atomically, read with ``weights_only=True``.

A training checkpoint holds the model, optimiser, scheduler and grad-scaler states, the step, the
RNG states of ``random``, NumPy and torch (and CUDA), and the config as a plain dict — nothing that
needs unpickling of arbitrary classes.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from typing import Any

import numpy as np
import torch

from gald.models.state_dict import load_state_dict_checked, read_weights_file

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous file intact. A failed write is logged with the file and
    the free space left: a full disk shows up in ``torch.save`` only as "unexpected pos …".
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, Exception):
            free_mib = shutil.disk_usage(folder).free / 2**20
            log.error("could not write checkpoint %s (%.0f MiB free in %s): %s", path, free_mib, folder, e)
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
    rank: int = 0, world_size: int = 1,
) -> tuple[int, dict, str | None]:
    """Restore a run from ``resume`` (a ``last.pt``; ``"auto"``: ``last_path`` when it exists).

    Loads the model (strictly), the optimiser, the scheduler, the GradScaler when given, and the RNG
    states — process ``rank``'s own when the checkpoint holds one per process of the same world size;
    the caller's data stream is a function of the step, so it continues exactly. Returns
    ``(step, history, path)``, or ``(0, empty history, None)`` when there is nothing to resume.
    """
    path = last_path if resume == "auto" and os.path.isfile(last_path) else resume
    if not path or path == "auto":
        return 0, {"train": [], "val": []}, None
    state = load_checkpoint(path)
    load_state_dict_checked(model, state["model"], what=path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "scaler" in state:  # detection checkpoints before 0.2.0 have none
        scaler.load_state_dict(state["scaler"])
    ranks = state.get("rng_ranks")
    set_rng_state(ranks[rank] if ranks is not None and len(ranks) == world_size else state["rng"])
    return state["step"], state["history"], path
