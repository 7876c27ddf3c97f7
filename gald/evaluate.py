"""``python -m gald.evaluate`` — evaluate a checkpoint under the paper's test protocol.

Whole-image or sliding-window inference, optionally multi-scale and flipped (the protocol behind the
paper's test-server numbers, Sec. 4.2), on the validation split of the data the checkpoint was
trained on or any other. Reports per-class IoU (also as a row in the layout of the paper's Table 4),
mIoU, pixel accuracy, small- vs large-pattern mIoU, boundary mIoU and per-instance recall by area
(synthetic benchmark), for the final output and for the stage classifiers when the model has them
(whole-image protocol only). ``--ld-effect`` adds the causal LD metric (:mod:`gald.metrics.ld_effect`): what
each metric loses when LD's masks are replaced by their spatial means, with bootstrap intervals, and
the large- vs small-pattern contrast of the channel-mean mask. ``--out`` writes the numbers as JSON; ``--export-dir`` writes
full-resolution prediction PNGs (Cityscapes labelIds for the test server, see :mod:`gald.deploy.submission`).
The work is :func:`gald.engine.evaluation.evaluate_checkpoint`; this module parses the flags and prints.

Examples::

    python -m gald.evaluate --checkpoint runs/gald-cgnl_tiny-d2_synthetic-v2-128x256/model.pt
    python -m gald.evaluate --checkpoint runs/gald-cgnl_tiny-d2_synthetic-v2-128x256/model.pt --ld-effect
    python -m gald.evaluate --checkpoint model.pt --dataset cityscapes --data-root $CITYSCAPES_DATASET \\
        --mode slide --crop-size 769 769 --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip
    python -m gald.evaluate --checkpoint model.pt --dataset cityscapes --split test \\
        --mode slide --crop-size 769 769 --scales 0.75 1.0 1.25 --flip --export-dir results/test
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys

from gald.config import bounded
from gald.data.build import DATASET_NAMES
from gald.engine.evaluation import evaluate_checkpoint
from gald.engine.inference import add_protocol_arguments, protocol_from_args
from gald.engine.runtime import resolve_device
from gald.errors import HelpFormatter, ConfigError, OutputExistsError, add_debug_argument, command_errors
from gald.files import check_output
from gald.metrics.ld_effect import format_ld_effect, ld_effect_summary
from gald.metrics.segmentation import format_class_row, format_table
from gald.models import LD_ARRANGEMENTS, read_checkpoint, require_task

# Deprecated aliases (moved to gald.engine.inference in 0.2.0), kept for one minor release.
from gald.engine.inference import NORMALIZATIONS, checkpoint_normalization  # noqa: F401

log = logging.getLogger("gald.evaluate")

__all__ = ["get_args_parser", "evaluate_checkpoint", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.evaluate", description="Evaluate a gald segmentation checkpoint.", formatter_class=HelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt written by gald.train or gald.convert_official")
    parser.add_argument("--dataset", default=None, help=f"dataset to evaluate on, one of: {', '.join(DATASET_NAMES)} (default: as trained)")
    parser.add_argument("--data-root", default=None, help="dataset root for the on-disk datasets (default: as trained)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the config's validation split)")
    parser.add_argument("--num-val", type=bounded(int, 1), default=None, help="synthetic: number of validation images (default: as trained)")
    parser.add_argument("--batch-size", type=bounded(int, 1), default=1, help="images per batch (same-size images only)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--nnpack", action="store_true",
                        help="CPU: compute the wide 3×3 convolutions with NNPACK (faster; equal to fp32 rounding)")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage classifiers")
    parser.add_argument("--ld-effect", action="store_true",
                        help="also measure the LD effect: each metric as trained minus with LD's masks replaced by "
                             "their spatial means, with 95%% bootstrap intervals over images (models with LD only)")
    parser.add_argument("--sesoi", type=bounded(float, 0, open_low=True), default=1.0,
                        help="smallest LD effect of interest in mIoU points, for the 'LD inert' verdict")
    parser.add_argument("--method", default="gald", help="row name of the Table 4-style per-class row")
    parser.add_argument("--out", default=None, help="write the results as JSON here (default: not written)")
    parser.add_argument("--export-dir", default=None,
                        help="write full-resolution predictions here (labelIds for Cityscapes: test-server format; default: none)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out, write into a non-empty --export-dir")
    add_debug_argument(parser)
    add_protocol_arguments(parser)
    return parser


def _format_ld_effect(results: dict) -> str:
    eff = results["ld_effect"]
    lines = [format_ld_effect(ld_effect_summary(eff))]
    for name, e in eff["metrics"].items():
        lo, hi = e["ci95"]
        lines.append(f"  {name:<14} {e['effect']:+6.2f}  [{lo:+.2f}, {hi:+.2f}]   ({e['as_trained']:.2f} → {e['intervened']:.2f})")
    if "mask_contrast" in results:
        c = results["mask_contrast"]
        lines.append(f"mask contrast (channel-mean M on large − small-pattern pixels): {c['contrast']:+.4f} "
                     f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        return _main(args)


def _main(args: argparse.Namespace) -> dict:
    if args.out:
        check_output(args.out, inputs=[args.checkpoint], force=args.force, what="--out")
    if args.export_dir and os.path.isdir(args.export_dir) and os.listdir(args.export_dir) and not args.force:
        raise OutputExistsError(f"--export-dir {args.export_dir!r} is not empty; pass --force to write into it")
    ckpt = read_checkpoint(args.checkpoint)
    require_task(ckpt, "segmentation", what=args.checkpoint)
    block = ckpt.get("config", {}).get("model", {}).get("block", "gald")
    if args.ld_effect and block not in LD_ARRANGEMENTS:
        raise ConfigError(f"{args.checkpoint}: --ld-effect needs a model with LD (block one of {list(LD_ARRANGEMENTS)}); "
                          f"this one has block {block!r}")
    train_crop = ckpt.get("config", {}).get("train", {}).get("crop_size")
    results = evaluate_checkpoint(
        args.checkpoint, dataset=args.dataset, data_root=args.data_root, split=args.split, num_val=args.num_val,
        batch_size=args.batch_size, device=str(resolve_device(args.device)), stages=not args.no_stages,
        protocol=protocol_from_args(args, train_crop), normalization=args.normalization, export_dir=args.export_dir,
        ckpt=ckpt, nnpack=args.nnpack, ld_effect=args.ld_effect, sesoi=args.sesoi,
    )  # fmt: skip
    res = results["out"]
    title = f"{args.checkpoint} on {results['dataset']}/{results['split']} ({results['images']} images)"
    if math.isnan(res["mIoU"]):
        log.info("%s: no labelled pixels (a test split?); nothing to score", title)
    else:
        log.info("\n%s", format_table(res, title=title))
        log.info("\n%s", format_class_row(res, args.method))
    for name in ("logits_fcn", "logits_ga"):
        if name in results:
            r = results[name]
            log.info("stage classifier %-10s mIoU %.2f  small %.2f  boundary %.2f", name, r["mIoU"], r.get("small_mIoU", float("nan")), r["boundary_mIoU"])
    if "ld_effect" in results:
        log.info("%s", _format_ld_effect(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        log.info("wrote %s", args.out)
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
