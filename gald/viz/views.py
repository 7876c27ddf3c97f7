"""The views of one analysed image: what the app shows, as plain functions (numpy in, numpy out).

* :func:`prepare_image` / :func:`load_image` — any image array or file → 8-bit RGB within the size
  limits (:data:`MIN_SIDE`, :data:`MAX_PIXELS`), with notices for the user;
* :func:`analyze` — the prediction at the image's full resolution, exactly as
  ``python -m gald.predict`` makes it, and one whole-image pass over the *view* (the image, its
  longest side brought to at most :data:`MAX_SIDE`) that keeps the per-stage predictions
  (Sec. 4.3.1, Fig. 5) and the LD masks ``M`` of Eq. (1);
* :func:`prediction_views`, :func:`ld_views`, :func:`ld_colorbars`, :func:`stage_views`,
  :func:`attribution_view` — overlays, one legend with class areas, mask heat maps with their colour
  bars and Grad-CAM, drawn at the view's size from that analysis; :func:`save_labels` — the full
  resolution label map as ``python -m gald.predict`` writes it;
* :func:`probe_view` — where one pixel's prediction takes its context from (the input gradient of
  its decision, :func:`gald.experiments.analysis.context_probe`) and LD's gate there per channel group;
  :func:`sky_swap_view` — the benchmark's counterfactual: repaint the sky, see which pixels flip;
* :func:`model_banner`, :func:`model_info_markdown`, :func:`ld_effect_markdown` — what the model is;
* :func:`example_images` — in-domain synthetic scenes and out-of-domain photographs.

:mod:`gald.app` wires these to Gradio; the tests and notebooks call them directly.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gald.data.images import IMAGE_FORMATS, MAX_PIXELS, WHOLE_MAX_PIXELS, ImageError, read_image, to_rgb_uint8
from gald.data.transforms import ToTensorNormalize
from gald.engine.predictor import Predictor, whole_pass_gib
from gald.metrics.ld_effect import format_ld_effect
from gald.models.inspection import inspect, stage_classifiers
from gald.models.layers import resize

from . import overlays

log = logging.getLogger(__name__)

__all__ = [
    "MAX_SIDE", "MIN_SIDE", "UPSCALE_SIDE", "MAX_PIXELS", "WHOLE_MAX_PIXELS", "STAGE_NAMES", "STAGE_FEATURES",
    "PROBE_FAR", "PROBE_GROUPS", "prepare_image", "load_image", "view_image", "check_whole_pass", "analyze",
    "save_labels", "prediction_views", "ld_views", "ld_colorbars", "stage_views", "attribution_view", "probe_view",
    "sky_swap_view", "model_banner", "model_info_markdown", "ld_effect_markdown", "example_images",
]

MAX_SIDE = 1024  # the views (not the prediction) are computed on a copy whose longest side is at most this
MIN_SIDE = 16  # shorter sides are refused: nothing is left at the head's 1/8 … 1/64 resolutions
#: not used since 0.2.3 (the app no longer upscales small images, so it predicts what ``gald.predict``
#: does); kept for the 0.2.x aliases
UPSCALE_SIDE = 64
STAGE_NAMES = {"fcn": "FCN features (F)", "ga": "after GA (F_GA)", "gald": "after GALD (full head)"}
STAGE_FEATURES = {"fcn": "F", "ga": "F_GA", "gald": "F_GALD"}
#: LD channel groups the context probe reports (at most one per channel)
PROBE_GROUPS = 8
#: the probe's "long-range" distance, in view pixels: the benchmark's sky lies at least this far above the ground
PROBE_FAR = 32


# ----------------------------------------------------------------------------------------------
# The model


def ld_effect_markdown(predictor: Predictor) -> str:
    """What the app says about the model's LD effect: the measured value with its interval, or why none."""
    if not predictor.ld_channels:
        return "This model has no LD module."
    if not predictor.ld_effect:
        return ("**LD effect: not measured** for these weights (measure it with "
                "`python -m gald.evaluate --checkpoint … --ld-effect`). Without it, the maps below do not say "
                "whether the model *uses* its masks.")
    return (f"**{format_ld_effect(predictor.ld_effect)}.** The maps below show M; the LD effect is what the "
            "model's predictions lose when M's spatial pattern is removed (gald.ld_effect).")


