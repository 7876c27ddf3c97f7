"""Models from checkpoints: read with ``weights_only=True``, rebuilt from their config, loaded strictly."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .segmentor import build_model
from .state_dict import load_state_dict_checked

__all__ = ["load_state_dict_checked", "read_checkpoint", "model_from_checkpoint", "load_model"]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``gald`` checkpoint (a plain dict) with ``weights_only=True`` on the CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path!r} is not a gald checkpoint: expected a dict with 'model' (state dict) and 'config', got {keys}"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], *, what: str = "checkpoint") -> nn.Module:
    """Build the model an already-read checkpoint's ``config`` describes and load its weights (strict).

    Checkpoints are plain dicts ``{"model": state_dict, "config": {"model": {...}}, ...}``; ``what``
    names the source in errors.
    """
    config = ckpt.get("config", {})
    model_cfg = config.get("model", config) if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or "arch" not in model_cfg:
        raise ValueError(f"{what!r} has no model config ('config' → 'model' → 'arch'); cannot rebuild it")
    model_cfg = dict(model_cfg)
    if "ld_zero_init" in model_cfg:  # a development name of ld_init="zero"
        model_cfg["ld_init"] = "zero" if model_cfg.pop("ld_zero_init") else "default"
    # Checkpoints written before LD's design became an option had a normalised last conv, default init.
    model_cfg.setdefault("ld_last_norm", True)
    model_cfg.setdefault("ld_init", "default")
    model = build_model({**model_cfg, "pretrained_backbone": None})  # weights come from the checkpoint
    load_state_dict_checked(model, ckpt["model"], what=what)
    return model


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """:func:`read_checkpoint` then :func:`model_from_checkpoint`."""
    return model_from_checkpoint(read_checkpoint(path), what=os.fspath(path)).to(map_location)
