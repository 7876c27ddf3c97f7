"""The GALD demo app (Gradio): segment an image and look inside the GALD head.

``python app/demo.py`` (or ``python -m gald.app``) serves, on 127.0.0.1 by default, a page that
shows for an uploaded image or a clicked example:

* the prediction as an overlay, a class legend and class-area percentages;
* the LD masks ``M`` of Eq. (1) — channel mean, channel max, and one channel picked with a slider,
  re-drawn from the cached masks (``gr.State``) without running the model again;
* per-stage predictions from the stage classifiers (Sec. 4.3.1, Fig. 5): on ``F`` (FCN features),
  on ``F_GA`` (after GA), and the full GALD output;
* a Grad-CAM attribution (:mod:`gald.viz.attribution`) of a chosen class at the FCN, GA or GALD stage;
* what the model is: architecture, classes, training data, the metrics its checkpoint records.

With no arguments it loads the checkpoint shipped in ``gald/assets`` (:func:`default_checkpoint`),
trained on the embedded synthetic benchmark by ``python -m gald.train``. ``--checkpoint`` takes any
checkpoint ``gald.train`` writes, or the authors' GALD-Net weights (converted on load with
:mod:`gald.deploy.official`). Checkpoints are read once at start with ``weights_only=True``;
uploads are only ever decoded as images.

The model is a :class:`gald.engine.predictor.Predictor` (:func:`load_predictor`). Everything the
page shows is computed by the plain functions here (numpy in, numpy out), which the tests call
directly; :func:`build_demo` only wires them to Gradio components.

Hardening: uploads are limited to :data:`MAX_FILE_SIZE`; images are decoded only in the formats of
:data:`IMAGE_FORMATS` and up to :data:`MAX_PIXELS` pixels; grayscale, RGBA, 16-bit and float
images are converted to 8-bit RGB with a notice; images with a side over :data:`MAX_SIDE` are
downscaled to it, images with a side under :data:`MIN_SIDE` are refused and those under
:data:`UPSCALE_SIDE` upscaled to it; the queue is bounded (:data:`QUEUE_SIZE`) and serves one
model call at a time; Gradio's analytics are off.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gald import viz
from gald.data.images import IMAGE_FORMATS, ImageError, read_image, to_rgb_uint8
from gald.data.transforms import ToTensorNormalize
from gald.deploy.official import official_arch as _official_arch  # noqa: F401 (its name here until 0.2.0)
from gald.engine.predictor import DEFAULT_CHECKPOINT, Predictor, default_checkpoint, load_predictor
from gald.metrics.ld_effect import format_ld_effect
from gald.models import WrongTaskError
from gald.models.layers import resize

log = logging.getLogger("gald.app")

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ImageError",
    "Predictor",
    "analyze",
    "attribution_view",
    "build_demo",
    "default_checkpoint",
    "example_images",
    "ld_views",
    "load_image",
    "load_predictor",
    "main",
    "model_info_markdown",
    "prediction_views",
    "prepare_image",
    "stage_views",
]

MAX_SIDE = 1024  # longer sides are downscaled to this (CPU time and memory stay bounded)
MIN_SIDE = 16  # shorter sides are refused: nothing is left at the head's 1/8 … 1/64 resolutions
UPSCALE_SIDE = 64  # shorter sides are upscaled to this: 8 features at OS 8, enough for LD's downsampling up to d = 8
MAX_PIXELS = 40_000_000  # refuse to decode more (decompression bombs); checked before decoding
MAX_FILE_SIZE = "10mb"
QUEUE_SIZE = 16
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
    """Run the model once on an 8-bit RGB image and keep what every view needs.

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
    norm = ToTensorNormalize(bgr_mean=predictor.bgr_mean)
    x, _ = norm(image, np.zeros(image.shape[:2], np.uint8))
    device = next(predictor.model.parameters()).device
    model = predictor.model.eval()
    with torch.inference_mode():
        out = model.inspect(x[None].to(device))
        size = image.shape[:2]

        def labels(logits: torch.Tensor | None) -> np.ndarray | None:
            if logits is None:
                return None
            return resize(logits, size, model.align_corners).argmax(1)[0].cpu().numpy().astype(np.int32)

        pred = out["out"].argmax(1)[0].cpu().numpy().astype(np.int32)
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
    fractions = viz.class_fractions(pred, predictor.num_classes)
    return {
        "overlay": viz.overlay(analysis["image"], pred, predictor.palette, alpha=float(alpha)),
        "legend": viz.legend_html(predictor.classes, predictor.palette, fractions),
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
        viz.ld_mask_image(mask, "mean", size, scale=scale),
        viz.ld_mask_image(mask, "max", size, scale=scale),
        viz.ld_mask_image(mask, channel, size, scale=scale),
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
            items.append((viz.overlay(analysis["image"], label, predictor.palette, alpha=float(alpha)), name))
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
    from gald.viz.attribution import grad_cam  # needs captum (the app extra)

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
    heat = viz.heatmap(cam, vmin=0.0, vmax=peak if peak > 0 else 1.0, cmap="inferno")
    feature = STAGE_FEATURES[stage]
    if n_pixels:
        what = (f"the sum of the '{class_name}' logit over the {n_pixels} pixels predicted as '{class_name}' "
                f"({100 * n_pixels / analysis['pred'].size:.1f} % of the image)")
    else:
        what = f"the '{class_name}' logit summed over all pixels ('{class_name}' is predicted nowhere in this image)"
    caption = f"Grad-CAM at {feature} ({STAGE_NAMES[stage]}) of {what}. Bright = features that raise it; scale 0 … {peak:.3g}."
    if peak <= 0:
        caption += " The map is zero everywhere: no positive evidence at this stage."
    return viz.blend_heatmap(image, heat, alpha=0.6), caption


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
                 f"(under {UPSCALE_SIDE} is upscaled), uploads ≤ {MAX_FILE_SIZE}")
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


