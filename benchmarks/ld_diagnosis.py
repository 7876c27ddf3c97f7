"""Does LD learn? Gradient flow into Local Distribution and the spatial contrast of its masks.

Issue #14, milestone 1 (diagnosis) and 2 (the design decided from gradient health alone). For each
configuration this trains the default model on the v1 benchmark data (tiny runs) or takes a few
SGD steps on generated 769×769 scenes (ResNet-50 runs) and records:

* per LD depth-wise conv: ``‖∇W‖ / ‖W‖``, averaged over each logging window;
* the same ratio for the conv right after LD (``head.convb``), the reference;
* ``M``'s per-channel spatial standard deviation on 8 fixed validation images (eval mode),
  averaged over images and channels — 0 when the mask is a per-channel constant.

Accuracy is deliberately *not* measured: the LD design must not be chosen on it (issue #14).

    python benchmarks/ld_diagnosis.py                 # tiny (paper, official) + R50 769 (paper, official)
    python benchmarks/ld_diagnosis.py --smoke --out /tmp/diag   # CI-sized
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time

import torch

from gald.config import TrainConfig, model_config
from gald.data.build import build_segmentation_data
from gald.data.synthetic import make_scene
from gald.data.transforms import ToTensorNormalize
from gald.losses import build_criterion
from gald.models import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("ld_diagnosis")

#: The diagnosis ran on benchmark v1 (issue #14, milestone 1), pinned now that v2 is the default.
V1 = dict(synthetic_version=1)
# name -> TrainConfig overrides; every run is the default model on V1 data with only these changed.
# Designs: "bn" = the authors' (norm on the last conv, PyTorch's default init), "nobn" = last conv +
# bias, nothing between W_d F_GA and σ (Eq. 1 literally), "nobn0" = the same with the last conv at 0
# (M = 0.5 at the start), "bnbox" = "bn" with every depth-wise kernel starting as a 3×3 box filter.
DESIGNS = {
    "bn": dict(ld_last_norm=True, ld_init="default"),
    "nobn": dict(ld_last_norm=False, ld_init="default"),
    "nobn0": dict(ld_last_norm=False, ld_init="zero"),
    "bnbox": dict(ld_last_norm=True, ld_init="box"),
}
TINY_RUNS = {
    **{f"paper-d{d}-{name}": dict(mode="paper", d=d, **design) for d in (8, 2) for name, design in DESIGNS.items()},
    "official-d8": dict(mode="official", d=8),
}
R50_RUNS = {
    **{f"r50-paper-{name}": dict(mode="paper", **design) for name, design in DESIGNS.items()},
    "r50-official": dict(mode="official"),
}


def ld_modules(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    """LD's depth-wise convs, first to last."""
    ld = model.head.block.ld
    return [m for m in ld.convs.modules() if isinstance(m, torch.nn.Conv2d)]


def grad_ratios(model: torch.nn.Module) -> dict[str, float]:
    """``‖∇W‖ / ‖W‖`` of each LD conv and of the conv after LD (call after ``backward``)."""
    out = {}
    for i, conv in enumerate(ld_modules(model)):
        out[f"ld_conv{i}"] = (conv.weight.grad.norm() / conv.weight.norm()).item()
    ref = model.head.convb[0].weight
    out["convb"] = (ref.grad.norm() / ref.norm()).item()
    return out


