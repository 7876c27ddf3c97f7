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
page shows is computed by the plain functions of :mod:`gald.viz.views` (numpy in, numpy out), which
the tests and notebooks call directly; :func:`build_demo` only wires them to Gradio components.

Hardening: uploads are limited to :data:`MAX_FILE_SIZE`; images are decoded only in the formats of
:data:`IMAGE_FORMATS` and up to :data:`MAX_PIXELS` pixels; grayscale, RGBA, 16-bit and float
images are converted to 8-bit RGB with a notice; images with a side over :data:`MAX_SIDE` are
downscaled to it, images with a side under :data:`MIN_SIDE` are refused and those under
:data:`UPSCALE_SIDE` upscaled to it; the queue is bounded (:data:`QUEUE_SIZE`) and serves one
model call at a time; cached files (uploads too) are deleted after :data:`CACHE_SECONDS` and kept
under :data:`CACHE_BYTES` in total; Gradio's analytics are off.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

import torch
from PIL import Image, UnidentifiedImageError

from gald.config import bounded
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
    ld_effect_markdown,
    ld_views,
    load_image,
    model_banner,
    model_info_markdown,
    prediction_views,
    prepare_image,
    stage_views,
)

log = logging.getLogger("gald.app")

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ImageError",
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


def build_demo(
    predictor: Predictor,
    *,
    examples: Sequence[tuple[str, str]] | None = None,
    cache_seconds: int = CACHE_SECONDS,
):
    """The page, wired to the functions above. Endpoints: ``/segment``, ``/overlay``,
    ``/ld_masks``, ``/attribute``.

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
                gr.Markdown(f"{model_info_markdown(predictor)}, uploads ≤ {MAX_FILE_SIZE}", elem_id="model-info")

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
    log.info("loaded %s (%s, %d classes)", predictor.source, predictor.kind, predictor.num_classes)
    demo = build_demo(predictor, cache_seconds=args.cache_seconds)
    guard_cache(demo, args.cache_mb * 2**20)
    demo.launch(server_name=args.host, server_port=args.port, **LAUNCH_KWARGS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
