"""Table 1 of the paper, re-run on the embedded scene benchmark: variants, cells, aggregation, verdicts.

A *cell* is one (variant, seed) training run through :func:`gald.train.main`; its summary is stored
as ``<results>/cells/<variant>-s<seed>.json`` so that the table fills across several sittings and
finished cells are skipped. :func:`aggregate` turns the cells into mean ± std per variant and
:func:`verdicts` applies the pre-registered decision rule (``benchmarks/PREREGISTRATION.md``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gald.config import TrainConfig
from gald.data.synthetic import CONTEXT_CLASSES, CLASSES

log = logging.getLogger(__name__)

__all__ = ["VARIANTS", "BENCHMARK", "DEEP_BACKBONE", "run_cell", "run_grid", "aggregate", "verdicts", "markdown_table"]

# The schedule of every cell (pre-registered): the default model and data, fewer iterations.
BENCHMARK = dict(iterations=300, stage_classifiers=False, stage_iterations=0, eval_interval=10**9,
                 checkpoint_interval=10**9, log_interval=50)
DEEP_BACKBONE = dict(depths=[2, 2, 4, 2])

# name -> (Table 1 part, config overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "fcn": ("a", dict(block="none")),
    "psp": ("a", dict(ga="psp", block="ga")),
    "aspp": ("a", dict(ga="aspp", block="ga")),
    "nl": ("a", dict(ga="nl", block="ga")),
    "cgnl": ("a", dict(ga="cgnl", block="ga")),
    "ld": ("b", dict(block="ld")),
    "psp+ld": ("b", dict(ga="psp", block="gald")),
    "aspp+ld": ("b", dict(ga="aspp", block="gald")),
    "nl+ld": ("b", dict(ga="nl", block="gald")),
    "cgnl+ld": ("b", dict(ga="cgnl", block="gald")),
    "parallel": ("c", dict(ga="cgnl", block="parallel")),
    "ldga": ("c", dict(ga="cgnl", block="ldga")),
    "fcn-deep": ("d", dict(block="none", **DEEP_BACKBONE)),
    "cgnl-deep": ("d", dict(ga="cgnl", block="ga", **DEEP_BACKBONE)),
    "psp-deep": ("d", dict(ga="psp", block="ga", **DEEP_BACKBONE)),
    "cgnl+ld-bilinear": ("e", dict(ga="cgnl", block="gald", ld_downsample="bilinear")),
    "cgnl+ld-avgpool": ("e", dict(ga="cgnl", block="gald", ld_downsample="avgpool")),
}

METRICS = ("mIoU", "context_mIoU", "small_mIoU", "large_mIoU", "boundary_mIoU", "small_instance_recall")


def cell_path(results_dir: str, variant: str, seed: int) -> str:
    return os.path.join(results_dir, "cells", f"{variant}-s{seed}.json")


def cell_config(variant: str, seed: int, *, output_dir: str, overrides: dict | None = None) -> TrainConfig:
    _, variant_overrides = VARIANTS[variant]
    values = {**BENCHMARK, **variant_overrides, **(overrides or {})}
    return TrainConfig(name=f"ablation-{variant}-s{seed}", output_dir=output_dir, seed=seed, **values)


def _summarise(summary: dict) -> dict:
    final = summary["final"]
    context = [final["per_class_iou"][CLASSES[c]] for c in CONTEXT_CLASSES]
    context = [c for c in context if c is not None]
    small_bin = final.get("instance_recall_by_area", {}).get("<64", {}).get("recall")
    return {
        "mIoU": final["mIoU"],
        "context_mIoU": sum(context) / len(context) if context else math.nan,
        "small_mIoU": final.get("small_mIoU"),
        "large_mIoU": final.get("large_mIoU"),
        "boundary_mIoU": final["boundary_mIoU"],
        "small_instance_recall": small_bin,
        "per_class_iou": final["per_class_iou"],
        "parameters": summary["parameters"],
        "train_seconds": summary["train_seconds"],
    }


def run_cell(variant: str, seed: int, *, results_dir: str, work_dir: str, overrides: dict | None = None) -> dict:
    """Train and evaluate one cell, unless its result file exists; return its summary."""
    from gald import train

    path = cell_path(results_dir, variant, seed)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    cfg = cell_config(variant, seed, output_dir=work_dir, overrides=overrides)
    start = time.perf_counter()
    summary = train.main(cfg)
    cell = {"variant": variant, "seed": seed, "config": cfg.to_dict(), "wall_seconds": round(time.perf_counter() - start, 1),
            **_summarise(summary)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cell, f, indent=2)
    os.replace(tmp, path)
    log.info("cell %s seed %d: mIoU %.2f in %.0f s", variant, seed, cell["mIoU"], cell["wall_seconds"])
    return cell


def run_grid(
    variants: Iterable[str], seeds: Iterable[int], *, results_dir: str, work_dir: str, overrides: dict | None = None
) -> list[dict]:
    """Run every missing (variant, seed) cell, seed-major so partial runs cover every variant."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variants {unknown}; valid names: {list(VARIANTS)}")
    cells = []
    for seed in seeds:
        for variant in variants:
            cells.append(run_cell(variant, seed, results_dir=results_dir, work_dir=work_dir, overrides=overrides))
    return cells


