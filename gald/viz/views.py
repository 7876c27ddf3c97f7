"""The views of one analysed image: what the app shows, as plain functions (numpy in, numpy out).

* :func:`prepare_image` / :func:`load_image` — any image array or file → 8-bit RGB within the size
  limits (:data:`MAX_SIDE`, :data:`MIN_SIDE`, :data:`UPSCALE_SIDE`, :data:`MAX_PIXELS`), with
  notices for the user;
* :func:`analyze` — one model call that keeps the prediction, the per-stage predictions (Sec. 4.3.1,
  Fig. 5) and the LD masks ``M`` of Eq. (1);
* :func:`prediction_views`, :func:`ld_views`, :func:`stage_views`, :func:`attribution_view` —
  overlays, legends, mask heat maps and Grad-CAM drawn from that analysis;
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

from gald.data.images import IMAGE_FORMATS, MAX_PIXELS, ImageError, read_image, to_rgb_uint8
from gald.data.transforms import ToTensorNormalize
from gald.engine.predictor import Predictor
from gald.metrics.ld_effect import format_ld_effect
from gald.models.layers import resize

from . import overlays

log = logging.getLogger(__name__)

__all__ = [
    "MAX_SIDE", "MIN_SIDE", "UPSCALE_SIDE", "MAX_PIXELS", "STAGE_NAMES", "STAGE_FEATURES",
    "prepare_image", "load_image", "analyze", "prediction_views", "ld_views", "stage_views", "attribution_view",
    "model_banner", "model_info_markdown", "ld_effect_markdown", "example_images",
]

MAX_SIDE = 1024  # longer sides are downscaled to this (CPU time and memory stay bounded)
MIN_SIDE = 16  # shorter sides are refused: nothing is left at the head's 1/8 … 1/64 resolutions
UPSCALE_SIDE = 64  # shorter sides are upscaled to this: 8 features at OS 8, enough for LD's downsampling up to d = 8
STAGE_NAMES = {"fcn": "FCN features (F)", "ga": "after GA (F_GA)", "gald": "after GALD (full head)"}
STAGE_FEATURES = {"fcn": "F", "ga": "F_GA", "gald": "F_GALD"}


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
    """Turn any image array into the 8-bit RGB the model takes, within the size limits.

    Grayscale (H, W) or (H, W, 1) is replicated to RGB; gray+alpha and RGBA are composited over
    white; 16-bit integers are scaled to 8 bits; floats are read as [0, 1] if their maximum is at
    most 1, else as [0, 255]. A side over :data:`MAX_SIDE` is downscaled (aspect kept), one under
    :data:`UPSCALE_SIDE` upscaled; a side under :data:`MIN_SIDE` is refused.

    Returns:
        The image and a list of notices for the user (one per conversion applied).

    Raises:
        ImageError: no image, an unsupported shape or dtype, non-finite values, or too small.

    Shape:
        (H, W) | (H, W, 1|2|3|4) any dtype -> (H', W', 3) uint8
    """
    if image is None:
        raise ImageError("no image: upload one (PNG, JPEG, WebP, BMP or TIFF) or click an example")
    a, notes = to_rgb_uint8(image)
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image too small ({h}×{w} pixels): both sides must be at least {MIN_SIDE} pixels")
    scale = 1.0
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
    elif min(h, w) < UPSCALE_SIDE:
        scale = UPSCALE_SIDE / min(h, w)
        if max(h, w) * scale > MAX_SIDE:
            raise ImageError(f"image too elongated ({h}×{w}): cannot bring its short side to {UPSCALE_SIDE} pixels "
                             f"within the {MAX_SIDE}-pixel limit")
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.LANCZOS))
        verb = "downscaled" if scale < 1 else "upscaled"
        notes.append(f"{verb} from {h}×{w} to {a.shape[0]}×{a.shape[1]} pixels "
                     f"(limits: longest side {MAX_SIDE}, shortest side {UPSCALE_SIDE})")
    return np.ascontiguousarray(a), notes


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


def analyze(predictor: Predictor, image: np.ndarray) -> dict[str, Any]:
    """Run the model on an 8-bit RGB image and keep what every view needs: one whole-image pass
    (stages, LD masks), and the prediction under the checkpoint's test protocol (that same pass when
    it is the whole image; else :meth:`Predictor.predict`, as ``python -m gald.predict`` runs it).

    Returns:
        A plain dict (it lives in ``gr.State``): ``image`` (H, W, 3) uint8, ``pred`` (H, W) int32,
        ``stages`` — ``{"fcn", "ga", "gald"}`` → (H, W) int32 prediction or ``None`` where the model
        has no such classifier —, ``mask`` the LD masks (C, H/8, W/8) float32 or ``None``.

    Shape:
        (H, W, 3) uint8 -> see Returns
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"analyze needs an (H, W, 3) uint8 image (see prepare_image), got {image.shape} {image.dtype}")
    x = ToTensorNormalize(bgr_mean=predictor.bgr_mean).image(image)
    device = next(predictor.model.parameters()).device
    model = predictor.model.eval()
    with torch.inference_mode():
        out = model.inspect(x[None].to(device))
        size = image.shape[:2]

        def labels(logits: torch.Tensor | None) -> np.ndarray | None:
            if logits is None:
                return None
            return resize(logits, size, model.align_corners).argmax(1)[0].cpu().numpy().astype(np.int32)

        if predictor.protocol.mode == "whole" and len(predictor.protocol.scales) == 1 and not predictor.protocol.flip:
            pred = out["out"].argmax(1)[0].cpu().numpy().astype(np.int32)  # the pass above is that protocol
        else:  # the checkpoint's windows, as python -m gald.predict runs them
            pred = predictor.predict(image).astype(np.int32)
        stages = {"fcn": labels(out.get("logits_fcn")), "ga": labels(out.get("logits_ga")), "gald": pred}
        mask = out.get("M")
        mask = mask[0].float().cpu().numpy() if mask is not None else None
    return {"image": image, "pred": pred, "stages": stages, "mask": mask}


