"""Ship the default run as the app's checkpoint: copy its ``model.pt`` into ``gald/assets/`` and
write the model card beside it.

    python -m gald.train                               # the default run: runs/<default name>/
    python scripts/make_app_checkpoint.py              # gald/assets/<default name>.{pt,json}

The card holds the training command and config, the file's sha256, the metrics of the copied file
on the 100 validation scenes (``gald.evaluate``: whole image, single scale), its stage classifiers'
metrics, and its LD effect with 95 % bootstrap intervals (``gald.evaluate --ld-effect``), which the
app's Model tab shows. ``tests/test_app.py`` re-measures the file against its card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import sys

import torch
import torchvision

from gald.config import TrainConfig
from gald.engine.checkpoint import load_checkpoint
from gald.engine.evaluation import evaluate_checkpoint
from gald.metrics.ld_effect import ld_effect_summary

log = logging.getLogger("gald.make_app_checkpoint")

SUMMARY = ("mIoU", "pixel_acc", "small_mIoU", "large_mIoU", "boundary_mIoU")


def main(argv: list[str] | None = None) -> dict:
    default = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=default.run_dir, help="run directory of python -m gald.train")
    parser.add_argument("--out", default=os.path.join("gald", "assets"), help="folder of the shipped checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint of that name")
    args = parser.parse_args(argv)

    source = os.path.join(args.run, "model.pt")
    ckpt = load_checkpoint(source)
    name = ckpt["config"]["train"]["name"]
    path = os.path.join(args.out, f"{name}.pt")
    if os.path.exists(path) and not args.force:
        parser.exit(2, f"{parser.prog}: error: {path} exists; pass --force to replace it\n")
    os.makedirs(args.out, exist_ok=True)
    shutil.copyfile(source, path + ".tmp")
    os.replace(path + ".tmp", path)
    rel = os.path.relpath(path)

    results = evaluate_checkpoint(path, ld_effect=True)  # one pass: metrics, stage classifiers, LD effect
    effect = ld_effect_summary(results.pop("ld_effect"))
    effect["command"] = f"python -m gald.evaluate --checkpoint {rel} --ld-effect --no-stages"
    if "mask_contrast" in results:
        effect["mask_contrast"] = results.pop("mask_contrast")
    with open(os.path.join(args.run, "metrics.json")) as f:
        train_metrics = json.load(f)
    with open(path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    h, w = ckpt["config"]["train"]["crop_size"]
    card = {
        "file": os.path.basename(path),
        "sha256": sha256,
        "size_bytes": os.path.getsize(path),
        "command": "python -m gald.train",
        "command_note": "the project's default training (every setting at its default); the file is that run's "
                        "model.pt, copied unchanged by python scripts/make_app_checkpoint.py",
        "config": ckpt["config"]["train"],
        "classes": list(ckpt.get("classes") or []),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "parameters": train_metrics.get("parameters"),
        "train_seconds": train_metrics.get("train_seconds"),
        "train_seconds_note": f"{os.cpu_count()}-core CPU, torch default threads",
        "metrics": {k: results["out"][k] for k in SUMMARY},
        "per_class_IoU": results["out"]["per_class_iou"],
        "stage_classifiers": {k: {m: v[m] for m in SUMMARY} for k, v in results.items()
                              if k.startswith("logits_") and isinstance(v, dict)},
        "evaluation": {
            "command": f"python -m gald.evaluate --checkpoint {rel}",
            "dataset": f"synthetic (embedded benchmark v{ckpt['config']['train'].get('synthetic_version', 1)}), "
                       "validation split, data seed 0",
            "images": results["images"],
            "protocol": f"whole image, single scale, {h}x{w}",
        },
        "remeasured_by": "tests/test_app.py::test_shipped_checkpoint_remeasures_to_its_card (tolerance 0.05 mIoU points)",
        "ld_effect": effect,
    }
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    log.info("wrote %s and its card: mIoU %.2f; %s", rel, card["metrics"]["mIoU"],
             "LD " + effect["verdict"])
    return card


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s")
    main()