@torch.no_grad()
def mask_spatial_std(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Mean over images and channels of M's spatial standard deviation (eval mode)."""
    was = model.training
    model.eval()
    m = model.inspect(images)["M"]
    model.train(was)
    return m.flatten(2).std(dim=2).mean().item()


@torch.no_grad()
def mask_grid(model: torch.nn.Module, image: torch.Tensor) -> list[int]:
    """The (h, w) of ``W_d F_GA``: the grid M is computed on before upsampling."""
    model.eval()
    grid = model.head.block.ld.downsample(model.head.conva(model.backbone(image)["layer4"])).shape[-2:]
    model.train()
    return list(grid)


def tiny_run(name: str, overrides: dict, *, iterations: int, window: int, smoke: bool) -> dict:
    values = {**V1, **overrides, **(SMOKE if smoke else {})}
    cfg = TrainConfig(name=name, seed=0, stage_classifiers=False, iterations=iterations, **values)
    torch.manual_seed(cfg.seed)
    data = build_segmentation_data(cfg)
    model = build_model(model_config(cfg, data.num_classes)).train()
    criterion = build_criterion(ohem=cfg.ohem, thresh=cfg.ohem_thresh, min_kept=cfg.ohem_min_kept,
                                aux_weight=cfg.aux_weight, ignore_index=cfg.ignore_index)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=cfg.iterations, power=cfg.poly_power)
    probe = torch.stack([data.val_set[i][0] for i in range(min(8, len(data.val_set)))])
    rows = [{"step": 0, "mask_std": mask_spatial_std(model, probe)}]
    acc: dict[str, float] = {}
    batches = data.train_batches()
    for step in range(1, iterations + 1):
        images, targets = data.to_device(*next(batches), torch.device("cpu"))
        loss = criterion(model(images), targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for k, v in grad_ratios(model).items():
            acc[k] = acc.get(k, 0.0) + v
        opt.step()
        sched.step()
        if step % window == 0 or step == iterations:
            n = window if step % window == 0 else step % window
            row = {"step": step, **{k: v / n for k, v in acc.items()}, "mask_std": mask_spatial_std(model, probe)}
            acc = {}
            rows.append(row)
            log.info("%s step %d: %s", name, step, {k: f"{v:.3g}" for k, v in row.items() if k != "step"})
    grid = mask_grid(model, probe[:1])
    return {"kind": "tiny", "overrides": overrides, "mask_grid": list(grid), "rows": rows}


def r50_run(name: str, overrides: dict, *, steps: int, size: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = build_model({"arch": "gald_resnet50", "num_classes": 9, **overrides}).train()
    to_tensor = ToTensorNormalize()
    pairs = [to_tensor(*(lambda s: (s.image, s.label))(make_scene(0, i, size=(size, size), version=1))) for i in range(batch)]
    images = torch.stack([p[0] for p in pairs])
    targets = torch.stack([p[1] for p in pairs])
    criterion = build_criterion(ohem=True, min_kept=100_000 * batch, aux_weight=0.4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rows = []
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        loss = criterion(model(images), targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        row = {"step": step, **grad_ratios(model), "seconds": round(time.perf_counter() - t0, 1)}
        opt.step()
        rows.append(row)
        log.info("%s step %d: %s", name, step, {k: f"{v:.3g}" for k, v in row.items() if k != "step"})
    grid = mask_grid(model, images[:1])
    return {"kind": "resnet50", "overrides": overrides, "crop": size, "batch": batch, "mask_grid": list(grid), "rows": rows}


SMOKE = dict(num_train=4, num_val=2, crop_size=[48, 64], batch_size=2, ohem_min_kept=200,
             depths=[1, 1, 1, 1], widths=[8, 8, 16, 16], head_channels=16, aux_channels=16)


def summarise(run: dict) -> dict:
    """Health numbers: LD's ratio relative to convb's (median over windows, each LD conv), and
    whether M's spatial std rises (last window vs the first one after step 0)."""
    rows = [r for r in run["rows"] if r["step"] > 0]
    ld_keys = sorted(k for k in rows[0] if k.startswith("ld_conv"))
    rel = {k: sorted(r[k] / r["convb"] for r in rows)[len(rows) // 2] for k in ld_keys}
    out = {"ld_over_convb": rel, "within_10x": all(0.1 <= v <= 10 for v in rel.values())}
    stds = [r["mask_std"] for r in run["rows"] if "mask_std" in r]
    if len(stds) >= 3:
        out["mask_std_first"] = stds[1]
        out["mask_std_last"] = stds[-1]
        out["mask_std_rises"] = stds[-1] > stds[1]
    return out


def markdown(results: dict, env: str, command: str) -> str:
    lines = [
        "# LD diagnosis: gradient flow into LD and the spatial contrast of M",
        f"Generated by {command}; {env}. Accuracy is not measured here by design (issue #14).",
        "",
        "`ld/convb` is LD's `‖∇W‖/‖W‖` over that of the conv right after LD (median over logging windows);",
        "healthy means within 10× (0.1–10). `M std` is M's per-channel spatial std on 8 validation images.",
        "",
        "| run | mask grid | ld/convb per LD conv | within 10× | M std first → last window | rises |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in results.items():
        s = run["summary"]
        rel = ", ".join(f"{v:.3g}" for v in s["ld_over_convb"].values())
        std = f"{s['mask_std_first']:.4f} → {s['mask_std_last']:.4f}" if "mask_std_first" in s else "–"
        rises = {True: "yes", False: "no"}.get(s.get("mask_std_rises"), "–")
        grid = "×".join(map(str, run["mask_grid"]))
        lines.append(f"| {name} | {grid} | {rel} | {'yes' if s['within_10x'] else 'no'} | {std} | {rises} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for ld_diagnosis.{md,json}")
    parser.add_argument("--runs", nargs="+", default=None, help=f"subset of {list(TINY_RUNS) + list(R50_RUNS)}")
    parser.add_argument("--iterations", type=int, default=300, help="tiny runs: SGD steps")
    parser.add_argument("--r50-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the committed results: 1)")
    parser.add_argument("--smoke", action="store_true", help="CI-sized: 6 steps, 1 tiny run per design")
    parser.add_argument("--merge", action="store_true", help="add these runs to the diagnosis already in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    names = args.runs or [*TINY_RUNS, *R50_RUNS]
    unknown = [n for n in names if n not in TINY_RUNS and n not in R50_RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; valid: {list(TINY_RUNS) + list(R50_RUNS)}")
    if args.smoke:
        names, iterations, window = ["paper-d8-bn", "paper-d8-nobn0"], 6, 2
    else:
        iterations, window = args.iterations, 25
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "ld_diagnosis.json")
    results, commands = {}, []
    if args.merge and os.path.isfile(json_path):  # add to an earlier diagnosis (other designs)
        with open(json_path) as f:
            previous = json.load(f)
        results, commands = previous["runs"], previous.get("commands", [])
    env = (f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
           f"{torch.get_num_threads()} threads; tiny runs: v1 data, the default config, seed 0")
    commands.append("python benchmarks/ld_diagnosis.py" + (" " + " ".join(argv) if argv else ""))
    for name in names:
        if name in TINY_RUNS:
            run = tiny_run(name, TINY_RUNS[name], iterations=iterations, window=window, smoke=args.smoke)
        else:
            run = r50_run(name, R50_RUNS[name], steps=args.r50_steps, size=769, batch=2)
        run["summary"] = summarise(run)
        results[name] = run
        with open(json_path, "w") as f:  # after every run, so an interrupted diagnosis keeps what it measured
            json.dump({"environment": env, "commands": commands, "runs": results}, f, indent=2)
    md = markdown(results, env, "; ".join(f"`{c}`" for c in commands))
    with open(os.path.join(args.out, "ld_diagnosis.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