# ----------------------------------------------------------------------------------------------
# Gradio


_IMAGE_INPUT_CLASS = None


def _image_input(**kwargs):
    """A ``gr.Image`` whose decoding errors reach the user as a clear ``gr.Error`` (not a traceback).

    Gradio opens every upload with Pillow before the event runs; a non-image file fails there. This
    template subclass (rendered by Gradio's own image component) turns that failure into a message.
    """
    global _IMAGE_INPUT_CLASS
    import gradio as gr
    import gradio.component_meta as component_meta

    if _IMAGE_INPUT_CLASS is None:
        # Gradio writes a .pyi stub beside the source of every Component subclass it sees defined;
        # that would write into the installed package, so the stub writer is off for this class.
        write_stub = component_meta.create_or_modify_pyi
        component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
        try:

            class ImageInput(gr.Image):
                is_template = True  # Gradio's mechanism for subclasses: the front end uses the parent's

                def preprocess(self, payload):
                    try:
                        return super().preprocess(payload)
                    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
                        name = getattr(payload, "orig_name", None) or "the upload"
                        raise gr.Error(
                            f"{name} is not an image this app reads ({', '.join(IMAGE_FORMATS)}): {type(err).__name__}"
                        ) from None

        finally:
            component_meta.create_or_modify_pyi = write_stub
        _IMAGE_INPUT_CLASS = ImageInput
    return _IMAGE_INPUT_CLASS(**kwargs)


