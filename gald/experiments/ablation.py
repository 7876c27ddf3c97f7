"""Table 1 of the paper, re-run on the embedded scene benchmark: variants, cells, aggregation, verdicts.

A *cell* is one (variant, seed) training run through :func:`gald.engine.segmentation.fit`; its summary is stored
as ``<results>/cells/<variant>-s<seed>.json`` so that the table fills across several sittings and
finished cells are skipped.

Two benchmarks live here:

* **v1** (``BENCHMARK``, ``CLAIMS``, ``benchmarks/PREREGISTRATION.md``): 300 iterations × 3 seeds on
  benchmark v1; :func:`aggregate` and :func:`verdicts` apply its "difference > 2 × pooled std" rule.
  Kept so the committed v1 results stay reproducible; that rule is an effect-size threshold, not a
  test (issue #14).
* **v2** (``V2_BENCHMARK``, ``V2_CLAIMS``, ``benchmarks/PREREGISTRATION_v2.md``): the confirmatory
  grid. Every cell records the grid's *identity* (benchmark, code commit, pre-registration hash)
  and a grid refuses to mix cells of different identities; :func:`analyse_v2` gives, per claim,
  the paired difference across seeds, its t-interval, Hedges' ``g_av``, Holm-adjusted tests and
  equivalence tests, and the verdict (:mod:`gald.experiments.stats`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gald.experiments import stats
from gald.config import TrainConfig, check_choice
from gald.errors import GaldError
from gald.data.build import build_segmentation_data
from gald.data.synthetic import CONTEXT_CLASSES, CLASSES, LARGE_CLASSES, SMALL_CLASSES
from gald.engine import segmentation
from gald.metrics.ld_effect import ld_effect
from gald.models import load_model
from gald.models.heads import LD_ARRANGEMENTS

log = logging.getLogger(__name__)

__all__ = [
    "VARIANTS", "PLUG_VARIANTS", "BENCHMARK", "DEEP_BACKBONE", "run_cell", "run_grid", "aggregate", "verdicts", "markdown_table",
    "V2_BENCHMARK", "V2_ARMS", "V2_CLAIMS", "V2_MANIPULATION_CHECK", "LD_ARMS", "grid_identity", "MixedGridError",
    "analyse_v2",
]

# The schedule of every v1 cell (benchmarks/PREREGISTRATION.md): the then-default model (LD at
# d = 8) and data (benchmark v1), fewer iterations. Pinned, so that the v1 table stays reproducible
# after the defaults moved to v2.
BENCHMARK = dict(synthetic_version=1, d=8, iterations=300, stage_classifiers=False, stage_iterations=0,
                 eval_interval=10**9, checkpoint_interval=10**9, log_interval=50)
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
#: GALD plugged into a host network (:func:`gald.plug`; ``benchmarks/PREREGISTRATION_plug.md``):
#: torchvision's LRASPP as it is (an identity block: ``F`` readable, nothing added) and with GALD
#: after its last backbone stage. Kept apart from Table 1's :data:`VARIANTS`.
PLUG_VARIANTS: dict[str, tuple[str, dict]] = {
    "lraspp": ("plug", dict(arch="lraspp_mobilenet_v3_large", block="none")),
    "lraspp+gald": ("plug", dict(arch="lraspp_mobilenet_v3_large", ga="cgnl", block="gald")),
}

METRICS = ("mIoU", "context_mIoU", "small_mIoU", "large_mIoU", "boundary_mIoU", "small_instance_recall")


def cell_path(results_dir: str, variant: str, seed: int) -> str:
    return os.path.join(results_dir, "cells", f"{variant}-s{seed}.json")


def cell_config(variant: str, seed: int, *, output_dir: str, overrides: dict | None = None) -> TrainConfig:
    _, variant_overrides = {**VARIANTS, **PLUG_VARIANTS}[variant]
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


class MixedGridError(GaldError, ValueError):
    """A results folder holds cells of another benchmark version, commit or pre-registration."""


def grid_identity(*, benchmark: str, preregistration: str | None = None, commit: str | None = None) -> dict:
    """What every cell of one grid must share: the benchmark, the code commit and the
    pre-registration file's SHA-256 (first 16 hex digits)."""
    if commit is None:
        commit = code_commit()
    prereg = None if preregistration is None else preregistration_hash(preregistration)
    return {"benchmark": benchmark, "commit": commit, "preregistration": prereg}


