"""``python -m gald.predict`` — run a segmentation checkpoint on your own images.

Inputs are files, folders (searched recursively) or glob patterns. For each image it writes, under
``--out``:

* ``{name}_overlay.png`` — the prediction blended over the image in the checkpoint's palette;
* ``{name}_label.png`` — train ids as a palette PNG (pixel values are class ids, viewers show colours);
* with ``--label-ids``: ``{name}_labelIds.png`` — dataset label ids (Cityscapes labelIds for a
  Cityscapes checkpoint), the test server's format;
* with ``--ld-masks``: ``{name}_ld_mean.png`` and ``{name}_ld_max.png`` — the LD mask ``M`` averaged
  and max-reduced over channels (Sec. 3.2, Fig. 4), from one whole-image pass;

and, once, what they mean: ``legend.png`` and ``classes.json`` (each class's id, name and colour,
the model's kind and the test protocol) and, with ``--ld-masks``, ``ld_scale.png`` (the colour
scale of ``M``). A model trained only on the generated benchmark gets one warning; ``--ld-effect``
reports the LD effect its checkpoint records.

Files found inside a folder keep their relative path. By default every image is segmented with
the test protocol the checkpoint records (the app uses the same): the whole image for models of the
embedded benchmark, windows of the training crop blended with Gaussian weights for real datasets
and the authors' weights; ``--mode``, ``--crop-size``, ``--stride`` and ``--blend`` override it,
``--scales`` and ``--flip`` add the multi-scale + flip protocol. An unreadable image is reported by
name and skipped; the exit code is 1 if any image failed. Without ``--checkpoint`` the model shipped with the package (trained on the
embedded synthetic benchmark) is used.

Examples::

    python -m gald.predict photos/ --out predictions/
    python -m gald.predict "street/*.jpg" --checkpoint model.pt --scales 0.75 1.0 1.25 --flip --ld-masks
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from gald.config import BACKENDS, bounded
from gald.data.images import MAX_PIXELS, WHOLE_MAX_PIXELS, ImageError, image_size, read_image
from gald.deploy.submission import train_ids_to_label_ids, write_label_png
from gald.engine.inference import add_protocol_arguments, checkpoint_protocol, protocol_from_args
from gald.engine.predictor import Predictor, default_checkpoint, whole_pass_gib
from gald.engine.runtime import resolve_device
from gald.errors import ConfigError, HelpFormatter, MissingFileError, add_debug_argument, command_errors
from gald.files import check_output, save_png
from gald.metrics.ld_effect import format_ld_effect
from gald.models import read_checkpoint, require_task
from gald.viz.overlays import ld_mask_image, overlay, save_label_png

log = logging.getLogger("gald.predict")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

__all__ = ["Predictor", "find_images", "read_rgb", "main"]


def read_rgb(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an image file as (H, W, 3) uint8 RGB (:func:`gald.data.images.read_image`), refusing
    more than ``max_pixels`` from the header, before decoding.

    Raises:
        ImageError: naming the file, if it is not a readable image or too large.
    """
    return read_image(path, max_pixels=max_pixels)[0]


