"""Pictures of segmentations and of GALD's intermediate tensors: numpy in, uint8 RGB numpy out.

Used by the app (``gald.app``), the notebooks and the figures. Every function takes plain arrays
(a ``torch.Tensor`` is accepted where noted) and returns an ``(H, W, 3)`` ``uint8`` image, so the
results can be saved with Pillow or shown by any front end.

* :func:`colorize` / :func:`overlay` — a label map in a palette, alone or blended over the image.
* :func:`ld_mask_image` — the Local Distribution mask ``M`` of Eq. (1) (a sigmoid output, so on a
  fixed [0, 1] scale), reduced over channels by mean or max, or one channel.
* :func:`heatmap` / :func:`blend_heatmap` — any real-valued map (e.g. a Grad-CAM attribution).
* :func:`class_fractions`, :func:`legend_html` — class-area percentages and a colour legend;
  :func:`colorbar_html` — a colour bar for a heat map, in HTML.
* :func:`mark_point` — a cross-hair at one pixel; :func:`save_label_png` — a label map as a
  palette PNG (``python -m gald.predict``'s ``*_label.png``, the app's download).
* :func:`draw_detections` — a detector's boxes, captions and instance masks.
"""

from __future__ import annotations

import colorsys
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from gald.files import save_png

__all__ = [
    "blend_heatmap",
    "class_fractions",
    "colorbar_html",
    "colorize",
    "default_palette",
    "draw_detections",
    "heatmap",
    "ld_mask_image",
    "legend_html",
    "mark_point",
    "overlay",
    "resize_label",
    "save_label_png",
]

Color = tuple[int, int, int]


def _check_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a label map must be (H, W), got shape {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"a label map must hold integers, got dtype {label.dtype}")
    return label


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    return image


def default_palette(n: int) -> list[Color]:
    """``n`` distinct colours (evenly spaced hues) for models whose checkpoint has no palette."""
    return [
        tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.65, 0.95))  # type: ignore[misc]
        for i in range(n)
    ]