def preregistration_hash(path: str) -> str:
    """The first 16 hex digits of the pre-registration file's SHA-256."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def code_commit() -> str:
    """The commit of the checkout this module was imported from, ``+dirty`` when ``gald/`` or
    ``benchmarks/`` have uncommitted changes, or ``"unknown"`` outside git."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # gald/experiments/ → root
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=root).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gald", "benchmarks/ablation_v2.py"],
                               capture_output=True, text=True, check=True, cwd=root).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def check_identity(results_dir: str, identity: dict) -> None:
    """Raise :class:`MixedGridError` if a cell in ``results_dir`` has another identity."""
    for cell in load_cells(results_dir):
        theirs = cell.get("identity")
        if theirs != identity:
            name = f"{cell.get('variant')}-s{cell.get('seed')}"
            raise MixedGridError(
                f"{cell_path(results_dir, cell.get('variant'), cell.get('seed'))}: cell {name} belongs to grid "
                f"{theirs}, not {identity}; use another --results folder (cells of different benchmark versions, "
                "commits or pre-registrations are never mixed)"
            )


def run_cell(
    variant: str,
    seed: int,
    *,
    results_dir: str,
    work_dir: str,
    overrides: dict | None = None,
    identity: dict | None = None,
    measure_ld_effect: bool = False,
    threads: int | None = None,
) -> dict:
    """Train and evaluate one cell, unless its result file exists; return its summary.

    With ``identity`` (v2 grids) the cell records it, and an existing folder with cells of another
    identity is refused. ``measure_ld_effect`` adds the cell's LD effect (:mod:`gald.metrics.ld_effect`)
    for variants with LD; ``threads`` is recorded (the caller sets it).
    """
    path = cell_path(results_dir, variant, seed)
    if identity is not None:
        check_identity(results_dir, identity)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    # an interrupted cell continues from its last.pt (resume is bit-exact)
    cfg = dataclasses.replace(cell_config(variant, seed, output_dir=work_dir, overrides=overrides), resume="auto")
    start = time.perf_counter()
    summary = segmentation.fit(cfg)
    cell = {"variant": variant, "seed": seed, "config": cfg.to_dict(), "wall_seconds": round(time.perf_counter() - start, 1),
            **_summarise(summary)}
    if identity is not None:
        history = summary.get("history", {})
        cell.update(identity=identity, threads=threads, curves=history,
                    loss_step5=next((h["loss"] for h in history.get("train", []) if h["step"] == 5), None))
    if measure_ld_effect and variant in LD_ARMS:
        cell["ld_effect"] = _cell_ld_effect(cfg, summary)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")  # one per process: shards never share it
    with os.fdopen(fd, "w") as f:
        json.dump(cell, f, indent=2)
    os.replace(tmp, path)
    log.info("cell %s seed %d: mIoU %.2f in %.0f s", variant, seed, cell["mIoU"], cell["wall_seconds"])
    return cell


def _cell_ld_effect(cfg: TrainConfig, summary: dict) -> dict:
    """A finished cell's LD effects on its validation images: the spatial-mean one that training
    measured, and the secondary M = 0 intervention."""
    out = {}
    if "ld_effect" in summary:
        out["spatial_mean"] = summary["ld_effect"]
    model = load_model(os.path.join(cfg.run_dir, "model.pt")).eval()
    batches = list(build_segmentation_data(cfg).val_loader)
    for kind in ("spatial_mean", "zero"):
        if kind not in out:
            out[kind] = ld_effect(model, batches, class_names=CLASSES, small_classes=SMALL_CLASSES,
                                  large_classes=LARGE_CLASSES, kind=kind)
    return {kind: {"metrics": e["metrics"], "per_class": e["per_class"], "inert": e["inert"], "sesoi": e["sesoi"]}
            for kind, e in out.items()}


