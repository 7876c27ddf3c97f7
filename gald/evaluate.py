"""``python -m gald.evaluate`` — evaluate a trained checkpoint (whole-image, single scale).

Reports per-class IoU, mIoU, pixel accuracy, small- vs large-pattern mIoU, boundary mIoU and
per-instance recall by area (synthetic benchmark), for the final output and for the stage
classifiers when the model has them. Writes the same numbers as JSON with ``--out``.

Examples::

    python -m gald.evaluate --checkpoint runs/gald-cgnl_tiny-d8_synthetic-128x256/model.pt
    python -m gald.evaluate --checkpoint model.pt --dataset synthetic_disk --data-root data/synthetic
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

from gald.config import TrainConfig
from gald.data.build import build_segmentation_data
from gald.metrics import format_table
from gald.models import load_model, read_checkpoint

log = logging.getLogger("gald.evaluate")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a gald segmentation checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="model.pt written by gald.train")
    parser.add_argument("--dataset", default=None, help="synthetic | synthetic_disk | cityscapes (default: as trained)")
    parser.add_argument("--data-root", default=None, help="dataset root for the on-disk datasets")
    parser.add_argument("--num-val", type=int, default=None, help="synthetic: number of validation images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage classifiers")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser


def evaluate_checkpoint(
    checkpoint: str,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    num_val: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    stages: bool = True,
) -> dict:
    """Evaluate ``checkpoint`` on the validation split of its training data (or the one given)."""
    from gald.train import evaluate, output_metrics

    ckpt = read_checkpoint(checkpoint)
    train_cfg = dict(ckpt.get("config", {}).get("train", {}))
    overrides = {"dataset": dataset, "data_root": data_root, "num_val": num_val}
    train_cfg.update({k: v for k, v in overrides.items() if v is not None})
    train_cfg.update(eval_batch_size=batch_size, workers=0)
    cfg = TrainConfig(**train_cfg)
    data = build_segmentation_data(cfg)
    model = load_model(checkpoint).to(device).eval()
    metrics = output_metrics(model, data, stages=stages)
    results = evaluate(model, data.val_loader, metrics, torch.device(device), cfg)
    return {"checkpoint": checkpoint, "dataset": cfg.dataset, "images": len(data.val_set), **results}


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    results = evaluate_checkpoint(
        args.checkpoint, dataset=args.dataset, data_root=args.data_root, num_val=args.num_val,
        batch_size=args.batch_size, device=args.device, stages=not args.no_stages,
    )
    log.info("\n%s", format_table(results["out"], title=f"{args.checkpoint} on {results['dataset']} ({results['images']} images)"))
    for name in ("logits_fcn", "logits_ga"):
        if name in results:
            r = results[name]
            log.info("stage classifier %-10s mIoU %.2f  small %.2f  boundary %.2f", name, r["mIoU"], r.get("small_mIoU", float("nan")), r["boundary_mIoU"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        log.info("wrote %s", args.out)
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
