"""Where ``make train``'s time goes: python benchmarks/train_profile.py

Profiles training steps of the embedded default (``TrainConfig()``: gald_tiny, batch 8 at
128×256, the synthetic benchmark) with ``torch.profiler`` after ``--warmup`` steps, on this CPU,
and reports the share of self CPU time per operator group — convolutions (forward and backward),
BatchNorm, resizes, loss, data loading, optimiser, the rest — plus the one-off cost of generating
the benchmark's scenes. Writes ``benchmarks/results/train_profile.json``; ``--smoke`` profiles one
step of a smaller model and writes nothing (CI).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # _results, beside this script
from _results import machine, report  # noqa: E402

GROUPS = {  # operator name fragment -> group (first match wins)
    "convolution_backward": "convolution backward",
    "convolution": "convolution forward",
    "batch_norm": "BatchNorm",
    "upsample": "bilinear resize",
    "softmax": "loss (softmax, NLL, OHEM)",
    "nll_loss": "loss (softmax, NLL, OHEM)",
    "kthvalue": "loss (softmax, NLL, OHEM)",
    "DataLoader": "data loading",
    "Optimizer": "optimiser",
    "_foreach": "optimiser",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=60, help="steps before profiling (the first epoch generates scenes)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_profile.json"))
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from gald.config import TrainConfig
    from gald.data import synthetic
    from gald.data.build import build_segmentation_data
    from gald.engine.segmentation import model_config
    from gald.losses import build_criterion
    from gald.models import build_model

    small = dict(num_train=8, num_val=2, crop_size=[48, 64], depths=[1, 1, 1, 1], widths=[8, 8, 16, 16],
                 head_channels=16, aux_channels=16, ohem_min_kept=200)
    cfg = TrainConfig(**(small if args.smoke else {}))
    steps, warmup = (1, 1) if args.smoke else (args.steps, args.warmup)
    t0 = time.perf_counter()
    for i in range(min(cfg.num_train, 50)):
        synthetic.make_scene(cfg.data_seed, i, split="train", size=tuple(cfg.crop_size), version=cfg.synthetic_version)
    scene_s = (time.perf_counter() - t0) / min(cfg.num_train, 50)
    torch.manual_seed(cfg.seed)
    data = build_segmentation_data(cfg)
    model = build_model(model_config(cfg, data.num_classes)).train()
    criterion = build_criterion(ohem=cfg.ohem, thresh=cfg.ohem_thresh, min_kept=cfg.ohem_min_kept,
                                aux_weight=cfg.aux_weight, ignore_index=cfg.ignore_index)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = data.train_batches()
    device = torch.device("cpu")

    def step() -> None:
        images, targets = data.to_device(*next(batches), device)
        loss = criterion(model(images), targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - t0) / steps
    shares: dict[str, float] = {}
    total = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        group = next((g for k, g in GROUPS.items() if k in event.key), "the rest")
        shares[group] = shares.get(group, 0.0) + event.self_cpu_time_total
    record = {
        "command": "python benchmarks/train_profile.py" + (" --smoke" if args.smoke else ""),
        "config": "TrainConfig() (the embedded default, make train)" if not args.smoke else "smoke",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": machine(),
        "profiled_steps": steps, "after_warmup_steps": warmup,
        "seconds_per_step_profiled": round(wall, 4),
        "self_cpu_share_percent": {g: round(100 * v / total, 1) for g, v in sorted(shares.items(), key=lambda kv: -kv[1])},
        "scene_generation_ms_each": round(1000 * scene_s, 2),
        "scenes_generated_once": cfg.num_train + cfg.num_val,
    }
    report(record, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