# ----------------------------------------------------------------------------------------------
# Images in


def prepare_image(image: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Turn any image array into the 8-bit RGB the model takes, at its own size.

    Grayscale (H, W) or (H, W, 1) is replicated to RGB; gray+alpha and RGBA are composited over
    white; 16-bit integers are scaled to 8 bits; floats are read as [0, 1] if their maximum is at
    most 1, else as [0, 255]. The size is kept, so the prediction is ``python -m gald.predict``'s;
    a side under :data:`MIN_SIDE` is refused.

    Returns:
        The image and a list of notices for the user (one per conversion applied).

    Raises:
        ImageError: no image, an unsupported shape or dtype, non-finite values, or too small.

    Shape:
        (H, W) | (H, W, 1|2|3|4) any dtype -> (H, W, 3) uint8
    """
    if image is None:
        raise ImageError("no image: upload one (PNG, JPEG, WebP, BMP or TIFF) or click an example")
    a, notes = to_rgb_uint8(image)
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image too small ({h}×{w} pixels): both sides must be at least {MIN_SIDE} pixels")
    return np.ascontiguousarray(a), notes


def view_image(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """The image the views are drawn on: ``image`` itself, or a copy with its longest side
    downscaled (Lanczos, aspect kept) to ``max_side``.

    Shape:
        (H, W, 3) uint8 -> (H', W', 3) uint8
    """
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.LANCZOS))


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Decode an image file safely (:func:`gald.data.images.read_image`) and :func:`prepare_image` it.

    Raises:
        ImageError: not an image in a supported format, more than :data:`MAX_PIXELS`, or broken.
    """
    try:
        array, notes = read_image(path, formats=IMAGE_FORMATS, max_pixels=MAX_PIXELS)
    except ImageError as err:  # the page shows the file's name, not the server's temp path
        raise ImageError(str(err).replace(os.fspath(path), os.path.basename(os.fspath(path)))) from None
    image, more = prepare_image(array)
    return image, notes + more


# ----------------------------------------------------------------------------------------------
# The views (numpy in, numpy out)


def check_whole_pass(
    predictor: Predictor, size: tuple[int, int], max_whole_pixels: int | None = WHOLE_MAX_PIXELS
) -> None:
    """Refuse an image too large for one whole-image pass under ``predictor``'s protocol, as
    ``python -m gald.predict`` does, with the memory it would need.

    Raises:
        ImageError: the image has more than ``max_whole_pixels`` and the protocol is the whole image.
    """
    pixels = int(size[0]) * int(size[1])
    if predictor.protocol.mode == "whole" and max_whole_pixels is not None and pixels > max_whole_pixels:
        raise ImageError(
            f"a {size[0]}×{size[1]} image is more than the {max_whole_pixels:,} pixels of one whole-image pass, "
            f"which would need about {whole_pass_gib(pixels):.1f} GiB; python -m gald.predict --mode auto "
            "segments it in windows"
        )


def analyze(predictor: Predictor, image: np.ndarray, *, max_side: int = MAX_SIDE) -> dict[str, Any]:
    """Run the model on an 8-bit RGB image and keep what every view needs.

    * The prediction at the image's full resolution under the checkpoint's test protocol
      (:meth:`Predictor.predict`, exactly as ``python -m gald.predict`` makes it).
    * One whole-image pass over the view (:func:`view_image`, longest side at most ``max_side``):
      the per-stage predictions and the LD masks. When the view is the image and the protocol is
      one whole-image pass, that pass *is* the prediction, and the model runs once.

    Returns:
        A plain dict (it lives in ``gr.State``): ``image`` the view (h, w, 3) uint8; ``pred`` the
        prediction at the view's size (h, w) (nearest); ``labels`` the full-resolution
        prediction (H, W), uint8 (int32 for models of more than 256 classes); ``size`` ``(H, W)``;
        ``stages`` — ``{"fcn", "ga", "gald"}`` →
        (h, w) int32 prediction of the view pass, or ``None`` where the model has no such
        classifier —; ``mask`` the LD masks (C, h/8, w/8) float32 or ``None``.

    Raises:
        ImageError: not an (H, W, 3) uint8 image, or too large for a whole-image pass
            (:func:`check_whole_pass`).

    Shape:
        (H, W, 3) uint8 -> see Returns
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"analyze needs an (H, W, 3) uint8 image (see prepare_image), got {image.shape} {image.dtype}")
    size = image.shape[:2]
    check_whole_pass(predictor, size, WHOLE_MAX_PIXELS)
    view = view_image(image, max_side)
    x = ToTensorNormalize(bgr_mean=predictor.bgr_mean).image(view)
    device = next(predictor.model.parameters()).device
    model = predictor.model.eval()
    with torch.inference_mode():
        out = inspect(model, x[None].to(device))

        def labels(logits: torch.Tensor | None) -> np.ndarray | None:
            if logits is None:
                return None
            return resize(logits, view.shape[:2], getattr(model, "align_corners", False)).argmax(1)[0].cpu().numpy().astype(np.int32)

        stages = {"fcn": labels(out.get("logits_fcn")), "ga": labels(out.get("logits_ga")), "gald": labels(out["out"])}
        protocol = predictor.protocol
        one_pass = protocol.mode == "whole" and len(protocol.scales) == 1 and not protocol.flip
        if one_pass and view is image and predictor.runner is None:
            full = stages["gald"]  # the pass above is the protocol's
        else:  # the checkpoint's protocol at full resolution (and backend), as python -m gald.predict runs it
            full = predictor.predict(image).astype(np.int32)
        mask = out.get("M")
        mask = mask[0].float().cpu().numpy() if mask is not None else None
    if predictor.num_classes <= 256:  # the state holds it for the session: a byte a pixel
        full = full.astype(np.uint8)
    pred = full if view is image else overlays.resize_label(full, view.shape[:2])
    return {"image": view, "pred": pred, "labels": full, "size": tuple(size), "stages": stages, "mask": mask}


def save_labels(predictor: Predictor, analysis: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the full-resolution prediction as ``python -m gald.predict`` writes ``*_label.png``
    (a palette PNG: pixel value = class index). Returns the path."""
    return overlays.save_label_png(analysis["labels"], predictor.palette, path)


def prediction_views(predictor: Predictor, analysis: dict[str, Any], alpha: float = 0.5) -> dict[str, Any]:
    """The prediction overlay (at the view's size), one legend with the class areas, and the areas
    as ``{class: fraction}`` (of the full-resolution prediction).

    Returns:
        ``{"overlay": (h, w, 3) uint8, "legend": HTML str, "areas": {class: fraction}}`` (areas of
        the classes present, summing to 1).
    """
    fractions = overlays.class_fractions(analysis["labels"], predictor.num_classes)
    return {
        "overlay": overlays.overlay(analysis["image"], analysis["pred"], predictor.palette, alpha=float(alpha)),
        "legend": overlays.legend_html(predictor.classes, predictor.palette, fractions),
        "areas": {predictor.classes[i]: float(f) for i, f in enumerate(fractions) if f > 0},
    }


def _ld_maps(mask: np.ndarray, channel: int, scale: str) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
    """(name, map, colour range) of the three LD views: [0, 1], or the map's own range."""
    if scale not in ("unit", "minmax"):
        raise ValueError(f"scale must be 'unit' or 'minmax', got {scale!r}")
    channel = int(min(max(int(channel), 0), mask.shape[0] - 1))
    maps = [("channel mean", mask.mean(0)), ("channel max", mask.max(0)), (f"channel {channel}", mask[channel])]
    return [(name, m, (0.0, 1.0) if scale == "unit" else (float(m.min()), float(m.max()))) for name, m in maps]


def ld_views(
    analysis: dict[str, Any], channel: int = 0, scale: str = "unit"
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The LD mask as heat maps at the view's size: channel mean, channel max, channel ``channel``.

    ``M`` is a sigmoid output, so by default (``scale="unit"``) all three use the fixed [0, 1]
    scale (viridis: dark = 0, yellow = 1) and are comparable; ``scale="minmax"`` stretches each map
    to its own range, which shows structure in maps that vary little (the channel mean often sits
    near 0.5). :func:`ld_colorbars` gives each map's colour bar. Cheap: drawn from the cached masks,
    the model is not run. ``None`` if the model has no LD. A channel out of range is clamped.

    Shape:
        -> 3 × (h, w, 3) uint8
    """
    mask = analysis.get("mask")
    if mask is None:
        return None
    size = analysis["image"].shape[:2]
    return tuple(overlays.heatmap(m, size=size, vmin=lo, vmax=hi) for _, m, (lo, hi) in _ld_maps(mask, channel, scale))


def ld_colorbars(analysis: dict[str, Any], channel: int = 0, scale: str = "unit") -> tuple[str, str, str] | None:
    """The colour bars (HTML) of :func:`ld_views`' three maps: [0, 1], or each map's own range."""
    mask = analysis.get("mask")
    if mask is None:
        return None
    maps = _ld_maps(mask, channel, scale)
    return tuple(overlays.colorbar_html(lo, hi, label=f"M, {name}") for name, _, (lo, hi) in maps)


def stage_views(predictor: Predictor, analysis: dict[str, Any], alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """Overlays of the per-stage predictions, captioned; stages the model lacks are left out.

    The FCN and GA stages are 1×1 classifiers trained on the frozen features (Sec. 4.3.1, Fig. 5);
    the GALD stage is the model's output. All three come from the same whole-image pass over the
    view, so they compare like with like (the prediction itself follows the test protocol).
    """
    items = []
    for stage, name in STAGE_NAMES.items():
        label = analysis["stages"].get(stage)
        if label is not None:
            items.append((overlays.overlay(analysis["image"], label, predictor.palette, alpha=float(alpha)), name))
    return items


def attribution_view(
    predictor: Predictor, analysis: dict[str, Any], class_name: str, stage: str = "gald"
) -> tuple[np.ndarray, str]:
    """Grad-CAM of ``class_name`` at ``stage``, blended over the image, and a caption.

    The attributed score is the class's logit summed over the pixels predicted as that class; if
    the model predicts the class nowhere, over all pixels (the caption says which).

    Shape:
        -> (H, W, 3) uint8, str
    """
    from .attribution import grad_cam  # needs captum (the app extra)

    if class_name not in predictor.classes:
        raise ImageError(f"unknown class {class_name!r}; this model's classes: {', '.join(predictor.classes)}")
    if stage not in STAGE_NAMES:
        raise ImageError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_NAMES)}")
    if stage == "ga" and not predictor.has_ga:
        raise ImageError("this model has no Global Aggregation stage; choose 'fcn' or 'gald'")
    target = predictor.classes.index(class_name)
    image = analysis["image"]
    n_pixels = int((analysis["pred"] == target).sum())
    region = "predicted" if n_pixels else "all"
    x, _ = ToTensorNormalize(bgr_mean=predictor.bgr_mean)(image, np.zeros(image.shape[:2], np.uint8))
    device = next(predictor.model.parameters()).device
    with torch.enable_grad():
        cam = grad_cam(predictor.model, x[None].to(device), target, stage, region=region)[0].cpu().numpy()
    peak = float(cam.max())
    heat = overlays.heatmap(cam, vmin=0.0, vmax=peak if peak > 0 else 1.0, cmap="inferno")
    feature = STAGE_FEATURES[stage]
    if n_pixels:
        what = (f"the sum of the '{class_name}' logit over the {n_pixels} pixels predicted as '{class_name}' "
                f"({100 * n_pixels / analysis['pred'].size:.1f} % of the image)")
    else:
        what = f"the '{class_name}' logit summed over all pixels ('{class_name}' is predicted nowhere in this image)"
    caption = f"Grad-CAM at {feature} ({STAGE_NAMES[stage]}) of {what}. Bright = features that raise it; scale 0 … {peak:.3g}."
    if peak <= 0:
        caption += " The map is zero everywhere: no positive evidence at this stage."
    return overlays.blend_heatmap(image, heat, alpha=0.6), caption


def _class_shares(field: np.ndarray, label: np.ndarray, classes: list[str], top: int = 3) -> str:
    shares = np.bincount(label.ravel(), weights=field.ravel(), minlength=len(classes))
    order = [i for i in np.argsort(-shares)[:top] if shares[i] > 0]
    return ", ".join(f"{classes[i]} {100 * shares[i]:.0f} %" for i in order)


def probe_view(
    predictor: Predictor, analysis: dict[str, Any], y: int, x: int, versus: str | None = None
) -> tuple[np.ndarray, str, str]:
    """The context probe at view pixel ``(y, x)``: where its prediction takes context from.

    The map is the input gradient of the pixel's decision — the logit margin between its predicted
    class and the runner-up, or ``versus`` (:func:`gald.experiments.analysis.context_probe`) — on the
    view, normalised to sum to 1, blended over the image with a cross-hair at the pixel. The HTML
    gives the map's colour bar and LD's gate ``M`` at the pixel per channel group beside its image
    mean (:func:`gald.experiments.analysis.ld_gate`; Eq. 1–2), when the model has LD.

    Raises:
        ImageError: a pixel outside the view, or an unknown class.

    Shape:
        -> (h, w, 3) uint8, Markdown str, HTML str
    """
    from gald.experiments.analysis import context_probe, ld_gate

    image = analysis["image"]
    h, w = image.shape[:2]
    y, x = int(y), int(x)
    if not (0 <= y < h and 0 <= x < w):
        raise ImageError(f"pixel (row {y}, column {x}) is outside the {h}×{w} image")
    against = None
    if versus not in (None, "", "runner-up"):
        if versus not in predictor.classes:
            raise ImageError(f"unknown class {versus!r}; this model's classes: {', '.join(predictor.classes)}")
        against = predictor.classes.index(versus)
    x_in = ToTensorNormalize(bgr_mean=predictor.bgr_mean).image(image).to(next(predictor.model.parameters()).device)
    probe = context_probe(predictor.model, x_in, y, x, versus=against, far=PROBE_FAR)
    field = probe["field"].cpu().numpy()
    peak = float(field.max())
    heat = overlays.heatmap(field, vmin=0.0, vmax=peak if peak > 0 else 1.0, cmap="inferno")
    picture = overlays.mark_point(overlays.blend_heatmap(image, heat, alpha=0.6), y, x)
    names = predictor.classes
    stages = analysis["stages"]["gald"]
    caption = (
        f"**Pixel (row {y}, column {x})**: predicted **{names[probe['target']]}**, by a logit margin of "
        f"{probe['margin']:.2f} over **{names[probe['versus']]}**. The map is |∂ margin / ∂ image|: "
        f"{100 * probe['far_share']:.0f} % of it lies more than {PROBE_FAR} px away; by predicted class: "
        f"{_class_shares(field, stages, names)}."
    )
    if peak <= 0:
        caption += " The gradient is zero everywhere: the decision does not depend on the input here."
    top = peak if peak > 0 else 1.0
    parts = [overlays.colorbar_html(0.0, top, cmap="inferno", label="share of the gradient per pixel")]
    if analysis.get("mask") is not None:
        gate = ld_gate(analysis["mask"], y, x, (h, w), groups=PROBE_GROUPS)
        rows = ['<table class="gald-gate" style="width:auto;border-collapse:collapse;font-size:0.9em">',
                "<tr><th>LD channels</th><th>M at the pixel</th><th>image mean</th></tr>"]
        for (a, b), here, mean in zip(gate["channels"], gate["at_pixel"], gate["image_mean"]):
            def bar(v: float, colour: str) -> str:
                return (f'<span style="display:inline-block;width:{80 * v:.1f}px;height:0.7em;background:{colour}"></span>'
                        f" {v:.2f}")
            rows.append(f'<tr><td style="padding:0 0.5em">{a}–{b}</td><td>{bar(here, "#3b528b")}</td>'
                        f'<td>{bar(mean, "#aaa")}</td></tr>')
        rows.append("</table>")
        parts.append(f"<p>LD's gate M (Eq. 1) at this pixel, per group of channels: how much of the global "
                     f"feature F_GA each group adds back here (Eq. 2), beside its mean over the image.</p>{''.join(rows)}")
    return picture, caption, "\n".join(parts)


def sky_swap_view(predictor: Predictor, analysis: dict[str, Any], alpha: float = 0.5) -> tuple[np.ndarray, str]:
    """The benchmark's counterfactual on the current image: repaint the pixels the model predicts as
    sky in the other cue's colours (:func:`gald.data.synthetic.swap_sky`, day ↔ dusk), run the
    model again and show which pixels change class (coloured by their new class; the rest dimmed).
    Both predictions are whole-image passes over the view.

    Raises:
        ImageError: the model has no "sky" class, or predicts no sky in this image.

    Shape:
        -> (h, w, 3) uint8, Markdown str
    """
    from gald.data.synthetic import swap_sky

    if "sky" not in predictor.classes:
        raise ImageError("this model has no 'sky' class: the sky swap needs one")
    before = analysis["stages"]["gald"]
    sky = before == predictor.classes.index("sky")
    if not sky.any():
        raise ImageError("the model predicts no sky in this image: there is nothing to swap")
    swapped, cue = swap_sky(analysis["image"], sky)
    x_in = ToTensorNormalize(bgr_mean=predictor.bgr_mean).image(swapped).to(next(predictor.model.parameters()).device)
    with torch.inference_mode():
        after = predictor.model.eval()(x_in[None])["out"].argmax(1)[0].cpu().numpy().astype(np.int32)
    flipped = (before != after) & ~sky
    dimmed = (0.35 * swapped.astype(np.float32) + 0.65 * 128).astype(np.uint8)
    coloured = overlays.overlay(swapped, after, predictor.palette, alpha=float(max(alpha, 0.5)))
    picture = np.where(flipped[..., None], coloured, dimmed)
    names = predictor.classes
    n, total = int(flipped.sum()), int((~sky).sum())
    pairs = np.bincount((before[flipped] * len(names) + after[flipped]).ravel(), minlength=len(names) ** 2)
    moves = ", ".join(f"{names[k // len(names)]} → {names[k % len(names)]}: {pairs[k]} px"
                      for k in np.argsort(-pairs)[:3] if pairs[k] > 0)
    caption = (f"**Sky repainted in {cue} colours** (the {int(sky.sum())} pixels predicted as sky). "
               f"{n} of the other {total} pixels ({100 * n / max(total, 1):.1f} %) change class"
               + (f": {moves}." if n else ": the prediction ignores the sky."))
    return picture, caption


# ----------------------------------------------------------------------------------------------
# Page text


def model_banner(predictor: Predictor) -> str:
    """A one-line warning for models whose output means little on real photographs (or nothing)."""
    if predictor.kind == "untrained":
        return "⚠️ **Untrained model (random weights)**: the predictions below are meaningless; they only show the views."
    if predictor.kind == "synthetic":
        return ("⚠️ **Synthetic-data model.** Trained only on the project's procedurally generated street scenes "
                f"({', '.join(predictor.classes)}): the synthetic examples are in-domain; on real photographs "
                "expect out-of-domain guesses.")
    if predictor.kind == "official":
        return "Model converted from the authors' published GALD-Net weights (official mode)."
    return ""


def model_info_markdown(predictor: Predictor) -> str:
    """Architecture, classes, training data and recorded metrics, as Markdown."""
    m = predictor.model
    cfg = m.config or {}
    n_params = sum(p.numel() for p in m.parameters())
    block = (f"GA `{cfg.get('ga')}`, block `{cfg.get('block')}`, LD `{cfg.get('ld_downsample')}` with d = "
             f"{cfg.get('d')}")
    if "after" in cfg:  # a host network with GALD plugged in (gald.models.hosts)
        arch = f"`{cfg.get('arch', type(m).__name__)}` (torchvision) with GALD plugged after `{cfg['after']}`: {block}"
    else:
        arch = (f"`{cfg.get('arch', type(m).__name__)}`, {block}, output stride {cfg.get('output_stride')}, "
                f"mode `{cfg.get('mode')}`")
    lines = [
        "### Model",
        f"- **weights**: `{predictor.source_name}` ({predictor.kind})",
        f"- **architecture**: {arch}; {n_params / 1e6:.2f} M parameters",
        f"- **stage classifiers** (Fig. 5): {'yes' if stage_classifiers(m) else 'no'}",
        f"- **classes** ({predictor.num_classes}): {', '.join(predictor.classes)}",
        f"- **input normalisation**: {'BGR mean subtraction (authors)' if predictor.bgr_mean else 'ImageNet mean/std, RGB'}",
    ]
    t = predictor.train_config
    if predictor.kind == "untrained":
        lines.append("- **training data**: none — random initialisation")
    elif t:
        data = t.get("dataset")
        if str(data).startswith("synthetic"):
            data = (f"the embedded synthetic street-scene benchmark ({t.get('num_train')} generated scenes, "
                    f"crop {t.get('crop_size')}, data seed {t.get('data_seed')})")
        lines.append(f"- **training data**: {data}; {t.get('iterations')} iterations of batch {t.get('batch_size')}, "
                     f"seed {t.get('seed')} (`python -m gald.train`)")
    elif predictor.kind == "official":
        lines.append("- **training data**: Cityscapes (the authors' training)" if predictor.num_classes == 19
                     else "- **training data**: as published by the authors")
    if predictor.metrics:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in predictor.metrics.items() if isinstance(v, (int, float)))
        lines.append(f"- **validation metrics recorded in the checkpoint**: {parts}")
    if predictor.ld_channels:
        lines.append(f"- **LD effect**: {format_ld_effect(predictor.ld_effect) if predictor.ld_effect else 'not measured'}")
    lines.append(f"- **images**: segmented at full resolution under the checkpoint's test protocol "
                 f"(`{predictor.protocol.mode}`), as `python -m gald.predict` does; shortest side ≥ {MIN_SIDE}; the "
                 f"views are drawn with the longest side brought to ≤ {MAX_SIDE}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Examples


def example_images(directory: str | os.PathLike | None = None, *, seed: int = 0) -> list[tuple[str, str]]:
    """Write the example images and return ``(path, label)`` pairs.

    In-domain: validation scenes 0 (dusk), 4 and 5 (day) of the embedded benchmark
    (``make_scene``, 128×256, benchmark seed 0).
    Out-of-domain: photographs shipped inside scikit-image (astronaut, coffee, chelsea the cat,
    a motorcycle), when scikit-image is installed. Nothing is downloaded.

    Args:
        directory: where to write them; default ``<tempdir>/gald-app-examples`` (Gradio serves
            examples from the system temp directory without widening ``allowed_paths``).
        seed: benchmark seed of the synthetic scenes.
    """
    from gald.data.synthetic import make_scene

    out = Path(directory) if directory is not None else Path(tempfile.gettempdir()) / "gald-app-examples"
    out.mkdir(parents=True, exist_ok=True)
    items: list[tuple[str, np.ndarray, str]] = []
    for index in (0, 4, 5):
        scene = make_scene(seed, index, split="val")
        items.append((f"synthetic_val_{index}.png", scene.image, f"synthetic val scene {index} ({scene.cue})"))
    try:
        import skimage.data as skdata

        photos = [("astronaut", skdata.astronaut), ("coffee", skdata.coffee), ("chelsea", skdata.chelsea),
                  ("motorcycle", lambda: skdata.stereo_motorcycle()[0])]
        for name, load in photos:
            items.append((f"photo_{name}.png", load(), f"photo: {name} (scikit-image)"))
    except ImportError:
        log.info("scikit-image is not installed: only synthetic examples (pip install 'gald[app]')")
    pairs = []
    for filename, array, label in items:
        path = out / filename
        if not path.is_file():
            Image.fromarray(array).save(path)
        pairs.append((str(path), label))
    return pairs
