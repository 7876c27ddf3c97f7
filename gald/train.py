"""``python -m gald.train`` — training entry point.

The full training engine (embedded benchmark, configs, DDP, checkpoints, evaluation) is the
subject of the segmentation-training issue. Until it lands, running this module performs a
**model smoke run**: it builds the default CPU model (a slim Bottleneck ResNet, OS8, CGNL + LD with
d = 8), overfits one fixed random batch with the paper's criterion (OHEM + 0.4 × aux CE) and SGD
with poly decay, and reports the loss before and after, so a fresh install proves that the
network, its gradients and the loss work end to end.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from gald.losses import build_criterion
from gald.models import GA_MODULES, gald_tiny
from gald.models.heads import ARRANGEMENTS

log = logging.getLogger("gald.train")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="GALD training (currently: a model smoke run)", add_help=True)
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--ga", default="cgnl", choices=sorted(GA_MODULES))
    parser.add_argument("--block", default="gald", choices=ARRANGEMENTS)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(args.seed)
    model = gald_tiny(num_classes=args.num_classes, ga=args.ga, block=args.block)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model smoke run: gald_tiny ga=%s block=%s, %.2f M parameters", args.ga, args.block, n_params / 1e6)
    log.info("(the full training engine arrives with the segmentation-training issue)")
    criterion = build_criterion(min_kept=args.height * args.width // 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=args.steps, power=0.9)
    images = torch.randn(args.batch_size, 3, args.height, args.width)
    # Labels: horizontal bands, so the batch is learnable.
    rows = torch.arange(args.height).div(max(1, args.height // args.num_classes), rounding_mode="floor")
    target = rows.clamp(max=args.num_classes - 1).view(1, -1, 1).expand(args.batch_size, -1, args.width).long()
    model.train()
    start = time.perf_counter()
    first = last = float("nan")
    for step in range(args.steps):
        losses = criterion(model(images), target)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"non-finite loss {losses['loss'].item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        scheduler.step()
        last = losses["loss"].item()
        first = last if step == 0 else first
        if step % 10 == 0 or step == args.steps - 1:
            log.info("step %d/%d loss %.4f lr %.5f", step + 1, args.steps, last, scheduler.get_last_lr()[0])
    elapsed = time.perf_counter() - start
    log.info("smoke run done in %.1f s: loss %.4f -> %.4f", elapsed, first, last)
    return {"first_loss": first, "last_loss": last, "seconds": elapsed}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(get_args_parser().parse_args())
