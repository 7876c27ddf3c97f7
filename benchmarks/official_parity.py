"""Numerical parity with the authors' network: python benchmarks/official_parity.py --official-repo PATH

PATH is a checkout of github.com/lxtGH/GALD-Net. For GALD_res50 and GALD_res101 (19 classes) the
script builds the authors' network from PATH/libs/models/GALDNet.py, gives it random weights and
random BatchNorm statistics, converts the state dict with gald.convert_official, and compares
(fp32, CPU, eval mode) the head output at 1/8 resolution (max abs difference, target <= 1e-4) and
the full-resolution prediction after the authors' bilinear upsampling (align_corners=True): the
share of pixels with the same argmax, overall and where the top-2 logit margin exceeds 1e-3. It
also compares one training-mode forward (main and aux outputs, same dropout seed). Results go to
benchmarks/results/official_parity.{json,md}. Nothing of the authors' code is copied: it is
imported from the checkout given on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _official import authors_module, build_pair  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def compare(authors, arch: str, size: int, seed: int = 0) -> dict:
    theirs, ours = build_pair(authors, arch, seed)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    theirs.eval(), ours.eval()
    with torch.no_grad():
        a = theirs(x)[0]
        t = ours.inspect(x)
        b = t["logits"]
        full_a = F.interpolate(a, size=(size, size), mode="bilinear", align_corners=True)
        full_b = t["out"]
    top2 = full_a.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    same = full_a.argmax(1) == full_b.argmax(1)
    confident = margin > 1e-3
    theirs.train(), ours.train()
    with torch.no_grad():
        torch.manual_seed(seed + 2)
        ta = theirs(x)
        torch.manual_seed(seed + 2)
        tb = ours(x)
    up = lambda y: F.interpolate(y, size=(size, size), mode="bilinear", align_corners=True)  # noqa: E731
    return {
        "arch": arch,
        "input": [1, 3, size, size],
        "parameters": {"authors": sum(p.numel() for p in theirs.parameters()), "gald": sum(p.numel() for p in ours.parameters())},
        "head_output_shape": list(a.shape),
        "head_max_abs_diff": float((a - b).abs().max()),
        "head_max_abs_value": float(a.abs().max()),
        "full_res_argmax_agreement": float(same.float().mean()),
        "full_res_agreement_where_margin_gt_1e-3": float(same[confident].float().mean()),
        "pixels_with_margin_gt_1e-3": float(confident.float().mean()),
        "train_mode_out_max_abs_diff": float((up(ta[0]) - tb["out"]).abs().max()),
        "train_mode_aux_max_abs_diff": float((up(ta[1]) - tb["aux"]).abs().max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-repo", required=True)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "official_parity"))
    args = parser.parse_args(argv)
    authors = authors_module(args.official_repo)
    results = [compare(authors, arch, args.size) for arch in ("gald_resnet50", "gald_resnet101")]
    env = f"torch {torch.__version__}, CPU, fp32, {torch.get_num_threads()} threads"
    with open(args.out + ".json", "w") as f:
        json.dump({"environment": env, "results": results}, f, indent=2)
    lines = [
        f"Parity with the authors' GALDNet.py (random weights and BN statistics, converted; {env}).",
        "",
        "| arch | input | parameters (authors / gald) | head max abs diff (largest abs logit) | argmax agreement, full res | where top-2 margin > 1e-3 | train mode: out / aux max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['arch']} | {r['input'][2]}×{r['input'][3]} | {r['parameters']['authors']:,} / {r['parameters']['gald']:,} | "
            f"{r['head_max_abs_diff']:.2e} ({r['head_max_abs_value']:.2f}) | {100 * r['full_res_argmax_agreement']:.4f} % | "
            f"{100 * r['full_res_agreement_where_margin_gt_1e-3']:.4f} % | {r['train_mode_out_max_abs_diff']:.2e} / {r['train_mode_aux_max_abs_diff']:.2e} |"
        )
    md = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    ok = all(r["head_max_abs_diff"] <= 1e-4 and r["full_res_agreement_where_margin_gt_1e-3"] == 1.0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
