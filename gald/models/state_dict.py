"""The one reader of weight files (``weights_only=True``, on the CPU), and strict state-dict
loading whose error names the missing, unexpected and mis-shaped keys."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

__all__ = ["read_weights_file", "load_state_dict_checked"]


def read_weights_file(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, after checking the file exists.

    Every weight file gald reads goes through here: checkpoints, the authors' weights, backbone
    files. ``weights_only=True`` refuses pickles that would run code.

    Raises:
        FileNotFoundError: naming ``what`` and the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _first(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" … (+{len(items) - n} more)" if len(items) > n else "")


def load_state_dict_checked(module: nn.Module, state: dict[str, torch.Tensor], *, what: str = "model") -> None:
    """``load_state_dict(strict=True)`` whose error lists the missing, unexpected and mis-shaped keys.

    Raises:
        RuntimeError: naming the first offending keys (and shapes) of each kind.
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
        raise RuntimeError(f"{what} checkpoint does not match the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