def prediction_views(predictor: Predictor, analysis: dict[str, Any], alpha: float = 0.5) -> dict[str, Any]:
    """The prediction overlay, a legend with class areas, and the areas as ``{class: fraction}``.

    Returns:
        ``{"overlay": (H, W, 3) uint8, "legend": HTML str, "areas": {class: fraction}}`` (areas of
        the classes present, summing to 1).
    """
    pred = analysis["pred"]
    fractions = overlays.class_fractions(pred, predictor.num_classes)
    return {
        "overlay": overlays.overlay(analysis["image"], pred, predictor.palette, alpha=float(alpha)),
        "legend": overlays.legend_html(predictor.classes, predictor.palette, fractions),
        "areas": {predictor.classes[i]: float(f) for i, f in enumerate(fractions) if f > 0},
    }


def ld_views(
    analysis: dict[str, Any], channel: int = 0, scale: str = "unit"
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The LD mask as heat maps at the image size: channel mean, channel max, channel ``channel``.

    ``M`` is a sigmoid output, so by default (``scale="unit"``) all three use the fixed [0, 1]
    scale (viridis: dark = 0, yellow = 1) and are comparable; ``scale="minmax"`` stretches each map
    to its own range, which shows structure in maps that vary little (the channel mean often sits
    near 0.5). Cheap: drawn from the cached masks, the model is not run. ``None`` if the model has
    no LD. A channel out of range is clamped.

    Shape:
        -> 3 × (H, W, 3) uint8
    """
    mask = analysis.get("mask")
    if mask is None:
        return None
    size = analysis["image"].shape[:2]
    channel = int(min(max(int(channel), 0), mask.shape[0] - 1))
    return (
        overlays.ld_mask_image(mask, "mean", size, scale=scale),
        overlays.ld_mask_image(mask, "max", size, scale=scale),
        overlays.ld_mask_image(mask, channel, size, scale=scale),
    )


def stage_views(predictor: Predictor, analysis: dict[str, Any], alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """Overlays of the per-stage predictions, captioned; stages the model lacks are left out.

    The FCN and GA stages are 1×1 classifiers trained on the frozen features (Sec. 4.3.1, Fig. 5);
    the GALD stage is the model's output.
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
    lines = [
        "### Model",
        f"- **weights**: `{predictor.source}` ({predictor.kind})",
        f"- **architecture**: `{cfg.get('arch', type(m).__name__)}`, GA `{cfg.get('ga')}`, block `{cfg.get('block')}`, "
        f"LD `{cfg.get('ld_downsample')}` with d = {cfg.get('d')}, output stride {cfg.get('output_stride')}, "
        f"mode `{cfg.get('mode')}`; {n_params / 1e6:.2f} M parameters",
        f"- **stage classifiers** (Fig. 5): {'yes' if m.stage_classifiers else 'no'}",
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
    lines.append(f"- **image limits**: longest side ≤ {MAX_SIDE} (larger is downscaled), shortest side ≥ {MIN_SIDE} "
                 f"(under {UPSCALE_SIDE} is upscaled)")
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
