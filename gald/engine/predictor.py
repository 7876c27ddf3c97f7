"""One :class:`Predictor` for the command line, the app and the notebooks: a loaded segmentation model
and what it takes to turn an RGB image into a prediction and to say what the model is.

* :meth:`Predictor.from_checkpoint` — any checkpoint ``gald.train`` or ``gald.convert_official`` writes.
* :func:`load_predictor` — also the authors' GALD-Net ``.pth`` (converted on load) and an untrained
  model (what ``python -m gald.app`` accepts).
* :func:`default_checkpoint` — the model shipped in ``gald/assets`` (trained on the embedded benchmark).
* :func:`load_detector` — a detector and its class names from a detection run's ``model.pt``.

Checkpoints are read once, with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gald.config import BACKENDS, check_choice
from gald.data import synthetic
from gald.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, TRAIN_TO_LABEL
from gald.data.transforms import ToTensorNormalize
from gald.deploy.fuse import optimize_for_inference
from gald.deploy.ort import OnnxRuntimeModel, onnxruntime_model
from gald.deploy.official import load_official, official_arch
from gald.engine.checkpoint import load_checkpoint
from gald.engine.inference import (
    TestProtocol,
    checkpoint_normalization,
    checkpoint_protocol,
    infer,
    training_protocol,
)
from gald.errors import CheckpointError, ConfigError, MissingFileError
from gald.models import gald_tiny, model_from_checkpoint, read_checkpoint, require_task
from gald.models.inspection import gald_block, inspect, num_classes
from gald.models.state_dict import read_weights_file
from gald.viz.overlays import default_palette

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHECKPOINT", "Predictor", "default_checkpoint", "load_predictor", "load_detector", "whole_pass_gib",
]

DEFAULT_CHECKPOINT = "gald-cgnl_tiny-d2_synthetic-v2-128x256.pt"

# peak memory of a whole-image pass per pixel, measured for the shipped model (5.60 GiB on 40 MP,
# benchmarks/results/predict_memory.json); larger models need more
_WHOLE_BYTES_PER_PIXEL = 5.60 * 2**30 / 40_000_000


def whole_pass_gib(pixels: int) -> float:
    """About how much memory (GiB) one whole-image pass over ``pixels`` pixels needs, at the shipped
    model's measured rate: what a refusal of a too large image quotes."""
    return pixels * _WHOLE_BYTES_PER_PIXEL / 2**30


def default_checkpoint() -> Path:
    """Path of the checkpoint shipped with the package (trained on the embedded benchmark).

    Raises:
        FileNotFoundError: if the package was installed without its data files.
    """
    path = Path(__file__).resolve().parents[1] / "assets" / DEFAULT_CHECKPOINT
    if not path.is_file():
        raise MissingFileError(
            f"the shipped checkpoint {path} is missing: reinstall gald with its package data "
            f"(pip install -e .), or pass --checkpoint PATH (e.g. runs/<name>/model.pt from python -m gald.train)"
        )
    return path


