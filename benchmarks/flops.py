"""Parameters and FLOPs of every Table 1 variant: python benchmarks/flops.py

ResNet-50 (and the ResNet-101 rows of Table 1(d)), 19 classes, output stride 8, eval mode (no aux
head), one 769×769 image, counted with torch.utils.flop_counter.FlopCounterMode on the meta device
(FLOPs = 2 × multiply-adds of convolutions and matrix products; norms, activations, resizes and
element-wise ops count 0). Writes benchmarks/results/flops.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from gald.models import gald_resnet50, gald_resnet101

HERE = os.path.dirname(os.path.abspath(__file__))

VARIANTS = [
    ("FCN", gald_resnet50, dict(block="none")),
    ("+PSP", gald_resnet50, dict(ga="psp", block="ga")),
    ("+ASPP", gald_resnet50, dict(ga="aspp", block="ga")),
    ("+NL", gald_resnet50, dict(ga="nl", block="ga")),
    ("+CGNL", gald_resnet50, dict(ga="cgnl", block="ga")),
    ("+LD", gald_resnet50, dict(block="ld")),
    ("+PSP+LD", gald_resnet50, dict(ga="psp", block="gald")),
    ("+ASPP+LD", gald_resnet50, dict(ga="aspp", block="gald")),
    ("+NL+LD", gald_resnet50, dict(ga="nl", block="gald")),
    ("+CGNL+LD (GALD)", gald_resnet50, dict(ga="cgnl", block="gald")),
    ("Parallel (CGNL)", gald_resnet50, dict(ga="cgnl", block="parallel")),
    ("LDGA (CGNL)", gald_resnet50, dict(ga="cgnl", block="ldga")),
    ("GALD, LD bilinear", gald_resnet50, dict(ga="cgnl", block="gald", ld_downsample="bilinear")),
    ("GALD, LD avgpool", gald_resnet50, dict(ga="cgnl", block="gald", ld_downsample="avgpool")),
    ("FCN, ResNet-101", gald_resnet101, dict(block="none")),
    ("+CGNL, ResNet-101", gald_resnet101, dict(ga="cgnl", block="ga")),
    ("+PSP, ResNet-101", gald_resnet101, dict(ga="psp", block="ga")),
    ("GALD, official mode", gald_resnet50, dict(ga="cgnl", block="gald", mode="official")),
]


def count(builder, kwargs: dict, size: int) -> dict:
    """Parameters (eval graph) and forward FLOPs of one variant at ``size``×``size``."""
    with torch.device("meta"):
        model = builder(num_classes=19, aux=False, **kwargs).eval()
        x = torch.empty(1, 3, size, size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    return {"parameters": sum(p.numel() for p in model.parameters()), "gflops": counter.get_total_flops() / 1e9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=769)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "flops"))
    args = parser.parse_args(argv)
    rows = [{"variant": name, **count(builder, kw, args.size)} for name, builder, kw in VARIANTS]
    base = rows[0]
    lines = [
        f"Table 1 variants, 19 classes, OS 8, eval mode, 1×3×{args.size}×{args.size} (`python benchmarks/flops.py`).",
        "",
        "| variant | parameters (M) | GFLOPs | vs FCN (GFLOPs) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['parameters'] / 1e6:.3f} | {r['gflops']:.1f} | {r['gflops'] - base['gflops']:+.2f} |")
    with open(args.out + ".json", "w") as f:
        json.dump({"size": args.size, "rows": rows}, f, indent=2)
    md = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
