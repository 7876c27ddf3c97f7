"""Does the default FCN already see the global cue? python benchmarks/erf_check.py --work-dir DIR

For the FCN baseline and for GA / GALD variants of the ablation (seed 0, same schedule), measures
(1) the share of each ground pixel's effective receptive field that lies on the sky, and (2) on
day/dusk counterfactual twins of 32 validation scenes, how often the ground prediction follows the
sky cue, by distance from the sky. Models come from the ablation's run folders in --work-dir
(python benchmarks/ablation.py --work-dir DIR); a missing one is trained with the same cell config.
Writes benchmarks/results/erf_check.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import torch

from gald import ablation, train
from gald.analysis import cue_twins, erf_sky_share
from gald.config import model_config
from gald.models import build_model, load_model

HERE = os.path.dirname(os.path.abspath(__file__))


def model_for(variant: str, work_dir: str, seed: int = 0) -> torch.nn.Module:
    if variant == "fcn-init":
        torch.manual_seed(seed)
        cfg = ablation.cell_config("fcn", seed, output_dir=work_dir)
        return build_model(model_config(cfg, 9))
    cfg = ablation.cell_config(variant, seed, output_dir=work_dir)
    path = os.path.join(cfg.run_dir, "model.pt")
    if not os.path.isfile(path):
        train.main(cfg)
    return load_model(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--variants", nargs="+", default=["fcn-init", "fcn", "fcn-deep", "ld", "cgnl", "psp", "cgnl+ld"])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "erf_check"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    results = {}
    for variant in args.variants:
        model = model_for(variant, args.work_dir).eval()
        results[variant] = {
            "erf": erf_sky_share(model, indices=range(8), points_per_image=4, version=1),  # v1's models
            "twins": cue_twins(model, indices=range(32), version=1),
        }
        logging.info("%s: %s", variant, json.dumps(results[variant]))
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    bins = list(next(iter(results.values()))["twins"]["by_distance"])
    lines = [
        "| model | ERF mass on sky (mean / max over 32 ground points) | ground accuracy on twins | follows the cue | "
        + " | ".join(f"follows the cue, {b} below sky" for b in bins) + " |",
        "|---|---|---|---|" + "---|" * len(bins),
    ]
    for v, r in results.items():
        t = r["twins"]
        per = " | ".join(f"{t['by_distance'][b]['follows_cue']:.1f} %" if b in t["by_distance"] else "–" for b in bins)
        lines.append(f"| {v} | {100 * r['erf']['mean_sky_share']:.2f} % / {100 * r['erf']['max_sky_share']:.2f} % | "
                     f"{t['accuracy']:.1f} % | {t['follows_cue']:.1f} % | {per} |")
    md = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
