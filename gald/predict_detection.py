"""Draw a trained detector's boxes (class name + score) and instance masks on your images.

    python -m gald.predict_detection --checkpoint runs/mask_rcnn-gald_tiny-fpn_synthetic/model.pt \\
        --input photos/ --output predictions/ --score-threshold 0.5

``--input`` takes files, folders and glob patterns (several allowed); every readable image becomes
``<output>/<name>.png``. An unreadable image is named in the log and skipped, the others carry on,
and the exit code is non-zero at the end if any failed (or nothing matched).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.config import bounded
from gald.data.images import MAX_PIXELS, ImageError, read_image
from gald.engine.predictor import load_detector
from gald.engine.runtime import resolve_device
from gald.errors import HelpFormatter, MissingFileError, add_debug_argument, command_errors
from gald.files import check_output
from gald.viz.overlays import draw_detections

log = logging.getLogger("gald.predict_detection")

__all__ = ["IMAGE_EXTENSIONS", "load_detector", "draw_detections", "expand_inputs", "predict_images", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in order, without duplicates."""
    paths: list[Path] = []
    for entry in inputs:
        p = Path(entry)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.exists():
            found = [p]
        else:
            found = [Path(q) for q in sorted(glob.glob(entry))]
            if not found:
                log.error("no image matches %r (not a file, folder or matching glob)", entry)
        paths += [q for q in found if q not in paths]
    return paths


@torch.no_grad()
def predict_images(
    model: torch.nn.Module,
    classes: Sequence[str],
    paths: Sequence[Path],
    output: str | os.PathLike,
    *,
    score_threshold: float = 0.5,
    device: torch.device | str = "cpu",
    force: bool = False,
    max_pixels: int | None = MAX_PIXELS,
) -> tuple[list[Path], list[Path]]:
    """Predict and draw every image of ``paths`` into ``output``; returns ``(written, failed)``.

    Unreadable images, and images over ``max_pixels`` (read from the header), are skipped and
    reported, as ``gald.predict`` does. An existing output is refused unless ``force``; an input, always.
    """
    out = Path(output)
    inputs = {Path(p).resolve() for p in paths}
    targets, seen = [], {}
    for path in paths:  # two inputs with the same stem: the later ones get _1, _2, ...
        stem = Path(path).stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        targets.append(out / (f"{stem}.png" if n == 0 else f"{stem}_{n}.png"))
    for target in targets:  # every output checked before the first is written
        check_output(target, inputs=[target] if target.resolve() in inputs else (), force=force)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    written, failed = [], []
    for path, target in zip(paths, targets):
        try:
            image = read_image(path, max_pixels=max_pixels)[0]
        except ImageError as err:
            log.error("cannot read image %s: %s; skipped", path, err)
            failed.append(path)
            continue
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).to(device)
        pred = {k: v.cpu() for k, v in model([x])[0].items()}
        drawn = draw_detections(image, pred, classes, score_threshold=score_threshold)
        Image.fromarray(drawn).save(target)
        log.info("%s: %d detection(s) >= %.2f -> %s", path, int((pred["scores"] >= score_threshold).sum()),
                 score_threshold, target)
        written.append(target)
    return written, failed


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.predict_detection", description=__doc__, formatter_class=HelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt of a detection run")
    parser.add_argument("--input", nargs="+", required=True, help="image files, folders or glob patterns")
    parser.add_argument("--output", required=True, help="folder for the drawn PNGs")
    parser.add_argument("--score-threshold", type=bounded(float, 0, 1), default=0.5,
                        help="draw detections scoring at least this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--force", action="store_true", help="replace existing output files (never an input)")
    parser.add_argument("--max-pixels", type=bounded(int, 1), default=MAX_PIXELS,
                        help="skip images with more pixels (read from the header, before decoding)")
    add_debug_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        model, classes = load_detector(args.checkpoint)
        paths = expand_inputs(args.input)
        if not paths:
            raise MissingFileError(f"no images found in {' '.join(args.input)}")
        written, failed = predict_images(model, classes, paths, args.output, score_threshold=args.score_threshold,
                                         device=resolve_device(args.device), force=args.force, max_pixels=args.max_pixels)
    log.info("wrote %d image(s) to %s", len(written), args.output)
    if failed:
        log.error("%d image(s) could not be read: %s", len(failed), ", ".join(map(str, failed)))
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    sys.exit(main())
