"""GALD plugged into a host network vs the host alone, on benchmark v2 (issue #21; exploratory).

Arms, seeds, schedule, SESOI and the analysis are fixed in ``benchmarks/PREREGISTRATION_plug.md``
(its JSON block is read here) before any cell ran. Cells record the grid identity (benchmark,
commit, pre-registration hash); run from a ``git worktree`` at the pre-registration commit.
Finished cells are skipped, so it resumes after an interruption.

    python benchmarks/plug_v2.py run --shard 0/2 &  python benchmarks/plug_v2.py run --shard 1/2
    python benchmarks/plug_v2.py analyse                 # -> results/plug_v2.{md,json}
    python benchmarks/plug_v2.py run --smoke && python benchmarks/plug_v2.py analyse --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import tempfile

import torch

from ablation_v2 import SMOKE, check_code_location, exit_with, grid_arguments, grid_main, shard_cells
from gald.experiments import ablation, stats
from gald.metrics.ld_effect import ld_verdict

HERE = os.path.dirname(os.path.abspath(__file__))
PREREG = os.path.join(HERE, "PREREGISTRATION_plug.md")
RESULTS = os.path.join(HERE, "results", "plug_v2")


def read_plan(path: str) -> dict:
    """The pre-registration's ```json block under "## Plan", checked against the code."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^## Plan[ \t]*$.*?```json\n(.*?)\n```", text, flags=re.S | re.M)
    if not m:
        raise ValueError(f"{path}: no ```json block under a '## Plan' heading")
    plan = json.loads(m.group(1))
    schedule = {k: ablation.V2_BENCHMARK.get(k) for k in ("iterations", "d", "synthetic_version")}
    if plan["schedule"] != schedule:
        raise ValueError(f"{path}: the plan's schedule {plan['schedule']} differs from V2_BENCHMARK's {schedule}")
    unknown = [a for a in plan["arms"] if a not in ablation.PLUG_VARIANTS]
    if unknown:
        raise ValueError(f"{path}: unknown arms {unknown}")
    return plan


def run(args: argparse.Namespace) -> int:
    plan = read_plan(args.prereg)
    check_code_location()
    torch.set_num_threads(plan["threads"])
    overrides = dict(ablation.V2_BENCHMARK, **(SMOKE if args.smoke else {}))
    seeds = [0] if args.smoke else plan["seeds"]
    identity = ablation.grid_identity(benchmark="v2-plug" + ("-smoke" if args.smoke else ""), preregistration=args.prereg)
    if identity["commit"].endswith("+dirty") and not args.smoke:
        raise ValueError("gald/ has uncommitted changes; the grid runs committed code only")
    work = args.work_dir or tempfile.mkdtemp(prefix="gald-plug-")
    for arm, seed in shard_cells(plan["arms"], seeds, args.shard):
        ablation.run_cell(arm, seed, results_dir=args.results, work_dir=work, overrides=overrides, identity=identity,
                          measure_ld_effect=True, threads=plan["threads"])
    return 0


