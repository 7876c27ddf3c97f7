"""The confirmatory grid on benchmark v2 (issue #14): run cells, then analyse them as pre-registered.

Arms, seeds, schedule, threads, the smallest effects of interest and the verdict rules are fixed in
``benchmarks/PREREGISTRATION_v2.md`` (its JSON block is read here) before any LD arm ran. Every cell
records the grid identity — benchmark, commit, pre-registration hash — and a results folder never
mixes identities. Run it from a ``git worktree`` at the pre-registration commit so the code under a
running grid does not change; finished cells are skipped, so it resumes after an interruption.

    python benchmarks/ablation_v2.py run                       # every missing cell, as pre-registered
    python benchmarks/ablation_v2.py run --shard 0/2 &  python benchmarks/ablation_v2.py run --shard 1/2
    python benchmarks/ablation_v2.py analyse                   # -> results/ablation_v2.{md,json}
    python benchmarks/ablation_v2.py run --smoke --results /tmp/v2 && python benchmarks/ablation_v2.py analyse --smoke --results /tmp/v2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import sys
import tempfile

import torch

import gald
from gald.experiments import ablation
from gald.metrics.ld_effect import ld_verdict

HERE = os.path.dirname(os.path.abspath(__file__))
PREREG = os.path.join(HERE, "PREREGISTRATION_v2.md")
RESULTS = os.path.join(HERE, "results", "ablation_v2")

SMOKE = dict(iterations=6, num_train=4, num_val=2, crop_size=[48, 64], batch_size=2, ohem_min_kept=200, eval_interval=3,
             depths=[1, 1, 1, 1], widths=[8, 8, 16, 16], head_channels=16, aux_channels=16)


PLAN_SESOI = ("mIoU", "small_mIoU", "context_mIoU")


def read_plan(path: str) -> dict:
    """The pre-registration's machine-readable block (the ```json fence under the "## Plan" heading),
    checked against the code: the schedule equals ``gald.experiments.ablation.V2_BENCHMARK``'s, the arms are
    known, SESOIs are given for every metric the analysis needs."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^## Plan[ \t]*$.*?```json\n(.*?)\n```", text, flags=re.S | re.M)
    if not m:
        raise ValueError(f"{path}: no ```json block under a '## Plan' heading")
    plan = json.loads(m.group(1))
    missing = {"arms", "seeds", "threads", "schedule", "sesoi"} - set(plan)
    if missing:
        raise ValueError(f"{path}: the plan lacks {sorted(missing)}")
    schedule = {k: ablation.V2_BENCHMARK.get(k) for k in ("iterations", "d", "synthetic_version")}
    if plan["schedule"] != schedule:
        raise ValueError(f"{path}: the plan's schedule {plan['schedule']} differs from gald.ablation.V2_BENCHMARK's {schedule}")
    unknown = [a for a in plan["arms"] if a not in ablation.VARIANTS]
    if unknown:
        raise ValueError(f"{path}: unknown arms {unknown}")
    lacking = [k for k in PLAN_SESOI if k not in plan["sesoi"]]
    if lacking:
        raise ValueError(f"{path}: the plan gives no SESOI for {lacking}")
    return plan


def check_code_location() -> None:
    """The grid must run the code of the checkout this script is in (a worktree at the
    pre-registration commit), not another copy an editable install points at."""
    repo = os.path.dirname(HERE)
    lib = os.path.dirname(os.path.dirname(os.path.abspath(gald.__file__)))
    if os.path.realpath(repo) != os.path.realpath(lib):
        raise ValueError(f"this script is in {repo} but imports gald from {lib}; run it with PYTHONPATH={repo}")


def shard_cells(arms: list[str], seeds: list[int], shard: tuple[int, int]) -> list[tuple[str, int]]:
    """Seed-major (so partial grids cover every arm), every n-th cell from offset i."""
    cells = [(arm, seed) for seed in seeds for arm in arms]
    i, n = shard
    return cells[i::n]


