"""Test-time inference: whole image or sliding windows, multi-scale and horizontal flip.

The paper's Cityscapes test-server numbers (Sec. 4.2, Tables 4–5) come from this protocol: the
image is evaluated at several scales (0.5–1.75), each scale also flipped, and large images are cut
into overlapping crops of the training size. Scores are averaged over windows, flips and scales, then
the arg-max is taken at full resolution.

Windows follow the authors' ``eval.py`` in spacing (default stride: two thirds of the crop, i.e. a
third overlap) and mmsegmentation in placement: the last window of a row or column is shifted back to
end at the border instead of padding past it, so padding is only needed when the image itself is
smaller than the crop. Tiles of all images in a batch are run through the network in batches of
``tile_batch``, not one call per tile.

The command-line tools share the protocol's flags (:func:`add_protocol_arguments`,
:func:`protocol_from_args`) and read the input normalisation a checkpoint expects
(:func:`checkpoint_normalization`).

Example::

    >>> protocol = TestProtocol(mode="slide", crop_size=(769, 769), scales=(0.75, 1.0, 1.25), flip=True)
    >>> scores = infer(model, images, protocol)["out"]     # (N, K, H, W), averaged logits
    >>> pred = scores.argmax(1)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from gald.config import NORMALIZATIONS, bounded, check_choice
from gald.errors import ConfigError
from gald.models.inspection import inspect

__all__ = [
    "TestProtocol", "infer", "sliding_windows", "window_weights", "BLENDS", "NORMALIZATIONS", "checkpoint_normalization",
    "checkpoint_protocol", "training_protocol", "add_protocol_arguments", "protocol_from_args",
]


_MODES = ("whole", "slide", "auto")
#: how overlapping windows are combined: "mean" — every window alike (the authors' eval.py,
#: mmsegmentation); "gaussian" — each window weighted by a Gaussian of the distance to its centre
#: (sigma = 1/8 of the window, as nnU-Net), so no seam shows where a window ends
BLENDS = ("mean", "gaussian")


@dataclass(frozen=True)
class TestProtocol:
    """How to turn a model into full-resolution scores.

    Args:
        mode: ``"whole"`` (one forward per image and scale), ``"slide"`` (windows of ``crop_size``)
            or ``"auto"`` (slide only where a scaled image exceeds ``crop_size``).
        crop_size: window ``(height, width)``; needed by ``"slide"`` and ``"auto"``.
        stride: window step ``(height, width)``; default ``ceil(2/3 · crop)`` (the authors' 1/3 overlap).
        scales: image scales, averaged (paper: 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 for the test server).
        flip: also evaluate the horizontally flipped image and average.
        tile_batch: windows per forward call.
        average: ``"logits"`` (the authors' ``eval.py``) or ``"probs"`` (softmax first, as mmseg).
        blend: how overlapping windows are combined, one of :data:`BLENDS`.
    """

    __test__ = False  # not a pytest test class, despite the name

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = field(default=(1.0,))
    flip: bool = False
    tile_batch: int = 4
    average: str = "logits"
    blend: str = "mean"

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, _MODES)
        check_choice("blend", self.blend, BLENDS)
        if self.mode != "whole" and self.crop_size is None:
            raise ValueError(f"mode {self.mode!r} needs crop_size")
        check_choice("average", self.average, ("logits", "probs"))
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive, got {self.scales}")
        if self.tile_batch < 1:
            raise ValueError("tile_batch must be >= 1")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        for name in ("crop_size", "stride"):
            value = getattr(self, name)
            if value is not None:
                value = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
                if len(value) != 2 or min(value) < 1:
                    raise ValueError(f"{name} needs two positive integers (height, width), got {value}")
                object.__setattr__(self, name, value)
        if self.stride is not None and self.crop_size is not None and any(
                s > c for s, c in zip(self.stride, self.crop_size)):
            raise ConfigError(f"stride {self.stride} is larger than crop_size {self.crop_size}: pixels between the "
                              "windows would get no score")

    @property
    def window_stride(self) -> tuple[int, int]:
        if self.stride is not None:
            return self.stride
        assert self.crop_size is not None
        return tuple(math.ceil(c * 2 / 3) for c in self.crop_size)  # type: ignore[return-value]


def sliding_windows(size: tuple[int, int], crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Windows ``(y1, y2, x1, x2)`` covering an image of ``size``; the last ones end at the border.

    A dimension smaller than the crop gets a single window spanning it (the caller pads).
    """
    (h, w), (ch, cw), (sh, sw) = size, crop, stride

    def starts(length: int, c: int, s: int) -> list[int]:
        if length <= c:
            return [0]
        n = math.ceil((length - c) / s) + 1
        return sorted({min(i * s, length - c) for i in range(n)})

    return [
        (y, min(y + ch, h), x, min(x + cw, w))
        for y in starts(h, ch, sh)
        for x in starts(w, cw, sw)
    ]


def _forward(model: nn.Module, x: torch.Tensor, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Scores for ``keys`` at the input's resolution (``inspect`` only when a stage is asked for)."""
    outputs = model(x) if tuple(keys) == ("out",) else inspect(model, x)
    align = getattr(model, "align_corners", False)
    result = {}
    for key in keys:
        if key not in outputs:
            raise KeyError(f"the model has no output {key!r}; it gives {sorted(outputs)}")
        y = outputs[key].float()
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=align)
        result[key] = y
    return result


def _slide(model: nn.Module, x: torch.Tensor, protocol: TestProtocol, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    n, _, h, w = x.shape
    ch, cw = protocol.crop_size  # type: ignore[misc]
    windows = sliding_windows((h, w), (ch, cw), protocol.window_stride)
    tiles = [(i, win) for i in range(n) for win in windows]
    sums: dict[str, torch.Tensor] = {}
    weight = window_weights((ch, cw), protocol.blend).to(x.device)
    count = x.new_zeros(1, 1, h, w)
    for y1, y2, x1, x2 in windows:
        count[..., y1:y2, x1:x2] += weight[: y2 - y1, : x2 - x1]
    for start in range(0, len(tiles), protocol.tile_batch):
        chunk = tiles[start : start + protocol.tile_batch]
        # zero padding = the mean colour after normalisation; only for images smaller than the crop
        crops = torch.stack([
            F.pad(x[i, :, y1:y2, x1:x2], (0, max(cw - (x2 - x1), 0), 0, max(ch - (y2 - y1), 0)))
            for i, (y1, y2, x1, x2) in chunk
        ])  # fmt: skip
        out = _forward(model, crops, keys)
        for key, y in out.items():
            if key not in sums:
                sums[key] = x.new_zeros(n, y.shape[1], h, w, dtype=torch.float32)
            for j, (i, (y1, y2, x1, x2)) in enumerate(chunk):
                if protocol.blend == "mean":
                    sums[key][i, :, y1:y2, x1:x2] += y[j, :, : y2 - y1, : x2 - x1]
                else:
                    sums[key][i, :, y1:y2, x1:x2] += y[j, :, : y2 - y1, : x2 - x1] * weight[: y2 - y1, : x2 - x1]
    return {key: s.div_(count) for key, s in sums.items()}  # in place: sums can be gigabytes


def window_weights(crop: tuple[int, int], blend: str = "mean") -> torch.Tensor:
    """The weight of each pixel of a window when overlapping windows are combined (:data:`BLENDS`).

    ``"gaussian"``: ``exp(-d² / 2σ²)`` per axis with ``σ = crop / 8``, normalised to 1 at the centre.

    Shape:
        -> crop (float32)
    """
    check_choice("blend", blend, BLENDS)
    if blend == "mean":
        return torch.ones(crop)
    axes = []
    for size in crop:
        d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        axes.append(torch.exp(-(d**2) / (2 * (size / 8) ** 2)))
    return torch.outer(*axes).float()


def _single_scale(model: nn.Module, x: torch.Tensor, protocol: TestProtocol, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    slide = protocol.mode == "slide" or (
        protocol.mode == "auto" and (x.shape[-2] > protocol.crop_size[0] or x.shape[-1] > protocol.crop_size[1])  # type: ignore[index]
    )
    return _slide(model, x, protocol, keys) if slide else _forward(model, x, keys)


@torch.inference_mode()
def infer(model: nn.Module, images: torch.Tensor, protocol: TestProtocol | None = None, *, keys: Sequence[str] = ("out",)) -> dict[str, torch.Tensor]:
    """Full-resolution scores of ``model`` (in eval mode) under ``protocol``.

    Args:
        model: a segmentation model returning ``{"out": logits}`` (and ``inspect`` for stage keys).
        images: normalised batch.
        protocol: default: whole image, one scale, no flip.
        keys: outputs to return, e.g. ``("out", "logits_fcn", "logits_ga")``.

    Returns:
        ``{key: scores}``: averaged logits (or probabilities with ``average="probs"``).

    Shape:
        (N, 3, H, W) -> {key: (N, K, H, W) float32}
    """
    protocol = protocol or TestProtocol()
    align = getattr(model, "align_corners", False)
    h, w = images.shape[-2:]
    totals: dict[str, torch.Tensor] = {}
    views = 0
    for scale in protocol.scales:
        x = images
        if scale != 1.0:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            x = F.interpolate(images, size=size, mode="bilinear", align_corners=align)
        flips = (False, True) if protocol.flip else (False,)
        for flip in flips:
            out = _single_scale(model, x.flip(-1) if flip else x, protocol, keys)
            for key, y in out.items():
                if flip:
                    y = y.flip(-1)
                if y.shape[-2:] != (h, w):
                    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=align)
                if protocol.average == "probs":
                    y = y.softmax(1)
                totals[key] = y if key not in totals else totals[key] + y
            views += 1
    return {key: t.div_(views) if views > 1 else t for key, t in totals.items()}  # a sum of views: ours to change


def add_protocol_arguments(parser: argparse.ArgumentParser, *, from_checkpoint: bool = False) -> None:
    """Flags of :class:`TestProtocol` (``python -m gald.evaluate`` and ``python -m gald.predict``).

    With ``from_checkpoint``, ``--mode``, ``--crop-size``, ``--stride`` and ``--blend`` default to
    the checkpoint's protocol (:func:`checkpoint_protocol`; pass them to override it).
    """
    g = parser.add_argument_group("test protocol")
    g.add_argument("--mode", default=None if from_checkpoint else "whole", choices=list(_MODES),
                   help="whole image, sliding windows, or windows only where the image exceeds the crop"
                        + (" (default: the checkpoint's test protocol)" if from_checkpoint else ""))
    g.add_argument("--blend", default=None if from_checkpoint else "mean", choices=list(BLENDS),
                   help="how overlapping windows are combined: mean (the authors') or gaussian (no seams)"
                        + (" (default: the checkpoint's test protocol)" if from_checkpoint else ""))
    g.add_argument("--crop-size", type=bounded(int, 1), nargs=2, metavar=("H", "W"), default=None,
                   help="window size (default: the checkpoint's training crop)")
    g.add_argument("--stride", type=bounded(int, 1), nargs=2, metavar=("H", "W"), default=None,
                   help="window step (default: 2/3 of the crop, the authors' 1/3 overlap)")
    g.add_argument("--scales", type=bounded(float, 0, open_low=True), nargs="+", default=[1.0], help="e.g. 0.5 0.75 1.0 1.25 1.5 1.75")
    g.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    g.add_argument("--tile-batch", type=bounded(int, 1), default=4, help="windows per forward call")
    g.add_argument("--average", default="logits", choices=["logits", "probs"], help="what is averaged over views")
    g.add_argument("--normalization", default=None, choices=NORMALIZATIONS,
                   help="input normalisation (default: the checkpoint's; converted official weights use bgr_mean)")


def protocol_from_args(args: argparse.Namespace, train_crop: list[int] | None,
                       default: TestProtocol | None = None) -> TestProtocol:
    """The protocol the flags ask for. Window flags not given take ``default``'s values (the
    checkpoint's protocol, for predict) unless ``--mode`` is given; a crop comes from the training crop."""
    base = default or TestProtocol()
    mode = args.mode if args.mode is not None else base.mode
    inherit = args.mode is None  # the default's windows go with the default's mode
    crop = args.crop_size or (base.crop_size if inherit else None) or (
        list(train_crop) if mode != "whole" and train_crop else None)
    stride = args.stride or (base.stride if inherit else None)
    return TestProtocol(
        mode=mode, crop_size=None if crop is None else tuple(crop), stride=None if stride is None else tuple(stride),
        scales=tuple(args.scales), flip=args.flip, tile_batch=args.tile_batch, average=args.average,
        blend=getattr(args, "blend", None) or base.blend,
    )  # fmt: skip


def training_protocol(dataset: str | None, crop_size: Sequence[int] | None) -> TestProtocol:
    """The test protocol a model trained on ``dataset`` with ``crop_size`` crops is meant for: the
    whole image for the generated benchmark (its scenes are the training size); for real datasets and
    the authors' weights (``dataset=None``), windows of the training crop (769 × 769 by default) with
    the paper's one-third overlap, blended with Gaussian weights so no seam shows."""
    if str(dataset or "").startswith("synthetic"):
        return TestProtocol(mode="whole")
    return TestProtocol(mode="slide", crop_size=tuple(crop_size or (769, 769)), blend="gaussian")


def checkpoint_protocol(ckpt: dict) -> TestProtocol:
    """The test protocol a checkpoint records (``test_protocol``, written by training since 0.2.2),
    else :func:`training_protocol` of its recorded training data and crop."""
    recorded = ckpt.get("test_protocol")
    if isinstance(recorded, dict):
        return TestProtocol(**recorded)
    train = ckpt.get("config", {}).get("train") or {}
    return training_protocol(train.get("dataset"), train.get("crop_size"))


def checkpoint_normalization(ckpt: dict, override: str | None = None) -> str:
    """The input normalisation a checkpoint expects: ``override``, else what it records, else ImageNet."""
    if override is not None:
        return override
    recorded = ckpt.get("normalization") or ckpt.get("config", {}).get("train", {}).get("normalization")
    return recorded or "imagenet"
