"""Models from checkpoints: read with ``weights_only=True``, rebuilt from their config, loaded strictly.

One loader for both tasks: a checkpoint's ``config["model"]["arch"]`` names a segmentation network
(:data:`gald.models.segmentor.MODELS`) or a detector (:data:`gald.models.detector.DETECTORS`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from gald.config import HOST_ARCHS, check_choice
from gald.errors import CheckpointError

from .segmentor import MODELS, build_model
from .state_dict import check_state_dict, load_state_dict_checked, read_weights_file

__all__ = ["TASKS", "WrongTaskError", "checkpoint_task", "require_task", "load_state_dict_checked", "read_checkpoint",
           "model_from_checkpoint", "load_model"]

#: What a checkpoint can hold.
TASKS = ("segmentation", "detection")


class WrongTaskError(CheckpointError):
    """A checkpoint holds a model of another task than the caller needs (its message names both)."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``gald`` checkpoint (a plain dict) with ``weights_only=True`` on the CPU."""
    path = os.fspath(path)
    ckpt = read_weights_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path!r} is not a gald checkpoint: expected a dict with 'model' (state dict) and 'config', got {keys}"
        )
    return ckpt


def _model_config(ckpt: dict[str, Any], what: str) -> dict[str, Any]:
    config = ckpt.get("config", {})
    model_cfg = config.get("model", config) if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or "arch" not in model_cfg:
        raise CheckpointError(f"{what!r} has no model config ('config' → 'model' → 'arch'); cannot rebuild it")
    return dict(model_cfg)


def _task(model_cfg: dict[str, Any]) -> str:
    return "segmentation" if model_cfg["arch"] in MODELS or model_cfg["arch"] in HOST_ARCHS else "detection"


def checkpoint_task(ckpt: dict[str, Any], *, what: str = "checkpoint") -> str:
    """``"segmentation"`` or ``"detection"``: what an already-read checkpoint's ``arch`` builds."""
    return _task(_model_config(ckpt, what))


def require_task(ckpt: dict[str, Any], task: str, *, what: str = "checkpoint") -> None:
    """Raise :class:`WrongTaskError`, naming what the file holds, unless ``ckpt`` is a ``task`` model."""
    _require(_model_config(ckpt, what), task, what)


def _require(model_cfg: dict[str, Any], task: str, what: str) -> None:
    check_choice("task", task, TASKS)
    kind = _task(model_cfg)
    if kind != task:
        raise WrongTaskError(f"{what} holds a {kind} model ({model_cfg['arch']}), not a {task} model; {_USE[kind]}")


_USE = {"segmentation": "use python -m gald.evaluate / gald.predict / the app for it",
        "detection": "use python -m gald.predict_detection for it"}


def model_from_checkpoint(ckpt: dict[str, Any], *, what: str = "checkpoint", task: str | None = None) -> nn.Module:
    """Build the model an already-read checkpoint's ``config`` describes and load its weights (strict).

    Checkpoints are plain dicts ``{"model": state_dict, "config": {"model": {"arch": ...}}, ...}``;
    ``what`` names the source in errors. ``task`` (one of :data:`TASKS`), when given, is what the
    caller needs: a checkpoint of the other task raises :class:`WrongTaskError`.
    """
    model_cfg = _model_config(ckpt, what)
    if task is not None:
        _require(model_cfg, task, what)
    if _task(model_cfg) == "detection":
        from .detector import build_detector  # torchvision's detection models load only when needed

        return _build_checked(build_detector, {**model_cfg, "weights_backbone": None}, ckpt["model"], what)
    if model_cfg["arch"] in HOST_ARCHS:  # a host network with GALD plugged in (gald.models.hosts)
        return _build_checked(build_model, {**model_cfg, "pretrained_backbone": None}, ckpt["model"], what)
    if "ld_zero_init" in model_cfg:  # a development name of ld_init="zero"
        model_cfg["ld_init"] = "zero" if model_cfg.pop("ld_zero_init") else "default"
    # Checkpoints written before LD's design became an option had a normalised last conv, default init.
    model_cfg.setdefault("ld_last_norm", True)
    model_cfg.setdefault("ld_init", "default")
    # Recorded as model options until activation checkpointing became an engine lever (gald.engine.memory).
    for lever in ("activation_checkpointing", "checkpoint_policy"):
        model_cfg.pop(lever, None)
    # the weights come from the checkpoint
    return _build_checked(build_model, {**model_cfg, "pretrained_backbone": None}, ckpt["model"], what)


def _build_checked(build, config: dict[str, Any], state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Build on the meta device first and compare with the stored tensors' keys and shapes: a
    config that asks for a huge network next to small weights is refused before any allocation."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{what!r}: its 'model' entry is not a state dict ({type(state).__name__})")
    with torch.device("meta"):
        skeleton = build(config)
    check_state_dict(skeleton, state, what=what)
    model = build(config)
    load_state_dict_checked(model, state, what=what)
    return model


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu", task: str | None = None) -> nn.Module:
    """:func:`read_checkpoint` then :func:`model_from_checkpoint`: a segmentation model or a detector."""
    return model_from_checkpoint(read_checkpoint(path), what=os.fspath(path), task=task).to(map_location)
