"""Train the small checkpoints the notebooks read and write them with a JSON card each.

Writes ``notebooks/assets/<name>.pt`` (fp16 weights, a normal ``gald`` checkpoint that
``gald.models.load_model`` reads) and ``notebooks/assets/<name>.json`` (the command, the training
config, the loss / validation history and the metrics of the *saved* fp16 weights on the first
``--num-val`` validation scenes, evaluated with one thread — the numbers the notebooks print).

Five models are the columns of the paper's Fig. 8 (FCN, +LD, +GA, +GALD) plus LDGA for Fig. 4,
on a narrow variant of the default tiny network (widths 8-16-32-64, head 32 channels) so that all
of them fit in a few MB, trained for 300 iterations of batch 8. GA is pyramid pooling: on this
benchmark it is the GA module that reaches the sky cue reliably within 300 iterations (README,
Table 1(a)). ``stages`` is the same GALD network trained three times longer (900 iterations, as
the default ``python -m gald.train``), so that it segments the small patterns too, with the stage
classifiers of Fig. 5 (150 iterations on the frozen network). ``detector`` is Mask R-CNN + FPN on
the tiny ResNet with GALD at the end of stage 4, trained with the schedule of one
``benchmarks/detection.py`` cell (variant ``gald``, seed 0) on a narrower trunk; its card records
COCO / VOC metrics of the saved weights on the first ``--num-val`` validation scenes.

The files hold what inference needs: fp16 weights and no auxiliary head (it only adds a training
loss), so that all of them stay under 8 MB.

Usage::

    python scripts/make_notebook_assets.py                      # all seven, ~45 min on 2 busy CPU cores
    python scripts/make_notebook_assets.py --only gald ldga     # some of them
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time

import torch

from gald import train
from gald.config import TrainConfig
from gald.engine.checkpoint import load_checkpoint, save_checkpoint
from gald.evaluate import evaluate_checkpoint

log = logging.getLogger("gald.make_notebook_assets")

# Shared by every asset: the default recipe and data, a narrow network, 300 iterations.
COMMON = dict(
    widths=[8, 16, 32, 64], head_channels=32, aux_channels=32, iterations=300, batch_size=8, num_val=32,
    eval_interval=100, log_interval=10, checkpoint_interval=10**9, stage_classifiers=False, stage_iterations=0,
)
# name -> (what it is, config overrides)
ASSETS: dict[str, tuple[str, dict]] = {
    "fcn": ("FCN baseline (Fig. 8 b)", dict(block="none")),
    "ld": ("FCN + LD (Fig. 8 c)", dict(block="ld")),
    "ga": ("FCN + GA, pyramid pooling (Fig. 8 d)", dict(ga="psp", block="ga")),
    "gald": ("GALD, PSP + LD, with stage classifiers (Fig. 4, 5, 8 e)",
             dict(ga="psp", block="gald", stage_classifiers=True, stage_iterations=100)),
    "ldga": ("LDGA, LD then PSP (Fig. 4)", dict(ga="psp", block="ldga")),
    "stages": ("GALD, PSP + LD, 900 iterations, with stage classifiers (Fig. 4, 5, attribution)",
               dict(ga="psp", block="gald", iterations=900, eval_interval=300, stage_classifiers=True,
                    stage_iterations=150)),
}
# The schedule of a benchmarks/detection.py cell (Table 3 on the embedded benchmark), variant gald, on
# a narrower trunk (widths 8-16-32-64 instead of 16-32-64-96) so that the file stays near 3 MB.
DETECTOR = dict(
    arch="mask_rcnn_tiny_fpn_gald", context="gald", placement="c5", widths=[8, 16, 32, 64],
    num_train=400, num_val=100, image_size=[128, 256],
    batch_size=4, iterations=180, lr=0.02, lr_steps=[135, 165], warmup_iters=40, log_interval=30,
    checkpoint_interval=10_000, eval_batch_size=4, device="cpu",
)


def _command() -> str:
    """The command line, without the options that only choose where files go."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--out", "--work-dir"):
            skip = True
            continue
        if not a.startswith(("--out=", "--work-dir=")):
            args.append(a)
    return "python scripts/make_notebook_assets.py " + shlex.join(args)


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors to fp16 (halves the file; load_state_dict casts back to fp32).

    A tensor registered under two names (the detector's context block is both ``body.layer4.1``
    and ``context``) stays one shared tensor, so torch.save writes it once.
    """
    done: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride())
        if key not in done:
            done[key] = v.half()
        out[k] = done[key]
    return out


def for_inference(checkpoint: dict) -> dict:
    """A segmentation ``model.pt`` without its auxiliary head (a training-only loss), in fp16."""
    model_cfg = {**checkpoint["config"]["model"], "aux": False}
    weights = {k: v for k, v in checkpoint["model"].items() if not k.startswith("aux_head.")}
    return {**checkpoint, "model": to_half(weights), "config": {**checkpoint["config"], "model": model_cfg}}


def make_asset(name: str, *, out_dir: str, work_dir: str, seed: int, num_val: int, iterations: int | None = None) -> dict:
    what, overrides = ASSETS[name]
    extra = {} if iterations is None else {"iterations": iterations, "eval_interval": max(iterations // 3, 1)}
    cfg = TrainConfig(name=f"nb-{name}", output_dir=work_dir, seed=seed, **{**COMMON, **overrides, **extra})
    start = time.perf_counter()
    summary = train.main(cfg)
    wall = time.perf_counter() - start
    trained = load_checkpoint(os.path.join(cfg.run_dir, "model.pt"))
    history = load_checkpoint(os.path.join(cfg.run_dir, "last.pt"))["history"]
    state = for_inference(trained)
    path = os.path.join(out_dir, f"{name}.pt")
    save_checkpoint(state, path)
    # the numbers the notebooks print: the saved fp16 weights, one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = evaluate_checkpoint(path, num_val=num_val, batch_size=8)
    finally:
        torch.set_num_threads(threads)
    result.pop("checkpoint", None)
    card = {
        "name": name,
        "what": what,
        "command": _command(),
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "parameters": summary["parameters"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        "config": cfg.to_dict() | {"output_dir": "<work dir>"},
        "history": history,
        "eval": result,
        "environment": f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
                       f"{threads} training threads, 1 evaluation thread",
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(card, f, indent=1)
    log.info("%s: mIoU %.2f on %d val scenes (%d bytes) in %.0f s", name, result["out"]["mIoU"], num_val,
             card["bytes"], wall)
    return card


def make_detector(*, out_dir: str, work_dir: str, seed: int, num_val: int) -> dict:
    from gald.data.detection import DetectionTransform, SyntheticDetection
    from gald.predict_detection import load_detector
    from gald.train_detection import evaluate, load_detection_config
    from gald.train_detection import main as train_detection

    cfg = load_detection_config(name="nb-detector", output_dir=work_dir, seed=seed, **DETECTOR)
    start = time.perf_counter()
    summary = train_detection(cfg)
    wall = time.perf_counter() - start
    trained = load_checkpoint(os.path.join(cfg.run_dir, "model.pt"))
    path = os.path.join(out_dir, "detector.pt")
    save_checkpoint({**trained, "model": to_half(trained["model"])}, path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, classes = load_detector(path)
        val = SyntheticDetection(split="val", num_images=num_val, seed=cfg.data_seed, size=tuple(cfg.image_size),
                                 transform=DetectionTransform())
        with torch.no_grad():
            result = evaluate(model, val, classes, torch.device("cpu"), masks=True, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    card = {
        "name": "detector",
        "what": "Mask R-CNN + FPN, tiny ResNet (widths 8-16-32-64), GALD (CGNL + LD) at the end of stage 4 (Table 3, Fig. 6)",
        "command": _command(),
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "parameters": summary["parameters"],
        "classes": classes,
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        "config": cfg.to_dict() | {"output_dir": "<work dir>"},
        "final_fp32_100_val": {k: summary["final"][k] for k in ("voc07_mAP", "voc_area_mAP", "box", "mask")},
        "eval": result,
        "environment": f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
                       f"{threads} training threads, 1 evaluation thread",
    }
    with open(os.path.join(out_dir, "detector.json"), "w") as f:
        json.dump(card, f, indent=1)
    log.info("detector: box AP %.2f, mask AP %.2f on %d val scenes (%d bytes) in %.0f s", result["box"]["AP"],
             result["mask"]["AP"], num_val, card["bytes"], wall)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("notebooks", "assets"))
    parser.add_argument("--only", nargs="+", choices=[*ASSETS, "detector"],
                        default=[*ASSETS, "detector"])
    parser.add_argument("--work-dir", default=None, help="training runs go here (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-val", type=int, default=32, help="validation scenes of the recorded metrics")
    parser.add_argument("--iterations", type=int, default=None, help="override the segmentation schedule")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            if name in ASSETS:
                make = functools.partial(make_asset, name, iterations=args.iterations)
            else:
                make = make_detector
            make(out_dir=args.out, work_dir=args.work_dir or tmp, seed=args.seed, num_val=args.num_val)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s")
    main()