def run_grid(
    variants: Iterable[str], seeds: Iterable[int], *, results_dir: str, work_dir: str, overrides: dict | None = None,
    **cell_kwargs,
) -> list[dict]:
    """Run every missing (variant, seed) cell, seed-major so partial runs cover every variant.

    ``cell_kwargs`` go to :func:`run_cell` (``identity``, ``measure_ld_effect``, ``threads``).
    """
    variants = list(variants)
    for v in variants:
        check_choice("variant", v, tuple(VARIANTS))
    cells = []
    for seed in seeds:
        for variant in variants:
            cells.append(run_cell(variant, seed, results_dir=results_dir, work_dir=work_dir, overrides=overrides,
                                  **cell_kwargs))
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
    for variant in {**VARIANTS, **PLUG_VARIANTS}:
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
    for variant, (part, _) in {**VARIANTS, **PLUG_VARIANTS}.items():
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


# ----------------------------------------------------------------------------------------------
# Benchmark v2: the confirmatory grid (benchmarks/PREREGISTRATION_v2.md)

#: The schedule of every v2 cell: the default model and optimiser on benchmark v2, LD at d = 2
#: (16-px mask cells at output stride 8), learning curves every ``eval_interval`` steps.
V2_BENCHMARK = dict(synthetic_version=2, d=2, iterations=600, stage_classifiers=False, stage_iterations=0,
                    eval_interval=200, checkpoint_interval=10**9, log_interval=5)
#: The confirmatory arms: FCN, GA (CGNL), GALD, LDGA, Parallel and GALD's two other downsamplings.
V2_ARMS = ("fcn", "cgnl", "cgnl+ld", "ldga", "parallel", "cgnl+ld-bilinear", "cgnl+ld-avgpool")
#: Variants whose model holds an LD module (their cells record the LD effect).
LD_ARMS = frozenset(v for v, (_, o) in {**VARIANTS, **PLUG_VARIANTS}.items() if o.get("block") in LD_ARRANGEMENTS)
#: (description, a, b, metric): GA must beat the FCN on context for the benchmark to test anything.
V2_MANIPULATION_CHECK = ("GA (CGNL) beats FCN on the context classes (road/terrain)", "cgnl", "fcn", "context_mIoU")
#: (key, the paper's claim "a beats b", a, b, metric)
V2_CLAIMS = [
    ("gald-vs-ga-small", "GALD beats GA on small-pattern mIoU", "cgnl+ld", "cgnl", "small_mIoU"),
    ("gald-vs-ga", "GALD beats GA on mIoU", "cgnl+ld", "cgnl", "mIoU"),
    ("gald-vs-ldga", "GALD beats LDGA on mIoU", "cgnl+ld", "ldga", "mIoU"),
    ("gald-vs-parallel", "GALD beats Parallel on mIoU", "cgnl+ld", "parallel", "mIoU"),
    ("dwconv-vs-bilinear", "LD with depth-wise convs beats bilinear downsampling, mIoU", "cgnl+ld", "cgnl+ld-bilinear", "mIoU"),
    ("dwconv-vs-avgpool", "LD with depth-wise convs beats average pooling, mIoU", "cgnl+ld", "cgnl+ld-avgpool", "mIoU"),
]


def _paired_values(cells: Sequence[dict], a: str, b: str, metric: str) -> tuple[list[int], list[float], list[float]]:
    """Per-seed values of ``metric`` for arms ``a`` and ``b`` over the seeds both have."""
    by = {(c["variant"], c["seed"]): c[metric] for c in cells
          if c.get(metric) is not None and math.isfinite(c[metric])}  # a NaN seed drops out of the pair
    seeds = sorted(s for (v, s) in by if v == a and (b, s) in by)
    return seeds, [by[(a, s)] for s in seeds], [by[(b, s)] for s in seeds]


