"""``python -m gald.evaluate`` — evaluate a checkpoint under the paper's test protocol.

Whole-image or sliding-window inference, optionally multi-scale and flipped (the protocol behind the
paper's test-server numbers, Sec. 4.2), on the validation split of the data the checkpoint was
trained on or any other. Reports per-class IoU (also as a row in the layout of the paper's Table 4),
mIoU, pixel accuracy, small- vs large-pattern mIoU, boundary mIoU and per-instance recall by area
(synthetic benchmark), for the final output and for the stage classifiers when the model has them
(whole-image protocol only). ``--ld-effect`` adds the causal LD metric (:mod:`gald.ld_effect`): what
each metric loses when LD's masks are replaced by their spatial means, with bootstrap intervals, and
the large- vs small-pattern contrast of the channel-mean mask. ``--out`` writes the numbers as JSON; ``--export-dir`` writes
full-resolution prediction PNGs (Cityscapes labelIds for the test server, see :mod:`gald.submission`).

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
import dataclasses
import json
import logging
import math
import sys

import numpy as np
import torch

from gald.config import TrainConfig, recorded_train_config
from gald.data.build import build_segmentation_data
from gald.inference import TestProtocol
from gald.metrics import format_class_row, format_table
from gald.models import LD_ARRANGEMENTS, convert_to_nnpack, model_from_checkpoint, read_checkpoint
from gald.submission import submission_path, train_ids_to_label_ids, write_label_png

log = logging.getLogger("gald.evaluate")

NORMALIZATIONS = ("imagenet", "bgr_mean")


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of :class:`~gald.inference.TestProtocol` (shared with ``gald.predict``)."""
    g = parser.add_argument_group("test protocol")
    g.add_argument("--mode", default="whole", choices=["whole", "slide", "auto"],
                   help="whole image, sliding windows, or windows only where the image exceeds the crop")
    g.add_argument("--crop-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="window size (default: the checkpoint's training crop)")
    g.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="window step (default: 2/3 of the crop, the authors' 1/3 overlap)")
    g.add_argument("--scales", type=float, nargs="+", default=[1.0], help="e.g. 0.5 0.75 1.0 1.25 1.5 1.75")
    g.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    g.add_argument("--tile-batch", type=int, default=4, help="windows per forward call")
    g.add_argument("--average", default="logits", choices=["logits", "probs"], help="what is averaged over views")
    g.add_argument("--normalization", default=None, choices=NORMALIZATIONS,
                   help="input normalisation (default: the checkpoint's; converted official weights use bgr_mean)")


def protocol_from_args(args: argparse.Namespace, train_crop: list[int] | None) -> TestProtocol:
    crop = args.crop_size or (list(train_crop) if args.mode != "whole" and train_crop else None)
    return TestProtocol(
        mode=args.mode, crop_size=None if crop is None else tuple(crop),
        stride=None if args.stride is None else tuple(args.stride), scales=tuple(args.scales),
        flip=args.flip, tile_batch=args.tile_batch, average=args.average,
    )  # fmt: skip


def checkpoint_normalization(ckpt: dict, override: str | None = None) -> str:
    """The input normalisation a checkpoint expects: ``override``, else what it records, else ImageNet."""
    if override is not None:
        return override
    recorded = ckpt.get("normalization") or ckpt.get("config", {}).get("train", {}).get("normalization")
    return recorded or "imagenet"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a gald segmentation checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="model.pt written by gald.train or gald.convert_official")
    parser.add_argument("--dataset", default=None, help="synthetic | synthetic_disk | cityscapes | mapillary | folder (default: as trained)")
    parser.add_argument("--data-root", default=None, help="dataset root for the on-disk datasets")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the config's validation split)")
    parser.add_argument("--num-val", type=int, default=None, help="synthetic: number of validation images")
    parser.add_argument("--batch-size", type=int, default=1, help="images per batch (same-size images only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nnpack", action="store_true",
                        help="CPU: compute the wide 3×3 convolutions with NNPACK (faster; equal to fp32 rounding)")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage classifiers")
    parser.add_argument("--ld-effect", action="store_true",
                        help="also measure the LD effect: each metric as trained minus with LD's masks replaced by "
                             "their spatial means, with 95%% bootstrap intervals over images (models with LD only)")
    parser.add_argument("--sesoi", type=float, default=1.0,
                        help="smallest LD effect of interest in mIoU points, for the 'LD inert' verdict (default 1)")
    parser.add_argument("--method", default="gald", help="row name of the Table 4-style per-class row")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--export-dir", default=None,
                        help="write full-resolution predictions here (labelIds for Cityscapes: test-server format)")
    add_protocol_arguments(parser)
    return parser


def _eval_config(ckpt: dict, path: str, **overrides) -> TrainConfig:
    train_cfg = dict(ckpt.get("config", {}).get("train", {}))
    if not train_cfg and overrides.get("dataset") is None:
        raise ValueError(
            f"{path} records no training config (e.g. converted from the authors' weights): pass --dataset "
            "(e.g. cityscapes) and --data-root"
        )
    return recorded_train_config(train_cfg, **overrides)