def colorize(
    label: np.ndarray,
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    ignore_color: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Colour a train-id label map with ``palette``.

    Args:
        label: class ids; ``ignore_index`` and ids outside the palette get ``ignore_color``.
        palette: one RGB triple per class.
        ignore_index: the "no label" id.
        ignore_color: RGB of ignored pixels.

    Shape:
        (H, W) int -> (H, W, 3) uint8
    """
    label = _check_label(label)
    colors = np.array(list(palette) + [tuple(ignore_color)], dtype=np.uint8).reshape(-1, 3)
    k = len(colors) - 1
    # every id that is negative, ignored or past the palette points at the ignore colour (last row)
    idx = np.where((label >= 0) & (label < k) & (label != ignore_index), label, k).astype(np.intp, copy=False)
    return colors[idx]


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend the coloured label map over the image: ``(1 - alpha)·image + alpha·colour``.

    Ignored pixels (``ignore_index`` or ids outside the palette) show the image unchanged.

    Args:
        image: RGB image.
        label: class ids at the image's size.
        palette: one RGB triple per class.
        alpha: opacity of the colours, in [0, 1].
        ignore_index: the "no label" id.

    Shape:
        (H, W, 3) uint8, (H, W) int -> (H, W, 3) uint8
    """
    image = _check_image(image)
    label = _check_label(label)
    if label.shape != image.shape[:2]:
        raise ValueError(f"label {label.shape} and image {image.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    # in place: a 40-megapixel image must not need a handful of full-size float copies
    out = image.astype(np.float32)
    out *= 1.0 - alpha
    color = colorize(label, palette, ignore_index).astype(np.float32)
    color *= alpha
    out += color
    del color
    invalid = ~((label >= 0) & (label < len(palette)) & (label != ignore_index))
    out[invalid] = image[invalid]
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map (pixel centres, as ``F.interpolate(mode="nearest-exact")``).

    Shape:
        (h, w) -> size
    """
    label = _check_label(label)
    h, w = label.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp), w - 1)
    return label[rows[:, None], cols[None, :]]


def _resize_float(values: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(values.shape) == tuple(size):
        return values
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _colormap(values01: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib

    rgba = matplotlib.colormaps[cmap](np.clip(values01, 0.0, 1.0))
    return np.rint(rgba[..., :3] * 255).astype(np.uint8)


def heatmap(
    values: np.ndarray | torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
) -> np.ndarray:
    """Colour-map a real-valued map, bilinearly resized to ``size``.

    Args:
        values: the map; NaN/inf are an error.
        size: ``(H, W)`` of the output; ``None`` keeps the map's size.
        vmin: value shown as the colormap's low end; ``None`` = the map's minimum.
        vmax: value shown as the high end; ``None`` = the map's maximum. A constant map with no
            bounds given is drawn at the low end.
        cmap: a matplotlib colormap name.

    Shape:
        (h, w) -> (H, W, 3) uint8
    """
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D map, got shape {v.shape}")
    v = v.astype(np.float32)
    if not np.isfinite(v).all():
        raise ValueError("heatmap got NaN or infinite values")
    v = _resize_float(v, size)
    lo = float(v.min()) if vmin is None else float(vmin)
    hi = float(v.max()) if vmax is None else float(vmax)
    scaled = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return _colormap(scaled, cmap)


def ld_mask_image(
    mask: np.ndarray | torch.Tensor,
    reduce: str | int = "mean",
    size: tuple[int, int] | None = None,
    *,
    scale: str = "unit",
    cmap: str = "viridis",
) -> np.ndarray:
    """A heat map of the LD mask ``M`` (Eq. 1) of one image.

    ``M = sigmoid(·)`` lies in (0, 1), so by default the colours use the fixed [0, 1] scale: maps of
    different images and channels are comparable (a channel near 1 distributes the GA feature at
    full strength, Eq. 2). ``scale="minmax"`` stretches each map to its own range instead.

    Args:
        mask: the masks of one image, ``inspect(x)["M"][0]``.
        reduce: ``"mean"`` or ``"max"`` over channels, or a channel index.
        size: ``(H, W)`` of the output (bilinear); ``None`` keeps the mask's resolution.
        scale: ``"unit"`` ([0, 1]) or ``"minmax"``.
        cmap: a matplotlib colormap name.

    Shape:
        (C, h, w) -> (H, W, 3) uint8
    """
    m = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    if m.ndim != 3:
        raise ValueError(f"ld_mask_image expects one image's masks (C, h, w), got shape {m.shape}")
    if isinstance(reduce, (int, np.integer)) and not isinstance(reduce, bool):
        if not 0 <= reduce < m.shape[0]:
            raise IndexError(f"channel {reduce} out of range: the mask has {m.shape[0]} channels (0..{m.shape[0] - 1})")
        m2 = m[int(reduce)]
    elif reduce == "mean":
        m2 = m.mean(axis=0)
    elif reduce == "max":
        m2 = m.max(axis=0)
    else:
        raise ValueError(f"reduce must be 'mean', 'max' or a channel index, got {reduce!r}")
    if scale == "unit":
        return heatmap(m2, size=size, vmin=0.0, vmax=1.0, cmap=cmap)
    if scale == "minmax":
        return heatmap(m2, size=size, cmap=cmap)
    raise ValueError(f"scale must be 'unit' or 'minmax', got {scale!r}")


def blend_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour heat map (e.g. from :func:`heatmap`) over an image of the same size.

    Shape:
        (H, W, 3) uint8, (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    image, heat = _check_image(image), _check_image(heat)
    if image.shape != heat.shape:
        raise ValueError(f"image {image.shape} and heat map {heat.shape} differ in size")
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def class_fractions(label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Fraction of the labelled pixels that each class covers (sums to 1 unless nothing is labelled).

    Shape:
        (H, W) int -> (num_classes,) float64
    """
    label = _check_label(label)
    valid = label[(label >= 0) & (label < num_classes) & (label != ignore_index)]
    counts = np.bincount(valid.ravel().astype(np.intp), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def legend_html(
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    fractions: Sequence[float] | None = None,
    *,
    min_fraction: float = 0.0,
) -> str:
    """An HTML table: colour swatch, class name and (optionally) its area in percent with a bar.

    With ``fractions`` the rows are sorted by area and classes below ``min_fraction`` are left out.
    Class names are escaped (checkpoints carry them). The table takes its content's width, so it
    never overlaps what sits beside it.
    """
    rows = list(range(len(classes)))
    if fractions is not None:
        rows = [i for i in sorted(rows, key=lambda i: -fractions[i]) if fractions[i] > min_fraction]
    head = "<tr><th></th><th>class</th>" + ('<th colspan="2">area</th>' if fractions is not None else "") + "</tr>"
    lines = ['<table class="gald-legend" style="width:auto;border-collapse:collapse">', head]
    for i in rows:
        r, g, b = (int(c) for c in palette[i])
        swatch = f'<span style="display:inline-block;width:1em;height:1em;background:rgb({r},{g},{b});border:1px solid #888"></span>'
        area = ""
        if fractions is not None:
            pct = 100 * float(fractions[i])
            bar = f'<span style="display:inline-block;height:0.7em;width:{pct * 0.8:.1f}px;background:rgb({r},{g},{b})"></span>'
            area = f'<td style="text-align:right;padding:0 0.4em">{pct:.1f} %</td><td style="width:82px">{bar}</td>'
        lines.append(f'<tr><td>{swatch}</td><td style="padding:0 0.4em">{html.escape(str(classes[i]))}</td>{area}</tr>')
    lines.append("</table>")
    return "\n".join(lines)


def colorbar_html(vmin: float, vmax: float, *, cmap: str = "viridis", label: str = "", stops: int = 11) -> str:
    """A horizontal colour bar for a heat map drawn with :func:`heatmap` from ``vmin`` to ``vmax``:
    the colormap as a CSS gradient, with the low, middle and high values written under it.
    """
    colors = _colormap(np.linspace(0.0, 1.0, stops), cmap)
    gradient = ", ".join(f"rgb({r},{g},{b})" for r, g, b in colors)
    ticks = [vmin, (vmin + vmax) / 2, vmax]
    caption = f'<span style="margin-right:0.5em">{html.escape(label)}</span>' if label else ""
    return (
        f'<div class="gald-colorbar" style="font-size:0.8em;line-height:1.2">{caption}'
        f'<div style="height:0.8em;background:linear-gradient(to right, {gradient});border:1px solid #888"></div>'
        '<div style="display:flex;justify-content:space-between">'
        + "".join(f"<span>{t:.3g}</span>" for t in ticks)
        + "</div></div>"
    )


def mark_point(
    image: np.ndarray, y: int, x: int, *, color: Color = (255, 0, 255), size: int | None = None
) -> np.ndarray:
    """A copy of ``image`` with a cross-hair centred on pixel ``(y, x)`` (a gap left at the pixel itself).

    Shape:
        (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    out = _check_image(image).copy()
    h, w = out.shape[:2]
    arm = size if size is not None else max(4, min(h, w) // 12)
    gap = max(1, arm // 4)
    for d in range(gap, arm + 1):
        for yy, xx in ((y - d, x), (y + d, x), (y, x - d), (y, x + d)):
            if 0 <= yy < h and 0 <= xx < w:
                out[yy, xx] = color
    return out


def save_label_png(label: np.ndarray, palette: Sequence[Sequence[int]], path: str | os.PathLike) -> Path:
    """Write a label map as an 8-bit palette PNG (pixel value = class index, shown in its colour),
    atomically (a temporary file renamed into place). Returns the path.

    Shape:
        (H, W) int, values < 256 -> file
    """
    from PIL import Image

    label = _check_label(label)
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"a palette PNG holds class indices 0..255, got {label.min()}..{label.max()}")
    img = Image.fromarray(label.astype(np.uint8))
    flat = [int(v) for c in palette for v in c][: 256 * 3]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return save_png(img, path)


# distinct colours for up to 10 classes, then cycled (draw_detections)
_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_detections(
    image: np.ndarray,
    prediction: dict[str, torch.Tensor],
    classes: Sequence[str],
    *,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    alpha: float = 0.45,
) -> np.ndarray:
    """Overlay masks (if any), boxes and ``"<class> <score>"`` captions of one prediction.

    Args:
        image: RGB uint8 image.
        prediction: torchvision output ``{"boxes", "labels", "scores", "masks" optional (n, 1, H, W)}``.
        classes: foreground class names; label ``k`` is ``classes[k - 1]``.
        score_threshold: draw detections scoring at least this.
        mask_threshold: binarise the soft masks at this.
        alpha: mask opacity.

    Shape:
        (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    keep = prediction["scores"] >= score_threshold
    boxes, labels, scores = prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep]
    colors = [_COLORS[(int(k) - 1) % len(_COLORS)] for k in labels]
    canvas = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
    if "masks" in prediction and len(boxes):
        masks = prediction["masks"][keep][:, 0] >= mask_threshold
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    if len(boxes):
        names = [f"{classes[int(k) - 1] if 0 < int(k) <= len(classes) else int(k)} {float(s):.2f}"
                 for k, s in zip(labels, scores)]
        canvas = draw_bounding_boxes(canvas, boxes, labels=names, colors=colors, width=2)
    return canvas.permute(1, 2, 0).numpy()