def run(args: argparse.Namespace) -> int:
    plan = read_plan(args.prereg)
    check_code_location()
    threads = plan["threads"]
    torch.set_num_threads(threads)
    overrides = dict(ablation.V2_BENCHMARK, **(SMOKE if args.smoke else {}))
    arms = args.arms or plan["arms"]
    seeds = args.seeds if args.seeds is not None else plan["seeds"]
    outside = [a for a in arms if a not in plan["arms"]] + [s for s in seeds if s not in plan["seeds"]]
    if outside and not args.smoke:
        raise ValueError(f"{outside} are not in the plan's arms / seeds ({args.prereg}); the grid runs only what was pre-registered")
    if args.smoke:
        arms, seeds = ["fcn", "cgnl", "cgnl+ld"], [0, 1]
    identity = ablation.grid_identity(benchmark="v2" + ("-smoke" if args.smoke else ""), preregistration=args.prereg)
    if identity["commit"].endswith("+dirty") and not args.smoke:
        raise ValueError("gald/ or benchmarks/ablation_v2.py has uncommitted changes; the grid runs committed code only")
    work = args.work_dir or tempfile.mkdtemp(prefix="gald-v2-")
    for arm, seed in shard_cells(arms, seeds, args.shard):
        ablation.run_cell(arm, seed, results_dir=args.results, work_dir=work, overrides=overrides, identity=identity,
                          measure_ld_effect=True, threads=threads)
    return 0


def analyse(args: argparse.Namespace) -> dict:
    plan = read_plan(args.prereg)
    cells = ablation.load_cells(args.results)
    identities = {json.dumps(c.get("identity"), sort_keys=True) for c in cells}
    if len(identities) > 1:
        raise ablation.MixedGridError(f"{args.results}: cells of {len(identities)} grids: {sorted(identities)}")
    prereg = ablation.preregistration_hash(args.prereg)
    stale = [f"{c['variant']}-s{c['seed']}" for c in cells if (c.get("identity") or {}).get("preregistration") != prereg]
    if stale:
        raise ablation.MixedGridError(f"cells {stale[:3]}... were run under another pre-registration than {args.prereg}")
    result = ablation.analyse_v2(cells, plan["sesoi"], plan=None if args.smoke else plan)
    if args.smoke:
        result["complete"] = None
    s_miou = plan["sesoi"]["mIoU"]  # the pre-registered SESOI, not the library default
    result["ld_effects"] = [
        {"variant": c["variant"], "seed": c["seed"],
         **{k: {"effect": v["metrics"]["mIoU"]["effect"], "ci95": v["metrics"]["mIoU"]["ci95"],
                "small_effect": (v["metrics"].get("small_mIoU") or {}).get("effect", math.nan),
                "small_ci95": (v["metrics"].get("small_mIoU") or {}).get("ci95", [math.nan, math.nan]),
                "verdict": ld_verdict(v["metrics"]["mIoU"]["ci95"], s_miou)}
            for k, v in c["ld_effect"].items()}}
        for c in cells if "ld_effect" in c
    ]
    table = ablation.aggregate(cells)
    env = f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    identity = json.loads(identities.pop()) if cells else None
    md = [
        "# Benchmark v2: the confirmatory grid (issue #14)",
        f"Generated by `python benchmarks/ablation_v2.py analyse` from {len(cells)} cells in "
        f"`{os.path.relpath(args.results, os.path.dirname(HERE))}`; grid identity {identity}; {env}. "
        "Plan, SESOI and verdict rules: `benchmarks/PREREGISTRATION_v2.md`.",
        "## Pre-registered claims",
        ablation.markdown_v2(result),
        "Δ in points; CI: 95 % paired t-interval over seeds; g_av: Hedges' g_av; p: paired t-test; TOST: "
        f"two one-sided tests against ±SESOI ({plan['sesoi']}); Holm over the 6 claims, separately for the tests "
        "and the equivalence tests.",
        "## Per arm (mean ± sample std over seeds)",
        ablation.markdown_table(table),
        "## LD effect of every LD cell (mIoU as trained − with M replaced by its spatial mean; 95 % bootstrap CI over images)",
        "\n".join([
            "| arm | seed | LD effect (mIoU) | 95 % CI | small-pattern effect | 95 % CI | verdict (S = SESOI of mIoU) "
            "| M = 0 effect (mIoU) |",
            "|---|---|---|---|---|---|---|---|",
            *[f"| {e['variant']} | {e['seed']} | {e['spatial_mean']['effect']:+.2f} | "
          f"[{e['spatial_mean']['ci95'][0]:+.2f}, {e['spatial_mean']['ci95'][1]:+.2f}] | "
          f"{e['spatial_mean']['small_effect']:+.2f} | "
          f"[{e['spatial_mean']['small_ci95'][0]:+.2f}, {e['spatial_mean']['small_ci95'][1]:+.2f}] | "
          f"{e['spatial_mean']['verdict']} | {e['zero']['effect']:+.2f} |" for e in result["ld_effects"]],
        ]),
    ]
    out_md = os.path.join(args.results, "..", "ablation_v2.md") if not args.smoke else os.path.join(args.results, "ablation_v2.md")
    out_json = out_md[:-3] + ".json"
    with open(out_md, "w") as f:
        f.write("\n\n".join(md) + "\n")
    with open(out_json, "w") as f:
        json.dump({"identity": identity, "environment": env, "analysis": result}, f, indent=2)
    print("\n\n".join(md))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def subset(run: argparse.ArgumentParser) -> None:
        run.add_argument("--arms", nargs="+", default=None, help="subset of the plan's arms")
        run.add_argument("--seeds", nargs="+", type=int, default=None, help="subset of the plan's seeds")

    return grid_arguments(argv, doc=__doc__, results=RESULTS, prereg=PREREG, smoke="3 arms, 2 seeds, 6 iterations",
                          smoke_results="gald-v2-smoke", run_options=subset)