def find_images(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """``(file, name relative to the output folder)`` for every image named by files, folders or globs.

    Raises:
        FileNotFoundError: an input matches nothing (named).
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            found += [(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise MissingFileError(f"no image file, folder or glob match for {item!r}")
            found += [(m, Path(m.stem)) for m in files]
    names: dict[Path, int] = {}
    unique = []
    for file, name in found:  # two inputs with the same stem: the later ones get _1, _2, ...
        n = names.get(name, 0)
        names[name] = n + 1
        unique.append((file, name if n == 0 else name.with_name(f"{name.name}_{n}")))
    return unique


LEGEND_PNG, CLASSES_JSON, LD_SCALE_PNG = "legend.png", "classes.json", "ld_scale.png"


def _write_keys(predictor: Predictor, out: Path, *, ld_scale: bool) -> list[Path]:
    """``legend.png`` and ``classes.json`` (id, name, RGB colour of each class) and, for LD masks,
    ``ld_scale.png`` (the fixed [0, 1] colour scale of ``M``), beside the outputs."""
    from gald.viz.figures import colorbar_figure, legend_figure  # matplotlib only when writing

    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig = legend_figure(predictor.classes, predictor.palette, title=f"classes ({predictor.kind} model)")
    fig.savefig(out / LEGEND_PNG, dpi=150, bbox_inches="tight")
    written.append(out / LEGEND_PNG)
    table = [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(zip(predictor.classes, predictor.palette))]
    record = {"classes": table, "model": predictor.kind, "protocol": dataclasses.asdict(predictor.protocol),
              "ld_masks": "M in [0, 1], viridis (ld_scale.png)" if ld_scale else None}
    (out / CLASSES_JSON).write_text(json.dumps(record, indent=2) + "\n")
    written.append(out / CLASSES_JSON)
    if ld_scale:
        colorbar_figure("LD mask M (channel mean or max)").savefig(out / LD_SCALE_PNG, dpi=150, bbox_inches="tight")
        written.append(out / LD_SCALE_PNG)
    return written


def predict_files(
    predictor: Predictor,
    files: Sequence[tuple[Path, Path]],
    out_dir: str | os.PathLike,
    *,
    alpha: float = 0.5,
    label_ids: bool = False,
    ld_masks: bool = False,
    progress: bool = True,
    force: bool = False,
    max_pixels: int | None = MAX_PIXELS,
    max_whole_pixels: int | None = WHOLE_MAX_PIXELS,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Predict every file and write its outputs; returns ``(written files, [(failed input, reason)])``.

    An output that exists is refused unless ``force``; one that is an input, always
    (:func:`gald.files.check_output`). Unreadable or too large images are skipped and reported.
    Under a whole-image protocol, an image of more than ``max_whole_pixels`` (read from the
    headers, before anything runs) is refused: one pass over it needs memory in proportion.
    """
    if label_ids and predictor.train_to_label is None:
        raise ConfigError("--label-ids needs a checkpoint whose dataset has label ids (Cityscapes, Mapillary, synthetic)")
    out = Path(out_dir)
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    warned_no_ld = False
    crop = predictor.protocol.crop_size
    inputs = {f.resolve() for f, _ in files}
    suffixes = ["_overlay.png", "_label.png"] + (["_labelIds.png"] if label_ids else []) + (
        ["_ld_mean.png", "_ld_max.png"] if ld_masks else [])
    if predictor.protocol.mode == "whole" and max_whole_pixels is not None:
        for file, _ in files:
            size = image_size(file)
            pixels = 0 if size is None else size[0] * size[1]
            if max_whole_pixels < pixels <= (max_pixels or pixels):  # larger ones are skipped anyway
                gib = whole_pass_gib(size[0] * size[1])
                raise ConfigError(
                    f"{file}: {size[0]}×{size[1]} is more than --max-whole-pixels ({max_whole_pixels:,}) for a "
                    f"whole-image pass, which would need about {gib:.1f} GiB (the shipped model's rate); use "
                    "--mode auto (windows), or raise --max-whole-pixels"
                )
    # what the outputs mean, once per folder: classes and colours, and the LD masks' colour scale
    keys = [out / LEGEND_PNG, out / CLASSES_JSON] + ([out / LD_SCALE_PNG] if ld_masks else [])
    for _, name in files:  # every output checked before the first is written
        base = out / name
        keys += [base.with_name(base.name + suffix) for suffix in suffixes]
    for target in keys:
        check_output(target, inputs=[target] if target.resolve() in inputs else (), force=force)
    written += _write_keys(predictor, out, ld_scale=ld_masks)
    for file, name in tqdm(files, desc="predict", unit="img", disable=not progress):
        try:
            image = read_rgb(file, max_pixels=max_pixels)
        except ImageError as err:
            log.error("cannot read %s: %s", file, err)
            failed.append((file, str(err)))
            continue
        pred = predictor.predict(image)
        base = out / name
        overlay_path = base.with_name(base.name + "_overlay.png")
        save_png(Image.fromarray(overlay(image, pred, predictor.palette, alpha=alpha)), overlay_path)
        written.append(overlay_path)
        label_path = base.with_name(base.name + "_label.png")
        save_label_png(pred, predictor.palette, label_path)
        written.append(label_path)
        if label_ids:
            path = base.with_name(base.name + "_labelIds.png")
            written.append(write_label_png(train_ids_to_label_ids(pred, predictor.train_to_label), path))
        if ld_masks:
            m = predictor.ld_mask(image, max_side=None if crop is None else max(crop))
            if m is None:
                if not warned_no_ld:
                    log.warning("the model has no Local Distribution block (block=%r): no LD masks", predictor.model.config.get("block"))
                    warned_no_ld = True
                continue
            for reduce in ("mean", "max"):
                path = base.with_name(f"{base.name}_ld_{reduce}.png")
                save_png(Image.fromarray(ld_mask_image(m, reduce, size=image.shape[:2])), path)
                written.append(path)
    return written, failed


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.predict", description="Segment your own images with a gald checkpoint.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("--checkpoint", default=None, help="gald checkpoint (default: the shipped synthetic-benchmark model)")
    parser.add_argument("--out", default="predictions", help="output folder")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--nnpack", action="store_true",
                        help="CPU: the fastest in-process path: BatchNorm folded, channels-last, the wide 3×3 "
                             "convolutions on NNPACK (equal to fp32 rounding; docs/speed.md)")
    parser.add_argument("--backend", default="torch", choices=BACKENDS,
                        help="what runs the network: torch, or onnxruntime on gald's own ONNX export (CPU; "
                             "exported once at start; docs/speed.md compares them)")
    parser.add_argument("--alpha", type=bounded(float, 0, 1), default=0.5, help="overlay opacity of the prediction")
    parser.add_argument("--label-ids", action="store_true", help="also write dataset label ids (test-server format)")
    parser.add_argument("--ld-masks", action="store_true",
                        help="also write LD-mask images (channel mean and max; their colour scale: ld_scale.png)")
    parser.add_argument("--ld-effect", action="store_true",
                        help="also report the checkpoint's measured LD effect (what mIoU loses without LD's masks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="replace existing output files (never an input)")
    parser.add_argument("--max-pixels", type=bounded(int, 1), default=MAX_PIXELS,
                        help="skip images with more pixels (read from the header, before decoding)")
    parser.add_argument("--max-whole-pixels", type=bounded(int, 1), default=WHOLE_MAX_PIXELS,
                        help="refuse a whole-image pass (--mode whole, or the checkpoint's protocol) over more pixels")
    add_debug_argument(parser)
    add_protocol_arguments(parser, from_checkpoint=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))
    checkpoint = args.checkpoint or str(default_checkpoint())
    ckpt = read_checkpoint(checkpoint)
    require_task(ckpt, "segmentation", what=checkpoint)
    train_crop = ckpt.get("config", {}).get("train", {}).get("crop_size") or [769, 769]
    predictor = Predictor.from_checkpoint(
        checkpoint, protocol=protocol_from_args(args, train_crop, default=checkpoint_protocol(ckpt)),
        normalization=args.normalization, device=device, ckpt=ckpt, nnpack=args.nnpack,
    )
    files = find_images(args.inputs)
    predictor.use_backend(args.backend)
    log.info("%d images, checkpoint %s (%d classes, %s normalisation), %s", len(files), checkpoint,
             len(predictor.classes), predictor.normalization, predictor.protocol)  # fmt: skip
    if predictor.kind == "synthetic":
        log.warning("this model was trained on the generated street scenes of the embedded benchmark only: on real "
                    "photos its classes are guesses; pass --checkpoint for a model trained on real data")
    if args.ld_effect:
        log.info("%s", format_ld_effect(predictor.ld_effect) if predictor.ld_effect else
                 "LD effect: not measured for this checkpoint (python -m gald.evaluate --ld-effect measures it)")
    written, failed = predict_files(
        predictor, files, args.out, alpha=args.alpha, label_ids=args.label_ids, ld_masks=args.ld_masks,
        progress=not args.no_progress, force=args.force, max_pixels=args.max_pixels,
        max_whole_pixels=args.max_whole_pixels,
    )  # fmt: skip
    log.info("wrote %d files to %s", len(written), args.out)
    if failed:
        log.error("%d of %d images could not be read: %s", len(failed), len(files), ", ".join(str(f) for f, _ in failed))
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    sys.exit(main())
