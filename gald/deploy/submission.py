"""Cityscapes test-server submission files: full-resolution labelId PNGs named after the inputs.

The benchmark server (and ``cityscapesscripts``' ``evalPixelLevelSemanticLabeling``) matches a
prediction to its image by the prefix ``{city}_{seq}_{frame}`` and reads Cityscapes *labelIds*, not
train ids; each file is a single-channel 8-bit PNG at the image's resolution. Files are written as
``{out_dir}/{city}/{image stem}.png``, e.g. ``berlin/berlin_000000_000019_leftImg8bit.png``; zip
``out_dir`` to submit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.data.cityscapes import TRAIN_TO_LABEL
from gald.files import save_png

__all__ = ["train_ids_to_label_ids", "write_label_png", "submission_path"]


def train_ids_to_label_ids(pred: np.ndarray | torch.Tensor, train_to_label: Sequence[int] = TRAIN_TO_LABEL) -> np.ndarray:
    """Map train ids (0..K-1) to labelIds; anything else (e.g. 255) becomes 0 (``unlabeled``).

    Shape:
        (H, W) int -> (H, W) uint8
    """
    pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    lut = np.zeros(256, np.uint8)
    lut[: len(train_to_label)] = train_to_label
    if pred.size and (pred.min() < 0 or pred.max() > 255):
        raise ValueError(f"train ids must lie in 0..255, got {pred.min()}..{pred.max()}")
    return lut[pred.astype(np.int64)]


def submission_path(image_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``out_dir/{city}/{stem}.png`` for an image ``…/{city}/{stem}.png`` (or ``.jpg``)."""
    image_path = Path(image_path)
    return Path(out_dir) / image_path.parent.name / (image_path.stem + ".png")


def write_label_png(label: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W) uint8 label map as a mode-``L`` PNG, atomically (temp file, then rename)."""
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"a label PNG needs an (H, W) uint8 array, got {label.shape} {label.dtype}")
    return save_png(Image.fromarray(label), path)