def grid_arguments(argv: list[str] | None, *, doc: str, results: str, prereg: str, smoke: str, smoke_results: str,
                   run_options=None) -> argparse.Namespace:
    """The command line of a pre-registered grid: ``run`` (``--shard i/n``, ``--work-dir``) and
    ``analyse``, both with ``--results``, ``--prereg`` and ``--smoke`` (whose cells go to a
    temporary folder, never the real grid's)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "analyse"):
        p = sub.add_parser(name)
        p.add_argument("--results", default=results, help="folder of the cells")
        p.add_argument("--prereg", default=prereg, help="the pre-registration whose plan is followed")
        p.add_argument("--smoke", action="store_true", help=f"CI-sized: {smoke}")
    r = sub.choices["run"]
    if run_options is not None:
        run_options(r)
    r.add_argument("--shard", default="0/1", help="i/n: run every n-th cell from the i-th (parallel runners)")
    r.add_argument("--work-dir", default=None, help="run folders (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.smoke and args.results == results:  # smoke cells never land in the real grid's folder
        args.results = os.path.join(tempfile.gettempdir(), smoke_results)
    if args.command == "run":
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            i, n = -1, 0
        if not 0 <= i < n:
            parser.error(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}")
        args.shard = (i, n)
    return args


def grid_main(argv: list[str] | None, *, parse, run, analyse) -> int:
    """A pre-registered grid's ``main``: parse, log to stdout, then ``run`` or ``analyse``."""
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    if args.command == "run":
        return run(args)
    analyse(args)
    return 0


def exit_with(main) -> None:
    """Run a grid script's ``main`` on the command line: a refused grid or plan is one line, exit code 2."""
    try:
        sys.exit(main(sys.argv[1:]))
    except (ablation.MixedGridError, ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    return grid_main(argv, parse=parse_args, run=run, analyse=analyse)


if __name__ == "__main__":
    exit_with(main)
