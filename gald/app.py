"""The GALD demo app (Gradio): segment an image and look inside the GALD head.

``python app/demo.py`` (or ``python -m gald.app``) serves, on 127.0.0.1 by default, a page that
shows for an uploaded image or a clicked example:

* the prediction as an overlay with one legend of the classes and their areas, and the label map
  to download — the image is segmented at full resolution under the checkpoint's test protocol,
  so this is ``python -m gald.predict``'s output for the same file;
* the LD masks ``M`` of Eq. (1) — channel mean, channel max, and one channel picked with a slider,
  each with its colour bar, re-drawn from the cached masks (``gr.State``) without running the model;
* per-stage predictions from the stage classifiers (Sec. 4.3.1, Fig. 5): on ``F`` (FCN features),
  on ``F_GA`` (after GA), and the full GALD output;
* a Grad-CAM attribution (:mod:`gald.viz.attribution`) of a chosen class at the FCN, GA or GALD stage;
* the context probe: click a pixel of the prediction to see where its decision takes context from
  (the input gradient of its logit margin) and LD's gate there per channel group; and the
  benchmark's counterfactual, one click: repaint the sky (day ↔ dusk) and see which pixels flip;
* what the model is: architecture, classes, training data, the metrics its checkpoint records.

Every view of an image is recomputed when a new image is segmented (uploading one runs the
model, as clicking an example does), so none shows the previous image.

With no arguments it loads the checkpoint shipped in ``gald/assets`` (:func:`default_checkpoint`),
trained on the embedded synthetic benchmark by ``python -m gald.train``. ``--checkpoint`` takes any
checkpoint ``gald.train`` writes, or the authors' GALD-Net weights (converted on load with
:mod:`gald.deploy.official`). Checkpoints are read once at start with ``weights_only=True``;
uploads are only ever decoded as images.

The model is a :class:`gald.engine.predictor.Predictor` (:func:`load_predictor`). Everything the
page shows is computed by the plain functions of :mod:`gald.viz.views` (numpy in, numpy out); the
page's event handlers are the methods of :class:`Page` (plain values in, a dict out), which the
tests call directly; :func:`build_demo` only wires them to Gradio components.

Hardening: uploads are limited to :data:`MAX_FILE_SIZE`; images are decoded only in the formats of
:data:`IMAGE_FORMATS` and up to :data:`MAX_PIXELS` pixels; grayscale, RGBA, 16-bit and float
images are converted to 8-bit RGB with a notice; images with a side under :data:`MIN_SIDE` are
refused, and so are images too large for one whole-image pass (as ``gald.predict`` refuses them);
the views are drawn on a copy whose longest side is at most :data:`MAX_SIDE`; the page shows file
names, never the server's paths; the queue is bounded (:data:`QUEUE_SIZE`) and serves one
model call at a time; cached files (uploads too) are deleted after :data:`CACHE_SECONDS` and kept
under :data:`CACHE_BYTES` in total; Gradio's analytics are off.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

import argparse
import logging
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gald.config import BACKENDS, bounded
from gald.data.images import IMAGE_FORMATS, ImageError
from gald.deploy.official import official_arch as _official_arch  # noqa: F401 (its name here until 0.2.0)
from gald.engine.predictor import DEFAULT_CHECKPOINT, Predictor, default_checkpoint, load_predictor
from gald.engine.runtime import resolve_device
from gald.errors import HelpFormatter, add_debug_argument, command_errors

# The views moved to gald.viz.views in 0.2.1; their names stay importable from here in 0.2.x.
from gald.viz.views import (  # noqa: F401
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    STAGE_FEATURES,
    STAGE_NAMES,
    UPSCALE_SIDE,
    analyze,
    attribution_view,
    example_images,
    ld_colorbars,
    ld_effect_markdown,
    ld_views,
    load_image,
    model_banner,
    model_info_markdown,
    prediction_views,
    prepare_image,
    probe_view,
    save_labels,
    sky_swap_view,
    stage_views,
)

log = logging.getLogger("gald.app")

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ImageError",
    "Page",
    "Predictor",
    "analyze",
    "attribution_view",
    "build_demo",
    "guard_cache",
    "default_checkpoint",
    "example_images",
    "ld_views",
    "load_image",
    "load_predictor",
    "main",
    "model_info_markdown",
    "prediction_views",
    "prepare_image",
    "prune_cache",
    "stage_views",
]

MAX_FILE_SIZE = "10mb"
QUEUE_SIZE = 16
#: the page's files (uploads, whether or not a model call used them, and outputs) older than this
#: many seconds are deleted, checked as often (Gradio's ``delete_cache``; a file lives at most twice
#: this), and all at shutdown
CACHE_SECONDS = 3600
#: and every 10 s they are pruned back under this many bytes, the oldest first (:func:`guard_cache`)
CACHE_BYTES = 512 * 2**20


def prune_cache(demo, max_bytes: int = CACHE_BYTES) -> list[str]:
    """Delete the oldest of the page's cached files until they total at most ``max_bytes``.

    The page's files are those Gradio tracks for it (``demo.temp_file_sets``: uploads posted to
    ``/gradio_api/upload`` and the images it served); example images are kept. Gradio's sets are
    only read, never changed: Gradio's own deletion pass iterates over them in another thread, and
    skips the paths this removed.

    Returns:
        The deleted paths, oldest first.
    """
    keep = set()
    for component in demo.blocks.values():
        keep.update(getattr(component, "keep_in_cache", ()))
    files = []
    for tracked in demo.temp_file_sets:
        for path in list(tracked):  # a copy, made under the GIL: Gradio's threads add to the set
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # deleted already, or not yet moved into place by Gradio
                continue
            if path not in keep:
                files.append((st.st_ctime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        removed.append(path)
    return removed


def guard_cache(demo, max_bytes: int = CACHE_BYTES, every: float = 10.0) -> threading.Event:
    """Run :func:`prune_cache` every ``every`` seconds in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                removed = prune_cache(demo, max_bytes)
            except Exception:  # keep guarding: one failed pass (a permission error, ...) is logged
                log.exception("pruning the app's cache failed")
                continue
            if removed:
                log.info("cache over %d MB: deleted the %d oldest files", max_bytes // 2**20, len(removed))

    threading.Thread(target=loop, name="gald-cache-guard", daemon=True).start()
    return stop


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


PROBE_HINT = "Click a pixel of the prediction to probe where its decision takes context from."
RUNNER_UP = "runner-up"
#: the prediction is shown enlarged by a whole factor up to this longest side (nearest neighbour):
#: the browser never stretches it, so Gradio maps a click to the pixel under it
DISPLAY_SIDE = 768


class Page:
    """The page's event handlers, as plain methods: component values in, a dict of outputs out.

    :func:`build_demo` wires them to Gradio; tests and scripts call them directly. Each new image
    recomputes every view (:meth:`segment`), so no view shows the previous image.

    Args:
        predictor: the loaded model.
        label_dir: where :meth:`segment` writes the full-resolution label maps for download
            (default: a private temporary folder, removed at exit); the newest
            :attr:`KEEP_LABEL_FILES` are kept (Gradio serves copies from its own cache).
    """

    KEEP_LABEL_FILES = 4

    def __init__(self, predictor: Predictor, label_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        if label_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gald-app-labels-")
            label_dir = self._tmp.name
        self.label_dir = Path(label_dir)
        # numbered after any folders already there, so the newest folder always sorts last
        self._count = max((int(f.name) for f in self.label_dir.glob("[0-9]" * 6)), default=0)

    @staticmethod
    def zoom(analysis: dict) -> int:
        """The whole factor by which the prediction is shown enlarged (:data:`DISPLAY_SIDE`)."""
        return max(1, DISPLAY_SIDE // max(analysis["image"].shape[:2]))

    def _shown(self, overlay: np.ndarray, analysis: dict) -> np.ndarray:
        k = self.zoom(analysis)
        return overlay if k == 1 else overlay.repeat(k, axis=0).repeat(k, axis=1)

    @staticmethod
    def _need(analysis: dict | None) -> dict:
        if analysis is None:
            raise ImageError("segment an image first")
        return analysis

    def _label_file(self, analysis: dict, name: str) -> Path:
        self._count += 1
        folder = self.label_dir / f"{self._count:06d}"  # one folder per image: the download keeps the file's name
        path = save_labels(self.predictor, analysis, folder / f"{name}_label.png")
        for old in sorted(self.label_dir.glob("[0-9]" * 6))[: -self.KEEP_LABEL_FILES]:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        return path

    def segment(
        self, image, alpha: float = 0.5, channel: int = 0, scale: str = "unit", stage: str = "gald"
    ) -> dict[str, Any]:
        """Segment an image (a file path, or an array) and draw every view of it.

        Returns:
            ``overlay`` (enlarged by :meth:`zoom`), ``legend`` (HTML), ``areas`` ({class: fraction}),
            ``labels`` (the label map's PNG path), ``ld_mean``, ``ld_max``, ``ld_channel``,
            ``ld_bars`` (three HTML colour bars), ``stages`` (gallery items), ``attribution`` and ``attribution_text`` (Grad-CAM of
            the largest class at ``stage``), ``cls`` (that class), ``probe``/``probe_text``/
            ``probe_html`` and ``swap``/``swap_text`` (cleared: they need a click), ``state`` (the
            analysis) and ``status``.
        """
        p = self.predictor
        if isinstance(image, (str, os.PathLike)):
            array, notes = load_image(image)
            name = Path(image).stem
        else:
            array, notes = prepare_image(image)
            name = "image"
        analysis = analyze(p, array)
        pv = prediction_views(p, analysis, alpha)
        ld = ld_views(analysis, channel, scale) or (None, None, None)
        bars = ld_colorbars(analysis, channel, scale) or ("", "", "")
        top = max(pv["areas"], key=pv["areas"].get)  # the attribution starts on the largest class
        if stage == "ga" and not p.has_ga:
            stage = "gald"
        attribution, attribution_text = attribution_view(p, analysis, top, stage)
        (h, w), (vh, vw) = analysis["size"], analysis["image"].shape[:2]
        status = f"Segmented a {h}×{w} image at full resolution (test protocol: {p.protocol.mode})."
        if (vh, vw) != (h, w):
            status += f" The views are drawn at {vh}×{vw}; download the labels for every pixel."
        status += "".join(f"\n- {n}" for n in notes)
        return {
            "overlay": self._shown(pv["overlay"], analysis), "legend": pv["legend"], "areas": pv["areas"],
            "labels": str(self._label_file(analysis, name)),
            "ld_mean": ld[0], "ld_max": ld[1], "ld_channel": ld[2], "ld_bars": bars,
            "stages": stage_views(p, analysis, alpha),
            "attribution": attribution, "attribution_text": attribution_text, "cls": top,
            "probe": None, "probe_text": PROBE_HINT, "probe_html": "", "swap": None, "swap_text": "",
            "state": analysis, "status": status, "notes": notes,
        }  # fmt: skip

    def redraw_overlay(self, analysis: dict | None, alpha: float) -> dict[str, Any]:
        """The overlay and the stage gallery at a new opacity (no model call)."""
        analysis = self._need(analysis)
        return {"overlay": self._shown(prediction_views(self.predictor, analysis, alpha)["overlay"], analysis),
                "stages": stage_views(self.predictor, analysis, alpha)}

    def redraw_ld(self, analysis: dict | None, channel: int, scale: str) -> dict[str, Any]:
        """The LD views and their colour bars for another channel or scale (no model call)."""
        views = ld_views(self._need(analysis), channel, scale)
        if views is None:
            raise ImageError("this model has no Local Distribution masks")
        return {"ld_mean": views[0], "ld_max": views[1], "ld_channel": views[2],
                "ld_bars": ld_colorbars(analysis, channel, scale)}

    def attribute(self, analysis: dict | None, class_name: str, stage: str) -> dict[str, Any]:
        """Grad-CAM of ``class_name`` at ``stage``."""
        image, text = attribution_view(self.predictor, self._need(analysis), class_name, stage)
        return {"attribution": image, "attribution_text": text}

    def probe(self, analysis: dict | None, y: int, x: int, versus: str | None = RUNNER_UP) -> dict[str, Any]:
        """The context probe at view pixel ``(y, x)``."""
        image, text, html = probe_view(self.predictor, self._need(analysis), y, x, versus)
        return {"probe": image, "probe_text": text, "probe_html": html}

    def click(self, analysis: dict | None, column: int, row: int, versus: str | None = RUNNER_UP) -> dict[str, Any]:
        """The context probe at a click on the shown prediction (its pixel ``(column, row)``)."""
        k = self.zoom(self._need(analysis))
        return self.probe(analysis, row // k, column // k, versus)

    def swap_sky(self, analysis: dict | None, alpha: float = 0.5) -> dict[str, Any]:
        """The sky-swap counterfactual of the current image."""
        image, text = sky_swap_view(self.predictor, self._need(analysis), alpha)
        return {"swap": image, "swap_text": text}


def build_demo(
    predictor: Predictor,
    *,
    examples: Sequence[tuple[str, str]] | None = None,
    cache_seconds: int = CACHE_SECONDS,
):
    """The page, wired to :class:`Page`'s handlers. Endpoints: ``/segment``, ``/overlay``,
    ``/ld_masks``, ``/attribute``, ``/swap_sky`` (the probe answers clicks on the prediction).

    Args:
        predictor: the loaded model (see :func:`load_predictor`).
        examples: ``(path, label)`` pairs; default :func:`example_images`.
        cache_seconds: delete the page's cached files (uploads included) older than this, checked
            this often.

    Returns:
        A ``gr.Blocks`` with a bounded queue; launch it with :data:`LAUNCH_KWARGS`.
    """
    import gradio as gr

    if examples is None:
        examples = example_images()
    page = Page(predictor)
    n_ld = predictor.ld_channels

    def handler(method, keys, *, notify: bool = False):
        """``method``'s dict as the tuple of ``keys``, its ImageErrors as messages on the page."""

        def run(*args):
            try:
                result = method(*args)
            except ImageError as err:
                raise gr.Error(str(err)) from None
            if notify:
                for note in result["notes"]:
                    gr.Warning(note)
            values = []
            for key in keys:
                value = result[key]
                if key == "cls":
                    value = gr.Dropdown(value=value)
                values.extend(value if key == "ld_bars" else [value])
            return tuple(values)

        return run

    def probe_at(analysis, versus, evt):
        column, row = evt.index  # in the shown image's pixels
        return (*handler(page.click, PROBE_KEYS)(analysis, column, row, versus), gr.Tabs(selected="probe"))

    probe_at.__annotations__["evt"] = gr.SelectData  # the class itself: Gradio passes the click by this type

    stage_choices = [(STAGE_NAMES[s], s) for s in STAGE_NAMES if s != "ga" or predictor.has_ga]
    with gr.Blocks(title="GALD demo", analytics_enabled=False, delete_cache=(cache_seconds, cache_seconds)) as demo:
        gr.Markdown(
            "# GALD: Global Aggregation then Local Distribution\n"
            "Semantic segmentation with a GALD head (Li et al., BMVC 2019; authors' code: "
            "[lxtGH/GALD-Net](https://github.com/lxtGH/GALD-Net)): global context is aggregated (GA), then "
            "distributed back to each position by a learned mask **M** (LD, Eq. 1–2)."
        )
        banner = model_banner(predictor)
        if banner:
            gr.Markdown(banner, elem_id="model-banner")
        state = gr.State(None, time_to_live=cache_seconds)  # a session's analysis, dropped with its files
        with gr.Row():
            with gr.Column(scale=1):
                image_in = _image_input(type="filepath", image_mode=None, label="Image", height=240,
                                        sources=["upload", "clipboard"], elem_id="input-image")
                run = gr.Button("Segment again", variant="primary", elem_id="segment-button")
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
                overlay_out = gr.Image(label="Prediction (overlay): click a pixel to probe its context",
                                       elem_id="prediction", format="png", height=320, interactive=False)
                with gr.Row():
                    legend = gr.HTML(label="Classes and their areas", elem_id="legend")
                    labels = gr.DownloadButton("Label map (PNG, full resolution)", elem_id="labels-download",
                                               size="sm", scale=0)
        with gr.Tabs() as tabs:
            with gr.Tab("LD masks (Eq. 1)", id="ld"):
                gr.Markdown("The Local Distribution mask **M** = sigmoid(·) ∈ (0, 1) decides, per channel and "
                            "position, how much of the global feature F_GA is added back (F_GALD = M ⊙ F_GA + F_GA). "
                            "Colours: viridis, dark = low, yellow = high, on the fixed [0, 1] scale (comparable "
                            "across maps) or stretched per map. The slider and the scale re-draw from the cached "
                            "masks without running the model.")
                gr.Markdown(ld_effect_markdown(predictor), elem_id="ld-effect")
                ld_scale = gr.Radio([("fixed [0, 1]", "unit"), ("per-map min–max", "minmax")], value="unit",
                                    label="Colour scale", elem_id="ld-scale", interactive=n_ld > 0)
                channel = gr.Slider(0, max(n_ld - 1, 0), value=0, step=1, label=f"LD channel (0–{max(n_ld - 1, 0)})",
                                    interactive=n_ld > 0, elem_id="ld-channel")
                with gr.Row():
                    ld_images, ld_bars = [], []
                    for title, key in (("channel mean", "ld-mean"), ("channel max", "ld-max"),
                                       ("selected channel", "ld-channel-image")):
                        with gr.Column(min_width=160):
                            ld_images.append(gr.Image(label=title, format="png", interactive=False, height=200,
                                                      elem_id=key))
                            ld_bars.append(gr.HTML(elem_id=f"{key}-bar"))
                ld_mean, ld_max, ld_channel = ld_images
            with gr.Tab("Per-stage predictions", id="stages"):
                gr.Markdown("1×1 classifiers trained on the frozen features F (FCN) and F_GA (after GA), "
                            "next to the full GALD head's output (Sec. 4.3.1, Fig. 5); all three from one "
                            "whole-image pass.")
                stages = gr.Gallery(label="FCN / GA / GALD", columns=3, format="png", object_fit="contain",
                                    height="auto", elem_id="stages")
            with gr.Tab("Attribution", id="attribution"):
                with gr.Row():
                    cls = gr.Dropdown(predictor.classes, value=predictor.classes[0], label="Class")
                    stage = gr.Radio(stage_choices, value="gald", label="Stage")
                    explain = gr.Button("Explain")
                attribution_img = gr.Image(label="Grad-CAM", format="png", interactive=False, elem_id="attribution")
                attribution_text = gr.Markdown(elem_id="attribution-text")
            with gr.Tab("Context probe", id="probe"):
                gr.Markdown("Click a pixel of the prediction. The map is the gradient of that pixel's decision "
                            "(its class's logit minus the runner-up's, or a class you choose) with respect to the "
                            "input image: where the prediction takes its context from.")
                with gr.Row():
                    versus = gr.Dropdown([RUNNER_UP, *predictor.classes], value=RUNNER_UP,
                                         label="Decision: predicted class versus", elem_id="probe-versus")
                    swap = gr.Button("Swap the sky (day ↔ dusk)", elem_id="swap-button",
                                     visible="sky" in predictor.classes)
                with gr.Row():
                    with gr.Column():
                        probe_img = gr.Image(label="Where the decision looks", format="png", interactive=False,
                                             height=280, elem_id="probe")
                        probe_text = gr.Markdown(PROBE_HINT, elem_id="probe-text")
                        probe_html = gr.HTML(elem_id="probe-gate")
                    with gr.Column():
                        swap_img = gr.Image(label="Sky swapped: pixels that change class", format="png",
                                            interactive=False, height=280, elem_id="swap")
                        swap_text = gr.Markdown(elem_id="swap-text")
            with gr.Tab("Model", id="model"):
                gr.Markdown(f"{model_info_markdown(predictor)}, uploads ≤ {MAX_FILE_SIZE}", elem_id="model-info")

        comp = {
            "overlay": overlay_out, "legend": legend, "labels": labels, "ld_mean": ld_mean, "ld_max": ld_max,
            "ld_channel": ld_channel, "ld_bars": ld_bars, "stages": stages, "attribution": attribution_img,
            "attribution_text": attribution_text, "cls": cls, "probe": probe_img, "probe_text": probe_text,
            "probe_html": probe_html, "swap": swap_img, "swap_text": swap_text, "state": state, "status": status,
        }  # fmt: skip

        def outs(keys):
            return [c for k in keys for c in (comp[k] if k == "ld_bars" else [comp[k]])]

        segment = handler(page.segment, SEGMENT_KEYS, notify=True)
        inputs = [image_in, alpha, channel, ld_scale, stage]
        run.click(segment, inputs, outs(SEGMENT_KEYS), api_name="segment", concurrency_id="model")
        image_in.upload(segment, inputs, outs(SEGMENT_KEYS), api_visibility="private", concurrency_id="model")
        if ex is not None:  # clicking an example fills the input, then segments it
            ex.load_input_event.then(segment, inputs, outs(SEGMENT_KEYS), api_visibility="private",
                                     concurrency_id="model")
        alpha.release(handler(page.redraw_overlay, ("overlay", "stages")), [state, alpha], [overlay_out, stages],
                      api_name="overlay")
        redraw = handler(page.redraw_ld, LD_KEYS)
        channel.release(redraw, [state, channel, ld_scale], outs(LD_KEYS), api_name="ld_masks")
        ld_scale.change(lambda a, c, sc: (None, None, None, "", "", "") if a is None else redraw(a, c, sc),
                        [state, channel, ld_scale], outs(LD_KEYS), api_visibility="private")
        explain.click(handler(page.attribute, ("attribution", "attribution_text")), [state, cls, stage],
                      [attribution_img, attribution_text], api_name="attribute", concurrency_id="model")
        overlay_out.select(probe_at, [state, versus], [*outs(PROBE_KEYS), tabs], api_visibility="private",
                           concurrency_id="model")
        swap.click(handler(page.swap_sky, ("swap", "swap_text")), [state, alpha], [swap_img, swap_text],
                   api_name="swap_sky", concurrency_id="model")
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


#: the outputs of each event, in the order build_demo wires them ("ld_bars" stands for three)
SEGMENT_KEYS = ("overlay", "legend", "labels", "ld_mean", "ld_max", "ld_channel", "ld_bars", "stages", "attribution",
                "attribution_text", "cls", "probe", "probe_text", "probe_html", "swap", "swap_text", "state", "status")
LD_KEYS = ("ld_mean", "ld_max", "ld_channel", "ld_bars")
PROBE_KEYS = ("probe", "probe_text", "probe_html")


#: small inputs (the synthetic scenes are 128×256) are shown enlarged, label maps without blur; the
#: prediction only shrinks (it comes enlarged, :data:`DISPLAY_SIDE`): Gradio maps clicks on unstretched images
CSS = """
#ld-mean img, #ld-max img, #ld-channel-image img, #attribution img, #probe img, #swap img {
    width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
#prediction img { max-width: 100%; max-height: 100%; object-fit: contain; image-rendering: pixelated; }
.gald-legend th, .gald-legend td, .gald-gate th, .gald-gate td { padding: 1px 6px !important; border: none !important; }
"""

#: keyword arguments of ``demo.launch`` the app always uses (tests use them too).
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "footer_links": [], "show_error": True, "css": CSS}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app/demo.py", description="Serve the GALD demo app (Gradio) on this machine.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None,
                        help="a gald checkpoint (model.pt from gald.train, or gald.convert_official output) or the "
                             "authors' GALD-Net .pth; default: the shipped synthetic-benchmark model")
    parser.add_argument("--untrained", action="store_true", help="random weights (to try the page without a checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=7860, help="port to listen on")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=bounded(int, 1), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--backend", default="torch", choices=BACKENDS,
                        help="what computes the prediction: torch, or onnxruntime on gald's own ONNX export (CPU; "
                             "the LD, stage, attribution and probe views still use torch)")
    parser.add_argument("--cache-seconds", type=bounded(int, 1), default=CACHE_SECONDS,
                        help="delete uploads and served images older than this, checked this often")
    parser.add_argument("--cache-mb", type=bounded(int, 1), default=CACHE_BYTES // 2**20,
                        help="keep the uploads and served images below this many MB in total, oldest deleted first")
    add_debug_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, load the model once, and serve the app until interrupted."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check, tighter than its default
    with command_errors(parser.prog, debug=args.debug):
        predictor = load_predictor(args.checkpoint, untrained=args.untrained, device=str(resolve_device(args.device)))
        predictor.use_backend(args.backend)
    log.info("loaded %s (%s, %d classes)", predictor.source, predictor.kind, predictor.num_classes)
    demo = build_demo(predictor, cache_seconds=args.cache_seconds)
    guard_cache(demo, args.cache_mb * 2**20)
    demo.launch(server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
