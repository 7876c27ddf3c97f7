"""Calibrate benchmark v2 on the FCN and GA arms only (issue #14, milestone 4).

Two parts, both written to ``benchmarks/results/calibration_v2.{md,json}``:

* **generator** (no training): the OS-8 oracle's small-pattern mIoU (the ground truth averaged
  over 8×8 blocks, upsampled bilinearly, arg-max: the best an output-stride-8 prediction can do), and
  the median area, in LD mask cells (16×16 px at d = 2), of each large-pattern class per image;
* **arms**: the FCN and GA (CGNL) arms trained under candidate schedules, a few seeds each; never an
  arm with LD (the pre-registration fixes the LD arms' schedule before any of them runs).

The targets were written down before calibrating (``benchmarks/PREREGISTRATION_v2.md``, "Calibration").

    python benchmarks/calibrate_v2.py generator
    python benchmarks/calibrate_v2.py arms --iterations 600 --results benchmarks/results/calibration_v2/600
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys

import numpy as np
import torch
from torch.nn import functional as F

from gald import ablation
from gald.data import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
CELL = 16  # px: one LD mask cell at output stride 8 and d = 2


def os_oracle(label: np.ndarray, stride: int = 8, num_classes: int = synthetic.NUM_CLASSES) -> np.ndarray:
    """The best prediction an output-stride-``stride`` model can make: block-averaged one-hot
    ground truth, bilinearly upsampled, arg-max.

    Shape:
        (H, W) -> (H, W)
    """
    t = torch.from_numpy(label.astype(np.int64))
    onehot = F.one_hot(t, num_classes).permute(2, 0, 1)[None].float()
    low = F.avg_pool2d(onehot, stride, stride, ceil_mode=True)
    return F.interpolate(low, size=label.shape, mode="bilinear", align_corners=False)[0].argmax(0).numpy()


def generator_checks(version: int, *, num_val: int = 100, size=(128, 256)) -> dict:
    from gald.metrics import SegmentationMetrics

    metrics = SegmentationMetrics(synthetic.NUM_CLASSES, class_names=synthetic.CLASSES,
                                  small_classes=synthetic.SMALL_CLASSES, large_classes=synthetic.LARGE_CLASSES)
    areas: dict[str, list[float]] = {synthetic.CLASSES[c]: [] for c in synthetic.LARGE_CLASSES}
    for i in range(num_val):
        s = synthetic.make_scene(0, i, split="val", size=size, version=version)
        metrics.update(torch.from_numpy(os_oracle(s.label))[None], torch.from_numpy(s.label.astype(np.int64))[None])
        for c in synthetic.LARGE_CLASSES:
            a = float((s.label == c).sum()) / CELL**2
            if a > 0:
                areas[synthetic.CLASSES[c]].append(a)
    res = metrics.compute()
    return {
        "version": version,
        "oracle_os8": {"mIoU": res["mIoU"], "small_mIoU": res["small_mIoU"],
                       "per_class_iou": {synthetic.CLASSES[c]: res["per_class_iou"][synthetic.CLASSES[c]]
                                         for c in synthetic.SMALL_CLASSES}},
        "large_area_cells_median": {k: float(np.median(v)) if v else None for k, v in areas.items()},
    }


def summarise_schedules(root: str, *, arms_in_grid: int, budget_hours: float = 3.0, parallel: int = 2) -> dict:
    """Apply the pre-registered calibration rules to the cells under ``root/<iterations>/``.

    Per schedule: targets 3 (FCN small-pattern mIoU ≥ 10 in every seed) and 4 (mean GA − FCN
    context gain > 0), the seed SD (pooled over the two arms), the cell time. Then: the shorter
    schedule meeting both targets (else the longer); SESOI = max(1, ¼ × its context gain) points;
    the seeds whose 95 % paired interval half-width is ≤ SESOI given ``√2 × SD`` (≥ 5); and the
    seeds the budget affords.
    """
    from gald import stats

    out: dict = {"schedules": {}}
    for name in sorted(os.listdir(root), key=lambda n: int(n) if n.isdigit() else 0):
        if not name.isdigit():
            continue
        cells = ablation.load_cells(os.path.join(root, name))
        by = {(c["variant"], c["seed"]): c for c in cells}
        seeds = sorted({s for (v, s) in by if ("fcn", s) in by and ("cgnl", s) in by})
        if len(seeds) < 2:
            continue
        fcn = [by[("fcn", s)] for s in seeds]
        ga = [by[("cgnl", s)] for s in seeds]
        gain = float(np.mean([g["context_mIoU"] - f["context_mIoU"] for g, f in zip(ga, fcn)]))
        sd = {m: float(np.sqrt((np.var([c[m] for c in fcn], ddof=1) + np.var([c[m] for c in ga], ddof=1)) / 2))
              for m in ("mIoU", "small_mIoU", "context_mIoU")}
        out["schedules"][int(name)] = {
            "seeds": seeds,
            "fcn_small_mIoU": [c["small_mIoU"] for c in fcn],
            "ga_small_mIoU": [c["small_mIoU"] for c in ga],
            "fcn_mIoU": [c["mIoU"] for c in fcn], "ga_mIoU": [c["mIoU"] for c in ga],
            "fcn_context": [c["context_mIoU"] for c in fcn], "ga_context": [c["context_mIoU"] for c in ga],
            "context_gain": gain,
            "seed_sd": sd,
            "cell_seconds": float(np.mean([c["wall_seconds"] for c in cells])),
            "target3_fcn_small_ge_10": all(c["small_mIoU"] >= 10 for c in fcn),
            "target4_ga_beats_fcn_context": gain > 0,
        }
    meets = [it for it, r in out["schedules"].items() if r["target3_fcn_small_ge_10"] and r["target4_ga_beats_fcn_context"]]
    chosen = min(meets) if meets else max(out["schedules"])
    r = out["schedules"][chosen]
    sesoi = max(1.0, 0.25 * r["context_gain"])
    sd_diff = {m: float(np.sqrt(2) * r["seed_sd"][m]) for m in ("mIoU", "small_mIoU")}
    needed = {m: stats.seeds_for_half_width(sd_diff[m], sesoi) for m in sd_diff}
    # an LD cell also measures two interventions; count it at 1.1 cells
    affordable = int(budget_hours * 3600 * parallel // (arms_in_grid * r["cell_seconds"] * 1.1))
    out.update(chosen=chosen, meets_targets=bool(meets), sesoi=sesoi, sd_diff=sd_diff, seeds_needed=needed,
               seeds_affordable=affordable)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    gen = sub.add_parser("generator", help="oracle and region sizes, no training")
    gen.add_argument("--versions", type=int, nargs="+", default=list(synthetic.GENERATOR_VERSIONS))
    arms = sub.add_parser("arms", help="train the FCN and GA arms under a candidate schedule")
    arms.add_argument("--iterations", type=int, required=True)
    arms.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    arms.add_argument("--results", required=True, help="folder for the cells")
    arms.add_argument("--threads", type=int, default=1)
    summ = sub.add_parser("summary", help="apply the calibration rules to the schedule folders")
    summ.add_argument("--root", default=os.path.join(HERE, "results", "calibration_v2"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    if args.part == "generator":
        out = [generator_checks(v) for v in args.versions]
        print(json.dumps(out, indent=2))
        with open(os.path.join(HERE, "results", "calibration_v2_generator.json"), "w") as f:
            command = "python benchmarks/calibrate_v2.py " + " ".join(argv if argv is not None else sys.argv[1:])
            json.dump({"command": command, "results": out}, f, indent=2)
        return 0
    if args.part == "summary":
        out = summarise_schedules(args.root, arms_in_grid=len(ablation.V2_ARMS))
        out["command"] = "python benchmarks/calibrate_v2.py summary"
        print(json.dumps(out, indent=2))
        with open(os.path.join(args.root, "..", "calibration_v2.json"), "w") as f:
            json.dump(out, f, indent=2)
        return 0
    torch.set_num_threads(args.threads)
    overrides = dict(ablation.V2_BENCHMARK, iterations=args.iterations)
    for seed in args.seeds:
        for variant in ("fcn", "cgnl"):
            ablation.run_cell(variant, seed, results_dir=args.results, work_dir=os.path.join(args.results, "runs"),
                              overrides=overrides)
    env = f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads"
    print(env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