def analyse(args: argparse.Namespace) -> dict:
    plan = read_plan(args.prereg)
    cells = ablation.load_cells(args.results)
    identities = {json.dumps(c.get("identity"), sort_keys=True) for c in cells}
    if len(identities) != 1:
        raise ablation.MixedGridError(f"{args.results}: cells of {len(identities)} grids, need one: {sorted(identities)}")
    identity = json.loads(identities.pop())
    if identity.get("preregistration") != ablation.preregistration_hash(args.prereg):
        raise ablation.MixedGridError(f"{args.results}: cells of another pre-registration than {args.prereg}")
    rows = []
    for key, claim, a, b, metric in plan["comparisons"]:
        by = {(c["variant"], c["seed"]): c[metric] for c in cells if c.get(metric) is not None and math.isfinite(c[metric])}
        seeds = sorted(s for (v, s) in by if v == a and (b, s) in by)
        row = {"key": key, "claim": claim, "a": a, "b": b, "metric": metric, "seeds": seeds, "status": "exploratory",
               "differences": [by[(a, s)] - by[(b, s)] for s in seeds]}
        if len(seeds) >= 2:
            row.update(stats.paired([by[(a, s)] for s in seeds], [by[(b, s)] for s in seeds],
                                    sesoi=plan["sesoi"][metric]).to_dict())
        rows.append(row)
    tested = [r for r in rows if "p" in r]
    for name, source in (("p_holm", "p"), ("p_tost_holm", "p_tost")):
        for r, adj in zip(tested, stats.holm([r[source] for r in tested])):
            r[name] = adj
    for r in rows:
        r["verdict"] = stats.verdict(r["delta"], r["p_holm"], r["p_tost_holm"]) if "p" in r else "not run"
    s_miou = plan["sesoi"]["mIoU"]
    ld = [{"seed": c["seed"], "effect": c["ld_effect"]["spatial_mean"]["metrics"]["mIoU"]["effect"],
           "ci95": c["ld_effect"]["spatial_mean"]["metrics"]["mIoU"]["ci95"],
           "zero_effect": c["ld_effect"]["zero"]["metrics"]["mIoU"]["effect"],
           "verdict": ld_verdict(c["ld_effect"]["spatial_mean"]["metrics"]["mIoU"]["ci95"], s_miou)}
          for c in cells if "ld_effect" in c]
    have = {(c["variant"], c["seed"]) for c in cells}
    complete = have == {(a, s) for a in plan["arms"] for s in plan["seeds"]}
    table = ablation.aggregate(cells)
    env = f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    extra = {v: {"parameters": [c["parameters"] for c in cells if c["variant"] == v][0],
                 "train_seconds": statistics.fmean([c["train_seconds"] for c in cells if c["variant"] == v])}
             for v in plan["arms"] if any(c["variant"] == v for c in cells)}
    md = [
        "# GALD plugged into LRASPP vs LRASPP, benchmark v2 (issue #21) — exploratory",
        f"Generated by `python benchmarks/plug_v2.py analyse` from {len(cells)} cells in "
        f"`{os.path.relpath(args.results, os.path.dirname(HERE))}`"
        f"{'' if complete else ' (**incomplete**: provisional)'}; grid identity {identity}; {env}. "
        "Plan and analysis: `benchmarks/PREREGISTRATION_plug.md`.",
        "## Comparisons (exploratory)",
        "\n".join([
            "| comparison | metric | seeds | Δ = a − b (points) | 95 % CI | g_av | p (Holm) | TOST p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
            *[f"| {r['claim']} | {r['metric']} | {len(r['seeds'])} | {r['delta']:+.2f} | "
              f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}] | {r['g_av']:+.2f} | {r['p_holm']:.3f} | "
              f"{r['p_tost_holm']:.3f} | {r['verdict']} |" if "p" in r else f"| {r['claim']} | {r['metric']} | "
              f"{len(r['seeds'])} | – | – | – | – | – | not run |" for r in rows],
        ]),
        f"Δ in points; CI: 95 % paired t-interval over seeds; TOST against ±{plan['sesoi']['mIoU']} points; "
        "Holm over the three comparisons.",
        "## Per arm (mean ± sample SD over seeds)",
        ablation.markdown_table(table),
        "\n".join(["| arm | parameters | training time (s, mean) |", "|---|---|---|",
                   *[f"| {v} | {e['parameters'] / 1e6:.3f} M | {e['train_seconds']:.0f} |" for v, e in extra.items()]]),
        f"## LD effect of each host + GALD cell (S = {s_miou})",
        "\n".join(["| seed | LD effect (mIoU) | 95 % CI | M = 0 effect | verdict |", "|---|---|---|---|---|",
                   *[f"| {e['seed']} | {e['effect']:+.2f} | [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}] | "
                     f"{e['zero_effect']:+.2f} | {e['verdict']} |" for e in ld]]),
    ]
    out_md = os.path.join(args.results, "plug_v2.md") if args.smoke else os.path.join(args.results, "..", "plug_v2.md")
    with open(out_md, "w") as f:
        f.write("\n\n".join(md) + "\n")
    with open(out_md[:-3] + ".json", "w") as f:
        json.dump({"identity": identity, "environment": env, "complete": complete, "comparisons": rows,
                   "ld_effects": ld, "arms": {v: {m: vars(s) for m, s in t.items()} for v, t in table.items()},
                   "extra": extra}, f, indent=2)
    print("\n\n".join(md))
    return {"comparisons": rows, "ld_effects": ld, "complete": complete}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return grid_arguments(argv, doc=__doc__, results=RESULTS, prereg=PREREG, smoke="both arms, one seed, 6 iterations",
                          smoke_results="gald-plug-smoke")


def main(argv: list[str] | None = None) -> int:
    return grid_main(argv, parse=parse_args, run=run, analyse=analyse)


if __name__ == "__main__":
    exit_with(main)