def _train_to_label(dataset) -> list[int] | None:
    """Train id → dataset label id (the first labelId mapped to it), or ``None`` for datasets without ids."""
    label_map = getattr(dataset, "label_map", None)
    if not label_map:
        return None
    inverse: dict[int, int] = {}
    for label_id, train_id in sorted(label_map.items()):
        inverse.setdefault(train_id, label_id)
    return [inverse.get(t, 0) for t in range(dataset.num_classes)]


def evaluate_checkpoint(
    checkpoint: str,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    split: str | None = None,
    num_val: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    stages: bool = True,
    protocol: TestProtocol | None = None,
    normalization: str | None = None,
    export_dir: str | None = None,
    ckpt: dict | None = None,
    nnpack: bool = False,
    ld_effect: bool = False,
    sesoi: float = 1.0,
) -> dict:
    """Evaluate ``checkpoint`` on the validation split of its training data (or the one given).

    With a protocol other than whole-image single-scale, only the final output is evaluated.
    ``export_dir`` receives one PNG per image (labelIds for Cityscapes, train ids otherwise);
    ``ckpt`` is the checkpoint's content when the caller has already read it; ``nnpack`` computes the
    wide 3×3 convolutions with NNPACK on CPU (:func:`gald.models.convert_to_nnpack`); ``ld_effect``
    adds ``"ld_effect"`` (and ``"mask_contrast"`` where the data has size groups), measured with the
    whole-image protocol, ``sesoi`` points being the smallest effect of interest.
    """
    from gald.train import evaluate, output_metrics

    ckpt = read_checkpoint(checkpoint) if ckpt is None else ckpt
    norm = checkpoint_normalization(ckpt, normalization)
    cfg = _eval_config(
        ckpt, checkpoint, dataset=dataset, data_root=data_root, num_val=num_val, val_split=split,
        eval_batch_size=batch_size, workers=0, normalization=norm,
    )  # fmt: skip
    data = build_segmentation_data(cfg)
    model = model_from_checkpoint(ckpt, what=checkpoint).to(device).eval()
    if nnpack:
        convert_to_nnpack(model)
    classes = model.head.classifier.out_channels
    if classes != data.num_classes:
        raise ValueError(
            f"{checkpoint} predicts {classes} classes but dataset {cfg.dataset!r} has {data.num_classes}"
        )
    protocol = protocol or TestProtocol()
    whole = protocol.mode == "whole" and protocol.scales == (1.0,) and not protocol.flip
    metrics = output_metrics(model, data, stages=stages and whole)

    sink = None
    if export_dir is not None:
        files = [image for image, _ in getattr(data.val_set, "files", [])]
        if len(files) != len(data.val_set):
            raise ValueError(f"--export-dir needs an on-disk dataset with file names; {cfg.dataset!r} has none")
        train_to_label = _train_to_label(data.val_set)
        written: list[str] = []

        def sink(pred: torch.Tensor) -> None:
            for p in pred:
                label = p.numpy().astype(np.uint8) if train_to_label is None else train_ids_to_label_ids(p, train_to_label)
                written.append(str(write_label_png(label, submission_path(files[len(written)], export_dir))))

    results = evaluate(model, data.val_loader, metrics, torch.device(device), cfg, protocol, sink)
    out = {
        "checkpoint": checkpoint, "dataset": cfg.dataset, "split": getattr(cfg, "val_split", "val"),
        "images": len(data.val_set), "normalization": norm, "protocol": dataclasses.asdict(protocol), **results,
    }  # fmt: skip
    if ld_effect:
        out.update(_ld_effect(model, data, device, sesoi))
    if export_dir is not None:
        out["exported"] = len(written)
        log.info("wrote %d prediction PNGs to %s", len(written), export_dir)
    return out


def _ld_effect(model, data, device: str, sesoi: float) -> dict:
    from gald.ld_effect import ld_effect, mask_contrast

    batches = data.val_loader  # iterated once per pass: the validation set is never held in memory
    kwargs = dict(small_classes=data.small_classes, large_classes=data.large_classes, device=device)
    out = {"ld_effect": ld_effect(model, batches, class_names=data.class_names, sesoi=sesoi,
                                  ignore_index=data.ignore_index, **kwargs)}
    if data.small_classes and data.large_classes:
        out["mask_contrast"] = mask_contrast(model, batches, **kwargs)
    return out


def _format_ld_effect(results: dict) -> str:
    from gald.ld_effect import format_ld_effect, ld_effect_summary

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
    args = get_args_parser().parse_args(argv)
    ckpt = read_checkpoint(args.checkpoint)
    block = ckpt.get("config", {}).get("model", {}).get("block", "gald")
    if args.ld_effect and block not in LD_ARRANGEMENTS:
        print(f"error: {args.checkpoint}: --ld-effect needs a model with LD (block one of {list(LD_ARRANGEMENTS)}); "
              f"this one has block {block!r}", file=sys.stderr)
        raise SystemExit(2)
    train_crop = ckpt.get("config", {}).get("train", {}).get("crop_size")
    results = evaluate_checkpoint(
        args.checkpoint, dataset=args.dataset, data_root=args.data_root, split=args.split, num_val=args.num_val,
        batch_size=args.batch_size, device=args.device, stages=not args.no_stages,
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