def analyse_v2(cells: Sequence[dict], sesoi: dict[str, float], *, alpha: float = 0.05,
               plan: dict | None = None) -> dict:
    """The pre-registered analysis: per claim the paired result, Holm-adjusted p-values (the tests
    and, separately, the equivalence tests, always over the whole family of claims: a claim that
    could not be tested counts with p = 1) and the verdict; and the manipulation check, tested on its
    own. With ``plan`` (arms and seeds), a grid that is not exactly the plan's arms × seeds is
    marked incomplete, and its verdicts are provisional.

    Args:
        cells: v2 cells (one identity).
        sesoi: smallest effect of interest per metric, in points.
        alpha: family-wise error rate.
        plan: the pre-registration's plan (``arms``, ``seeds``, and ``exploratory`` claim keys).
    """
    rows = []
    for key, claim, a, b, metric in V2_CLAIMS:
        seeds, va, vb = _paired_values(cells, a, b, metric)
        row = {"key": key, "claim": claim, "a": a, "b": b, "metric": metric, "seeds": seeds,
               "differences": [x - y for x, y in zip(va, vb)],
               "status": "exploratory" if plan and key in plan.get("exploratory", ()) else "confirmatory"}
        if len(seeds) >= 2:
            row.update(stats.paired(va, vb, sesoi=sesoi[metric]).to_dict())
        rows.append(row)
    for name, source in (("p_holm", "p"), ("p_tost_holm", "p_tost")):
        for r, adj in zip(rows, stats.holm([r.get(source, 1.0) for r in rows])):
            if source in r:
                r[name] = adj
    for r in rows:
        if "p" in r:
            r["verdict"] = stats.verdict(r["delta"], r["p_holm"], r["p_tost_holm"], alpha=alpha)
            r["below_sesoi"] = r["verdict"] in ("supported", "contradicted") and abs(r["delta"]) < r["sesoi"]
        else:
            r["verdict"] = "not run"
    desc, a, b, metric = V2_MANIPULATION_CHECK
    seeds, va, vb = _paired_values(cells, a, b, metric)
    check = {"claim": desc, "a": a, "b": b, "metric": metric, "seeds": seeds,
             "differences": [x - y for x, y in zip(va, vb)]}
    if len(seeds) >= 2:
        check.update(stats.paired(va, vb, sesoi=sesoi[metric]).to_dict())
        check["passed"] = bool(check["p"] < alpha and check["delta"] > 0)
    complete = None
    if plan is not None:
        have = {(c["variant"], c["seed"]) for c in cells}
        want = {(a, s) for a in plan["arms"] for s in plan["seeds"]}
        complete = have == want
    return {"claims": rows, "manipulation_check": check, "alpha": alpha, "sesoi": dict(sesoi), "complete": complete,
            "cells": len(cells)}


def markdown_v2(analysis: dict) -> str:
    """The one table of issue #14: per claim Δ, its 95 % CI, g_av, p-values and the verdict."""
    lines = [
        "| claim (paper: a beats b) | metric | seeds | Δ = a − b (points) | 95 % CI | g_av | p (Holm) | TOST p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(r: dict, verdict: str) -> str:
        if "delta" not in r:
            return f"| {r['claim']} | {r['metric']} | {len(r['seeds'])} | – | – | – | – | – | {verdict} |"
        lo, hi = r["ci95"]
        p = f"{r['p']:.3g} ({r['p_holm']:.3g})" if "p_holm" in r else f"{r['p']:.3g}"
        tost = f"{r['p_tost']:.3g} ({r['p_tost_holm']:.3g})" if "p_tost_holm" in r else f"{r['p_tost']:.3g}"
        return (f"| {r['claim']} | {r['metric']} | {r['n']} | {r['delta']:+.2f} | [{lo:+.2f}, {hi:+.2f}] | "
                f"{r['g_av']:+.2f} | {p} | {tost} | {verdict} |")

    provisional = " (provisional: incomplete grid)" if analysis.get("complete") is False else ""
    check_failed = analysis["manipulation_check"].get("passed") is False
    for r in analysis["claims"]:
        flag = " (|Δ| < SESOI)" if r.get("below_sesoi") else ""
        flag += "; manipulation check failed" if check_failed and r["verdict"] != "not run" else ""
        status = " (exploratory)" if r.get("status") == "exploratory" else ""
        lines.append(fmt(r, f"**{r['verdict']}**{status}{flag}{provisional}"))
    check = analysis["manipulation_check"]
    status = {True: "passed", False: "failed"}.get(check.get("passed"), "not run")
    lines.append(fmt(check, f"manipulation check: {status}"))
    return "\n".join(lines)
