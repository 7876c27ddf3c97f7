"""The one reader of weight files (``weights_only=True``, on the CPU), and strict state-dict
loading whose error names the missing, unexpected and mis-shaped keys."""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
from torch import nn

from gald.errors import CheckpointError, InputFileError, MissingFileError

__all__ = ["read_weights_file", "load_state_dict_checked", "check_state_dict", "StateDictMismatchError"]


class StateDictMismatchError(CheckpointError, RuntimeError):
    """Weights whose keys or shapes do not match the model (a ``RuntimeError``, as torch raises)."""


def read_weights_file(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, after checking the file exists.

    Every weight file gald reads goes through here: checkpoints, the authors' weights, backbone
    files. ``weights_only=True`` refuses pickles that would run code.

    Raises:
        InputFileError: naming ``what`` and the path (missing, a folder, unreadable).
        CheckpointError: naming the path and what it is instead: empty, truncated or not a
            weights file, or a pickle that needs code to load.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{what} not found: {path!r}")
    if not os.path.isfile(path):
        raise InputFileError(f"{what} {path!r} is not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{what} {path!r} is empty (0 bytes): an interrupted download or copy?")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise InputFileError(f"cannot read {what} {path!r}: {err.strerror or err}") from None
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save's zip archive, or a legacy pickle
        raise CheckpointError(f"{what} {path!r} is not a PyTorch weights file ({size} bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Unsupported class" in str(err):
            raise CheckpointError(f"{what} {path!r} holds objects other than tensors and plain containers, which gald "
                                  "does not load (weights_only=True); save a state dict instead") from None
        raise CheckpointError(f"{what} {path!r} is truncated or corrupt ({size} bytes)") from None
    except (EOFError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not any(s in str(err) for s in ("zip", "archive", "PytorchStreamReader", "central directory")):
            raise
        raise CheckpointError(f"{what} {path!r} is truncated or corrupt ({size} bytes; {type(err).__name__})") from None
    except OSError as err:
        raise InputFileError(f"cannot read {what} {path!r}: {err.strerror or err}") from None


def _first(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" … (+{len(items) - n} more)" if len(items) > n else "")


def load_state_dict_checked(module: nn.Module, state: dict[str, torch.Tensor], *, what: str = "model") -> None:
    """``load_state_dict(strict=True)`` whose error lists the missing, unexpected and mis-shaped keys.

    Raises:
        StateDictMismatchError: naming the first offending keys (and shapes) of each kind.
    """
    check_state_dict(module, state, what=what)
    module.load_state_dict(state, strict=True)


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], *, what: str = "model") -> None:
    """Compare ``state``'s keys and shapes with ``module``'s, without loading anything: ``module``
    may live on the meta device (a checkpoint is sized before any memory is allocated).

    Raises:
        StateDictMismatchError: naming the first offending keys (and shapes) of each kind.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        if mis_shaped:
            parts.append(f"{len(mis_shaped)} keys with the wrong shape: {_first(mis_shaped)}")
        raise StateDictMismatchError(f"{what} checkpoint does not match the model: " + "; ".join(parts))
