"""Table 3 of the paper on the embedded scene benchmark (CPU): python benchmarks/detection.py

Mask R-CNN on the tiny ResNet + FPN — baseline, + NL, + CGNL, + GALD, each block at the end of
stage 4 (the paper's placement) — trained on the 400 generated train scenes (four thing classes:
pole, traffic sign, person, car) and evaluated on the 100 val scenes: COCO box and mask AP through
pycocotools and VOC mAP@0.5 (11-point), mean ± sample std over seeds. Every (variant, seed) cell is
one JSON in ``benchmarks/results/detection/cells/``; finished cells are skipped, so the table fills
across sittings. CPU seconds (``time.process_time``, all threads) and wall seconds are recorded per
cell.

    python benchmarks/detection.py                                   # 4 variants × seeds 0 1 2
    python benchmarks/detection.py --variants none gald --seeds 0
    python benchmarks/detection.py --smoke --results /tmp/det        # CI: 2 variants, 1 seed, 3 iterations
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch

from gald.ablation import load_cells
from gald.detection_metrics import format_table3, format_table6
from gald.train_detection import load_detection_config
from gald.train_detection import main as train_main

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {"none": "Mask-RCNN", "nl": "+ NL", "cgnl": "+ CGNL", "gald": "+ GALD"}
#: the schedule every cell runs (about 2.3 CPU-minutes on one core of the development machine, so 12 cells fit in 30)
SETTINGS = dict(
    arch="mask_rcnn_tiny_fpn_gald", placement="c5", num_train=400, num_val=100, image_size=[128, 256],
    batch_size=4, iterations=160, lr=0.02, lr_steps=[120, 145], warmup_iters=40, log_interval=40,
    checkpoint_interval=10_000, eval_batch_size=4, device="cpu",
)
SMOKE = dict(SETTINGS, num_train=8, num_val=4, iterations=3, lr_steps=[2], warmup_iters=1, log_interval=1)


def run_cell(variant: str, seed: int, *, results_dir: str, work_dir: str, settings: dict) -> dict:
    """Train and evaluate one (variant, seed) and write its JSON; an existing JSON is returned as is."""
    path = os.path.join(results_dir, "cells", f"{variant}-s{seed}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    cfg = load_detection_config(None, **settings, context=variant, seed=seed, name=f"detection-{variant}-s{seed}",
                                output_dir=work_dir, resume="auto")  # an interrupted cell continues
    cpu0, wall0 = time.process_time(), time.perf_counter()
    summary = train_main(cfg)
    cell = {
        "variant": variant, "seed": seed,
        "cpu_seconds": round(time.process_time() - cpu0, 1), "wall_seconds": round(time.perf_counter() - wall0, 1),
        "train_cpu_seconds": summary["train_cpu_seconds"], "threads": torch.get_num_threads(),
        "parameters": summary["parameters"], "final_train_loss": summary["final_train_loss"],
        "box_AP": summary["final"]["box"]["AP"], "box_AP50": summary["final"]["box"]["AP50"],
        "mask_AP": summary["final"]["mask"]["AP"], "mask_AP50": summary["final"]["mask"]["AP50"],
        "voc07_mAP": summary["final"]["voc07_mAP"], "voc_area_mAP": summary["final"]["voc_area_mAP"],
        "voc07_ap": summary["final"]["voc07_ap"], "classes": summary["classes"],
        "config": cfg.to_dict(), "torch": torch.__version__,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cell, f, indent=2)
    os.replace(tmp, path)
    shutil.rmtree(cfg.run_dir, ignore_errors=True)  # checkpoints are not kept; the cell JSON is the result
    return cell


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(cells: list[dict]) -> dict[str, dict]:
    """Per variant: mean ± std of every metric, per-class VOC AP, seeds, CPU and wall seconds."""
    table = {}
    for variant in VARIANTS:
        rows = [c for c in cells if c["variant"] == variant]
        if not rows:
            continue
        classes = rows[0]["classes"]
        table[variant] = {
            "seeds": sorted(c["seed"] for c in rows),
            **{m: _mean_std([c[m] for c in rows]) for m in ("box_AP", "box_AP50", "mask_AP", "mask_AP50",
                                                            "voc07_mAP", "voc_area_mAP")},
            "voc07_ap": [_mean_std([c["voc07_ap"][k] for c in rows]) for k in classes],
            "classes": classes,
            "cpu_seconds": sum(c["cpu_seconds"] for c in rows),
            "wall_seconds": sum(c["wall_seconds"] for c in rows),
            "parameters": rows[0]["parameters"],
        }
    return table


def markdown(table: dict[str, dict], env: str) -> str:
    rows = [{"backbone": "tiny ResNet", "detector": VARIANTS[v], "AP-box": t["box_AP"], "AP-mask": t["mask_AP"],
             "mAP": t["voc07_mAP"]} for v, t in table.items()]
    classes = next(iter(table.values()))["classes"] if table else []
    cost = "\n".join(
        f"| {VARIANTS[v]} | {t['parameters'] / 1e6:.3f} M | {', '.join(map(str, t['seeds']))} | "
        f"{t['cpu_seconds'] / 60:.1f} | {t['wall_seconds'] / 60:.1f} |" for v, t in table.items())
    total_cpu = sum(t["cpu_seconds"] for t in table.values()) / 60
    return "\n\n".join([
        "# Table 3 on the embedded scene benchmark (detection and instance segmentation)",
        "Generated by `python benchmarks/detection.py`; " + env + ". Mask R-CNN + FPN on the tiny ResNet "
        "(depths 1-1-2-1, widths 16-32-64-96, FPN width 64), context block at the end of stage 4, trained "
        f"{SETTINGS['iterations']} iterations of batch {SETTINGS['batch_size']} (SGD lr {SETTINGS['lr']}, "
        f"steps at {SETTINGS['lr_steps']}) on 400 generated 128×256 scenes, evaluated on the 100 val scenes. "
        "Values are mean ± sample std over seeds, in %; brackets: change of the mean against the baseline. "
        "AP-box / AP-mask: COCO AP@[.5:.95] (pycocotools); mAP@.5: VOC2007 11-point.",
        format_table3(rows, metrics=("AP-box", "AP-mask", "mAP"), headers=("AP-box", "AP-mask", "VOC mAP@.5")),
        "## Per-class VOC AP@0.5 (Table 6 layout)",
        format_table6([{"method": VARIANTS[v], "ap": t["voc07_ap"], "mAP": t["voc07_mAP"]} for v, t in table.items()],
                      classes),
        "## Cost",
        "| variant | parameters | seeds | CPU minutes | wall minutes |\n|---|---|---|---|---|\n" + cost,
        f"Total: {total_cpu:.1f} CPU minutes.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--results", default=os.path.join(HERE, "results", "detection"))
    parser.add_argument("--work-dir", default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for CI")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is comparable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    settings = SMOKE if args.smoke else SETTINGS
    if args.smoke:
        args.variants, args.seeds = ["none", "gald"], [0]
    work = args.work_dir or tempfile.mkdtemp(prefix="gald-detection-")
    for seed in args.seeds:  # seed-major, so a partial run already compares every variant
        for variant in args.variants:
            cell = run_cell(variant, seed, results_dir=args.results, work_dir=work, settings=settings)
            logging.info("cell %s seed %d: box AP %.2f, mask AP %.2f, VOC mAP %.2f (%.0f CPU s, %.0f wall s)",
                         variant, seed, cell["box_AP"], cell["mask_AP"], cell["voc07_mAP"], cell["cpu_seconds"],
                         cell["wall_seconds"])
    table = aggregate(load_cells(args.results))
    env = (f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
           f"{args.threads} thread(s)")
    md = markdown(table, env)
    out = args.results if args.smoke else os.path.join(args.results, "..")
    stem = "detection" if not args.smoke else "summary"
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump({"environment": env, "settings": settings, "table": table}, f, indent=2)
    sys.stdout.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