def build_demo(predictor: Predictor, *, examples: Sequence[tuple[str, str]] | None = None):
    """The page, wired to the functions above. Endpoints: ``/segment``, ``/overlay``,
    ``/ld_masks``, ``/attribute``.

    Args:
        predictor: the loaded model (see :func:`load_predictor`).
        examples: ``(path, label)`` pairs; default :func:`example_images`.

    Returns:
        A ``gr.Blocks`` with a bounded queue; launch it with :data:`LAUNCH_KWARGS`.
    """
    import gradio as gr

    if examples is None:
        examples = example_images()
    n_ld = predictor.ld_channels

    def notify(notes: list[str]) -> str:
        for note in notes:
            gr.Warning(note)
        return "\n".join(f"- {n}" for n in notes)

    def segment(path, alpha, channel, scale):
        try:
            image, notes = load_image(path) if isinstance(path, (str, os.PathLike)) else prepare_image(path)
            analysis = analyze(predictor, image)
        except ImageError as err:
            raise gr.Error(str(err)) from None
        pv = prediction_views(predictor, analysis, alpha)
        ld = ld_views(analysis, channel, scale) or (None, None, None)
        h, w = image.shape[:2]
        status = f"Segmented a {h}×{w} image.\n" + notify(notes)
        top = max(pv["areas"], key=pv["areas"].get)  # the attribution tab starts on the largest class
        return (pv["overlay"], pv["legend"], pv["areas"], *ld, stage_views(predictor, analysis, alpha),
                analysis, status, gr.Dropdown(value=top))

    def redraw_overlay(analysis, alpha):
        if analysis is None:
            raise gr.Error("segment an image first")
        pv = prediction_views(predictor, analysis, alpha)
        return pv["overlay"], stage_views(predictor, analysis, alpha)

    def redraw_ld(analysis, channel, scale):
        if analysis is None:
            raise gr.Error("segment an image first")
        views = ld_views(analysis, channel, scale)
        if views is None:
            raise gr.Error("this model has no Local Distribution masks")
        return views

    def attribute(analysis, class_name, stage):
        if analysis is None:
            raise gr.Error("segment an image first")
        try:
            return attribution_view(predictor, analysis, class_name, stage)
        except ImageError as err:
            raise gr.Error(str(err)) from None

    stage_choices = [(STAGE_NAMES[s], s) for s in STAGE_NAMES if s != "ga" or predictor.has_ga]
    with gr.Blocks(title="GALD demo", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# GALD: Global Aggregation then Local Distribution\n"
            "Semantic segmentation with a GALD head (Li et al., BMVC 2019; authors' code: "
            "[lxtGH/GALD-Net](https://github.com/lxtGH/GALD-Net)): global context is aggregated (GA), then "
            "distributed back to each position by a learned mask **M** (LD, Eq. 1–2)."
        )
        banner = model_banner(predictor)
        if banner:
            gr.Markdown(banner, elem_id="model-banner")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                image_in = _image_input(type="filepath", image_mode=None, label="Image", height=240,
                                        sources=["upload", "clipboard"], elem_id="input-image")
                run = gr.Button("Segment", variant="primary", elem_id="segment-button")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                status = gr.Markdown(elem_id="status")
                ex = None
                if examples:
                    ex = gr.Examples(
                        [[p] for p, _ in examples], inputs=[image_in], example_labels=[lab for _, lab in examples],
                        label="Examples: synthetic scenes (in-domain), photographs (out-of-domain)",
                        cache_examples=False, api_visibility="private", examples_per_page=8,
                    )
            with gr.Column(scale=2):
                overlay_out = gr.Image(label="Prediction (overlay)", elem_id="prediction", format="png", height=320,
                                       interactive=False)
                with gr.Row():
                    legend = gr.HTML(label="Legend", elem_id="legend")
                    areas = gr.Label(label="Class area", num_top_classes=predictor.num_classes, elem_id="areas")
        with gr.Tabs():
            with gr.Tab("LD masks (Eq. 1)"):
                gr.Markdown("The Local Distribution mask **M** = sigmoid(·) ∈ (0, 1) decides, per channel and "
                            "position, how much of the global feature F_GA is added back (F_GALD = M ⊙ F_GA + F_GA). "
                            "Colours: viridis, dark = low, yellow = high, on the fixed [0, 1] scale (comparable "
                            "across maps) or stretched per map. The slider and the scale re-draw from the cached "
                            "masks without running the model.")
                gr.Markdown(ld_effect_markdown(predictor), elem_id="ld-effect")
                ld_scale = gr.Radio([("fixed [0, 1]", "unit"), ("per-map min–max", "minmax")], value="unit",
                                    label="Colour scale", elem_id="ld-scale")
                channel = gr.Slider(0, max(n_ld - 1, 0), value=0, step=1, label=f"LD channel (0–{max(n_ld - 1, 0)})",
                                    interactive=n_ld > 0, elem_id="ld-channel")
                with gr.Row():
                    ld_mean = gr.Image(label="channel mean", format="png", interactive=False, height=200, elem_id="ld-mean")
                    ld_max = gr.Image(label="channel max", format="png", interactive=False, height=200, elem_id="ld-max")
                    ld_channel = gr.Image(label="selected channel", format="png", interactive=False, height=200,
                                          elem_id="ld-channel-image")
            with gr.Tab("Per-stage predictions"):
                gr.Markdown("1×1 classifiers trained on the frozen features F (FCN) and F_GA (after GA), "
                            "next to the full GALD head's output (Sec. 4.3.1, Fig. 5).")
                stages = gr.Gallery(label="FCN / GA / GALD", columns=3, format="png", elem_id="stages")
            with gr.Tab("Attribution"):
                with gr.Row():
                    cls = gr.Dropdown(predictor.classes, value=predictor.classes[0], label="Class")
                    stage = gr.Radio(stage_choices, value="gald", label="Stage")
                    explain = gr.Button("Explain")
                attribution_img = gr.Image(label="Grad-CAM", format="png", interactive=False, elem_id="attribution")
                attribution_text = gr.Markdown()
            with gr.Tab("Model"):
                gr.Markdown(model_info_markdown(predictor), elem_id="model-info")

        outputs = [overlay_out, legend, areas, ld_mean, ld_max, ld_channel, stages, state, status, cls]
        run.click(segment, [image_in, alpha, channel, ld_scale], outputs, api_name="segment", concurrency_id="model")
        if ex is not None:  # clicking an example fills the input, then segments it
            ex.load_input_event.then(segment, [image_in, alpha, channel, ld_scale], outputs, api_visibility="private",
                                     concurrency_id="model")
        alpha.release(redraw_overlay, [state, alpha], [overlay_out, stages], api_name="overlay")
        channel.release(redraw_ld, [state, channel, ld_scale], [ld_mean, ld_max, ld_channel], api_name="ld_masks")
        ld_scale.change(lambda a, c, sc: (None, None, None) if a is None else redraw_ld(a, c, sc),
                        [state, channel, ld_scale], [ld_mean, ld_max, ld_channel], api_visibility="private")
        explain.click(attribute, [state, cls, stage], [attribution_img, attribution_text], api_name="attribute",
                      concurrency_id="model")
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


#: small inputs (the synthetic scenes are 128×256) are shown enlarged, label maps without blur
CSS = """
#prediction img, #ld-mean img, #ld-max img, #ld-channel-image img, #attribution img {
    width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
"""

#: keyword arguments of ``demo.launch`` the app always uses (tests use them too).
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "footer_links": [], "show_error": True, "css": CSS}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve the GALD demo app (Gradio) on this machine.")
    parser.add_argument("--checkpoint", default=None,
                        help="a gald checkpoint (model.pt from gald.train, or gald.convert_official output) or the "
                             "authors' GALD-Net .pth; default: the shipped synthetic-benchmark model")
    parser.add_argument("--untrained", action="store_true", help="random weights (to try the page without a checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, load the model once, and serve the app until interrupted."""
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check, tighter than its default
    try:
        predictor = load_predictor(args.checkpoint, untrained=args.untrained, device=args.device)
    except WrongTaskError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("loaded %s (%s, %d classes)", predictor.source, predictor.kind, predictor.num_classes)
    demo = build_demo(predictor)
    demo.launch(server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
