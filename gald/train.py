"""``python -m gald.train`` — train a GALD segmentation model (or, with ``--task detection``, a detector).

With no arguments it trains the embedded default: a slim Bottleneck ResNet (OS 8) with CGNL + LD
(d = 2) on the procedurally generated scene benchmark (v2, 128×256), then fine-tunes the stage
classifiers on the frozen model (Sec. 4.3.1), evaluates, and writes to ``runs/<name>/``:
``config.yaml``, ``train.log``, ``metrics.json``, ``curves.png``, ``last.pt`` (full training state,
for ``--resume auto``) and ``model.pt`` (weights + config + metrics, what the other tools load).
The loop is :func:`gald.engine.segmentation.fit` (detection: :func:`gald.engine.detection.fit`);
this module parses the flags and calls it.

Examples::

    python -m gald.train                                   # embedded default, CPU, minutes
    python -m gald.train --config configs/gald-cgnl_r101-d8_cityscapes-769x769.yaml
    torchrun --nproc_per_node=8 -m gald.train --config configs/gald-cgnl_r50-d8_cityscapes-769x769.yaml
    python -m gald.train --ga nl --block ldga --iterations 200 --name quick
    python -m gald.train --task detection --config configs/faster_rcnn-gald_r50-fpn_voc0712-14e.yaml --data-root data/VOCdevkit
    torchrun --nproc_per_node=8 -m gald.train --task detection --config configs/mask_rcnn-gald_r50-fpn_coco-1x.yaml --amp bf16
"""

from __future__ import annotations

import argparse
import sys

from gald.config import DETECTION_DATASETS, HOST_ARCHS, DetectionConfig, add_config_arguments, config_from_args
from gald.data.build import DATASET_NAMES
from gald.models import MODELS
from gald.models.context import GA_MODULES
from gald.models.detector import CONTEXTS, DETECTORS, PLACEMENTS
from gald.models.heads import ARRANGEMENTS
from gald.models.ld import LD_DOWNSAMPLING, LD_INITS
from gald.data import synthetic
from gald.engine import detection
from gald.errors import HelpFormatter, add_debug_argument, command_errors
from gald.engine.segmentation import fit

# The training API that lived here until 0.2.0, now in gald.engine: deprecated aliases, kept for one minor release.
from gald.engine.runtime import autocast, log_to_stdout, resolve_device, run_logging, seed_everything  # noqa: F401
from gald.engine.segmentation import (  # noqa: F401
    evaluate,
    finetune_stage_classifiers,
    freeze_batchnorm,
    output_metrics,
    save_curves,
    train_step,
    unwrap,
)

__all__ = ["get_args_parser", "get_detection_args_parser", "detection_cli", "cli", "main"]

#: ``main(cfg)``: train a :class:`~gald.config.TrainConfig` (the engine's :func:`~gald.engine.segmentation.fit`).
main = fit


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.train",
        description="Train a GALD segmentation model. Every config key is also a flag (--key value).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--task", default="segmentation", choices=["segmentation", "detection"],
                        help="detection: Faster / Mask R-CNN + FPN with GALD, with its own config and flags "
                             "(python -m gald.train --task detection --help)")
    add_config_arguments(parser, choices={"arch": (*MODELS, *HOST_ARCHS), "ga": GA_MODULES, "block": ARRANGEMENTS,
                                          "ld_downsample": LD_DOWNSAMPLING, "ld_init": LD_INITS, "dataset": DATASET_NAMES})
    add_debug_argument(parser)
    return parser


def get_detection_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.train --task detection",
        description="Train a GALD detector (Faster / Mask R-CNN + FPN). Every config key is also a flag.",
        formatter_class=HelpFormatter,
    )
    add_config_arguments(parser, DetectionConfig, choices={"arch": DETECTORS, "context": CONTEXTS, "placement": PLACEMENTS,
                                                           "ga": GA_MODULES, "dataset": DETECTION_DATASETS})
    add_debug_argument(parser)
    return parser


def detection_cli(argv: list[str] | None = None) -> dict:
    """``python -m gald.train --task detection``: parse a detection config and train it."""
    parser = get_detection_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        cfg = config_from_args(args, DetectionConfig)
        return detection.fit(cfg)


def cli(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    tasks = [a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
             for i, a in enumerate(argv) if a == "--task" or a.startswith("--task=")]
    argv = [a for i, a in enumerate(argv) if not (a == "--task" or a.startswith("--task=")
                                                    or (i and argv[i - 1] == "--task"))]
    if tasks and tasks[-1] not in ("segmentation", "detection"):
        get_args_parser().error(f"--task must be 'segmentation' (default) or 'detection', got {tasks[-1]!r}")
    if tasks and tasks[-1] == "detection":  # Faster / Mask R-CNN: its own config and loop
        return detection_cli(argv)
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        cfg = config_from_args(args)
        if cfg.dataset == "synthetic":
            synthetic.check_version(cfg.synthetic_version)
        return fit(cfg)


if __name__ == "__main__":
    cli()