@dataclasses.dataclass
class Predictor:
    """A loaded segmentation model, how to run it, and what it is.

    Args:
        model: the network, in eval mode.
        classes: class names by train id, one per output channel.
        palette: one RGB colour per class.
        kind: ``"synthetic"`` (trained on the embedded benchmark), ``"trained"``, ``"official"``
            (the authors' weights) or ``"untrained"`` (random weights).
        source: where the weights came from (a path, or a description).
        train_config: the training configuration the checkpoint records (may be empty).
        metrics: the validation metrics the checkpoint records (may be empty).
        normalization: ``"imagenet"`` or ``"bgr_mean"`` (the authors' preprocessing).
        ld_effect: the measured LD effect (:func:`gald.metrics.ld_effect.ld_effect_summary`), from
            the checkpoint or its model card (``<checkpoint>.json``); empty when never measured.
        protocol: the test protocol of :meth:`predict` (from a checkpoint: the one it records).
        device: where the model runs.
        train_to_label: train id → dataset label id (test-server label ids), if the dataset has them.
        runner: what :meth:`predict` runs instead of ``model``: the optimized copy of
            ``from_checkpoint(nnpack=True)``, or ONNX Runtime (:meth:`use_backend`); ``model`` itself
            keeps serving the LD masks, stages and attribution.
    """

    model: nn.Module
    classes: list[str]
    palette: list[tuple[int, int, int]]
    kind: str = "trained"
    source: str = ""
    train_config: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)
    normalization: str = "imagenet"
    ld_effect: dict = dataclasses.field(default_factory=dict)
    protocol: TestProtocol = dataclasses.field(default_factory=TestProtocol)
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    train_to_label: list[int] | None = None
    runner: nn.Module | None = None

    @property
    def backend(self) -> str:
        """``"torch"``, or ``"onnxruntime"`` once :meth:`use_backend` switched it."""
        return "onnxruntime" if isinstance(self.runner, OnnxRuntimeModel) else "torch"

    def use_backend(self, backend: str, *, threads: int | None = None) -> Predictor:
        """Run :meth:`predict` with ``backend`` (one of :data:`gald.config.BACKENDS`): ``"onnxruntime"``
        exports the model once and runs its ONNX graph (:func:`gald.deploy.ort.onnxruntime_model`).
        Returns ``self``.

        Raises:
            UnknownChoiceError: not a backend; ConfigError: onnxruntime is missing, or a GPU model.
        """
        check_choice("backend", backend, BACKENDS)
        if backend == "torch":
            if self.backend == "onnxruntime":
                self.runner = None
        elif self.backend != "onnxruntime":
            if self.device.type != "cpu":
                raise ConfigError("--backend onnxruntime runs on the CPU: use --device cpu")
            self.runner = onnxruntime_model(self.model, threads=threads)
        return self

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        protocol: TestProtocol | None = None,
        normalization: str | None = None,
        device: str = "cpu",
        ckpt: dict | None = None,
        nnpack: bool = False,
    ) -> Predictor:
        """Load a ``gald`` checkpoint ``path`` (or use ``ckpt``, its content when already read).

        Args:
            protocol: the test protocol (default: the checkpoint's, :func:`checkpoint_protocol`).
            normalization: override the input normalisation the checkpoint records.
            device: torch device of the model.
            ckpt: the checkpoint's content, if the caller has read it already.
            nnpack: predict with the fastest in-process CPU path, an optimized copy of the model
                (:func:`gald.deploy.fuse.optimize_for_inference`: BatchNorm folded, channels-last,
                the wide 3×3 convolutions on NNPACK) as :attr:`runner`.

        Raises:
            ValueError: the checkpoint's class names do not match its classifier.
        """
        ckpt = read_checkpoint(path) if ckpt is None else ckpt
        model = model_from_checkpoint(ckpt, what=str(path), task="segmentation").to(device).eval()
        k = num_classes(model)
        classes = [str(c) for c in ckpt.get("classes") or []] or [f"class_{i}" for i in range(k)]
        if len(classes) != k:
            raise ValueError(f"{path}: {len(classes)} class names for a {k}-class model")
        train_cfg = dict(ckpt.get("config", {}).get("train", {}))
        dataset = train_cfg.get("dataset")  # None: converted official weights
        if "source" in ckpt:
            kind = "official"
        elif str(dataset or "").startswith("synthetic"):
            kind = "synthetic"
        else:
            kind = "trained"
        train_to_label = None
        if dataset in ("synthetic", "synthetic_disk"):
            train_to_label = list(synthetic.LABEL_IDS)
        elif k == 19 and dataset in (None, "cityscapes", "mapillary"):
            train_to_label = list(TRAIN_TO_LABEL)
        return cls(
            model=model, classes=classes, palette=_palette_for(classes, ckpt.get("palette")), kind=kind,
            source=str(path), train_config=train_cfg, metrics=dict(ckpt.get("metrics") or {}),
            normalization=checkpoint_normalization(ckpt, normalization),
            ld_effect=dict(ckpt.get("ld_effect") or _card(Path(path)).get("ld_effect") or {}),
            protocol=protocol or checkpoint_protocol(ckpt), device=torch.device(device), train_to_label=train_to_label,
            runner=optimize_for_inference(model, nnpack=True) if nnpack else None,
        )  # fmt: skip

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def source_name(self) -> str:
        """:attr:`source` without the machine's directories: what a page may show its visitors."""
        path = Path(self.source)
        if not path.is_absolute() and os.sep not in self.source:
            return self.source  # a description ("random initialisation …") or a bare file name
        if path.name == DEFAULT_CHECKPOINT and path.parent.name == "assets":
            return f"{DEFAULT_CHECKPOINT} (shipped with gald)"
        return path.name

    @property
    def bgr_mean(self) -> bool:
        """Whether inputs are normalised as the authors do (BGR mean subtraction)."""
        return self.normalization == "bgr_mean"

    @property
    def ld_channels(self) -> int:
        """Channels of the LD mask ``M`` (0 if the model has no LD)."""
        block = gald_block(self.model)
        return block.channels if block.ld is not None else 0  # M is depth-wise: one channel per feature channel

    @property
    def has_ga(self) -> bool:
        return gald_block(self.model).ga is not None

    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB → normalised (1, 3, H, W) on the model's device."""
        return ToTensorNormalize(bgr_mean=self.bgr_mean).image(image)[None].to(self.device)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Train-id prediction at the image's resolution, under :attr:`protocol`.

        Shape:
            (H, W, 3) uint8 -> (H, W) int64
        """
        runner = self.model if self.runner is None else self.runner
        return infer(runner, self.tensor(image), self.protocol)["out"][0].argmax(0).cpu().numpy()

    @torch.inference_mode()
    def ld_mask(self, image: np.ndarray, max_side: int | None = None) -> torch.Tensor | None:
        """The LD mask ``M`` of one whole-image pass (image first shrunk to ``max_side``), or ``None``.

        Shape:
            (H, W, 3) uint8 -> (C, h, w) float32 in [0, 1] (h, w: the head's resolution)
        """
        x = self.tensor(image)
        if max_side is not None and max(x.shape[-2:]) > max_side:
            s = max_side / max(x.shape[-2:])
            x = F.interpolate(x, size=(max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s))), mode="bilinear")
        m = inspect(self.model, x).get("M")
        return None if m is None else m[0].float().cpu()


def _palette_for(classes: Sequence[str], palette: Any) -> list[tuple[int, int, int]]:
    if isinstance(palette, (list, tuple)) and len(palette) >= len(classes):
        return [tuple(int(c) for c in p[:3]) for p in palette[: len(classes)]]  # type: ignore[misc]
    return default_palette(len(classes))


def _card(path: Path) -> dict:
    """The model card beside a checkpoint (``X.json`` for ``X.pt``), or ``{}``."""
    card = path.with_suffix(".json")
    if not card.is_file():
        return {}
    try:
        return json.loads(card.read_text())
    except (OSError, ValueError):
        log.warning("ignoring unreadable model card %s", card)
        return {}


def load_predictor(
    checkpoint: str | os.PathLike | None = None,
    *,
    untrained: bool = False,
    device: str = "cpu",
) -> Predictor:
    """Load a model once, with ``weights_only=True``: what ``python -m gald.app`` serves.

    Args:
        checkpoint: a ``gald`` checkpoint (``model.pt`` of ``gald.train``, or the output of
            ``gald.convert_official``), or the authors' GALD-Net ``.pth`` state dict; ``None`` =
            :func:`default_checkpoint`.
        untrained: ignore ``checkpoint`` and build the shipped architecture with random weights
            (the page then says the model is untrained).
        device: torch device of the model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither a gald checkpoint nor a GALD-Net state dict.
    """
    if untrained:
        torch.manual_seed(0)
        model = gald_tiny(
            num_classes=synthetic.NUM_CLASSES, depths=(1, 1, 2, 1), widths=(16, 32, 64, 96), head_channels=64,
            aux_channels=64, stage_classifiers=True,
        )
        return Predictor(model.to(device).eval(), list(synthetic.CLASSES), list(synthetic.PALETTE), "untrained",
                         "random initialisation (seed 0)", device=torch.device(device))
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path} (pass --checkpoint PATH to a model.pt from gald.train)")
    raw = read_weights_file(path)
    if isinstance(raw, dict) and "model" in raw and "config" in raw:
        return Predictor.from_checkpoint(path, ckpt=raw, device=device)  # read once above, with weights_only=True
    state = raw
    if isinstance(raw, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
    if isinstance(state, dict) and any(k.removeprefix("module.").startswith("head.a2block.") for k in state):
        model = load_official(path, arch=official_arch(state))
        nc = model.num_classes
        classes = list(CITYSCAPES_CLASSES) if nc == 19 else [f"class_{i}" for i in range(nc)]
        palette = list(CITYSCAPES_PALETTE) if nc == 19 else default_palette(nc)
        return Predictor(model.to(device).eval(), classes, palette, "official", str(path), normalization="bgr_mean",
                         protocol=training_protocol(None, None),  # the paper's 769 windows
                         device=torch.device(device), train_to_label=list(TRAIN_TO_LABEL) if nc == 19 else None)
    keys = sorted(raw)[:6] if isinstance(raw, dict) else type(raw).__name__
    raise ValueError(
        f"{path} is neither a gald checkpoint (a dict with 'model' and 'config', as gald.train writes) nor "
        f"the authors' GALD-Net state dict (keys 'head.a2block.…'); found {keys}"
    )


def load_detector(path: str | os.PathLike) -> tuple[nn.Module, list[str]]:
    """The detector and its class names from a ``model.pt`` written by ``gald.train --task detection``."""
    state = load_checkpoint(path)
    try:
        state["config"]["model"]["arch"]
        require_task(state, "detection", what=os.fspath(path))  # a segmentation model.pt: say so
        classes = list(state["classes"])
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{os.fspath(path)}: not a detection model.pt (needs 'config'/'model' and 'classes'); "
            "use the model.pt of a `python -m gald.train --task detection` run"
        ) from None
    return model_from_checkpoint(state, what=os.fspath(path), task="detection").eval(), classes