def load_cells(results_dir: str) -> list[dict]:
    folder = os.path.join(results_dir, "cells")
    if not os.path.isdir(folder):
        return []
    cells = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                cells.append(json.load(f))
    return cells


@dataclass
class Stat:
    mean: float
    std: float
    n: int
    values: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


def aggregate(cells: Sequence[dict]) -> dict[str, dict[str, Stat]]:
    """Mean and sample standard deviation over seeds, per variant and metric."""
    table: dict[str, dict[str, Stat]] = {}
    for variant in VARIANTS:
        rows = [c for c in cells if c["variant"] == variant]
        if not rows:
            continue
        table[variant] = {}
        for metric in METRICS:
            values = [r[metric] for r in rows if r.get(metric) is not None and not math.isnan(r[metric])]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                table[variant][metric] = Stat(statistics.fmean(values), std, len(values), values)
    return table


def compare(a: Stat, b: Stat) -> tuple[float, float, str]:
    """Pre-registered rule: ``a`` beats ``b`` when ``mean(a) - mean(b) > 2 × pooled std``;
    the opposite direction is "contradicted"; otherwise "not resolved"."""
    pooled = math.sqrt((a.std**2 + b.std**2) / 2) if not (math.isnan(a.std) or math.isnan(b.std)) else math.nan
    diff = a.mean - b.mean
    if math.isnan(pooled):
        return diff, pooled, "too few seeds"
    if diff > 2 * pooled:
        return diff, pooled, "supported"
    if -diff > 2 * pooled:
        return diff, pooled, "contradicted"
    return diff, pooled, "not resolved"


# (claim, better variant, worse variant, metric) — the paper's claims as pre-registered
CLAIMS = [
    *[(f"+{g.upper()} beats FCN on the context classes (road/terrain)", g, "fcn", "context_mIoU") for g in ("psp", "aspp", "nl", "cgnl")],
    *[(f"{g.upper()}+LD beats {g.upper()} on small-pattern mIoU", f"{g}+ld", g, "small_mIoU") for g in ("psp", "aspp", "nl", "cgnl")],
    *[(f"{g.upper()}+LD beats {g.upper()} on mIoU", f"{g}+ld", g, "mIoU") for g in ("psp", "aspp", "nl", "cgnl")],
    ("LD alone beats FCN on mIoU", "ld", "fcn", "mIoU"),
    ("GALD beats LDGA on mIoU", "cgnl+ld", "ldga", "mIoU"),
    ("GALD beats Parallel on mIoU", "cgnl+ld", "parallel", "mIoU"),
    ("CGNL+LD (shallow) matches or beats CGNL on the deeper backbone, mIoU", "cgnl+ld", "cgnl-deep", "mIoU"),
    ("PSP+LD (shallow) matches or beats PSP on the deeper backbone, mIoU", "psp+ld", "psp-deep", "mIoU"),
    ("LD with depth-wise convs beats bilinear downsampling, mIoU", "cgnl+ld", "cgnl+ld-bilinear", "mIoU"),
    ("LD with depth-wise convs beats average pooling, mIoU", "cgnl+ld", "cgnl+ld-avgpool", "mIoU"),
]


def verdicts(table: dict[str, dict[str, Stat]]) -> list[dict]:
    out = []
    for claim, better, worse, metric in CLAIMS:
        if better not in table or worse not in table or metric not in table[better] or metric not in table[worse]:
            continue
        diff, pooled, verdict = compare(table[better][metric], table[worse][metric])
        out.append({"claim": claim, "a": better, "b": worse, "metric": metric, "difference": round(diff, 2),
                    "pooled_std": None if math.isnan(pooled) else round(pooled, 2), "verdict": verdict})
    return out


def markdown_table(table: dict[str, dict[str, Stat]]) -> str:
    head = "| part | variant | seeds | mIoU | context (road/terrain) | small-pattern | large-pattern | boundary | small-instance recall |"
    lines = [head, "|" + "---|" * 9]
    for variant, (part, _) in VARIANTS.items():
        if variant not in table:
            continue
        row = table[variant]
        cells = [str(row[m]) if m in row else "–" for m in METRICS]
        n = row["mIoU"].n if "mIoU" in row else 0
        lines.append(f"| {part} | {variant} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_verdicts(rows: list[dict]) -> str:
    lines = ["| claim (paper) | metric | Δ (a − b) | pooled std | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['claim']} | {r['metric']} | {r['difference']:+.2f} | {r['pooled_std']} | {r['verdict']} |")
    return "\n".join(lines)
