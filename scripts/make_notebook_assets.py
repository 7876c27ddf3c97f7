"""Make the small checkpoints the notebooks read, each with a JSON card.

Writes ``notebooks/assets/<name>.pt`` (fp16 weights, a normal ``gald`` checkpoint that
``gald.models.load_model`` reads) and ``notebooks/assets/<name>.json`` (the command, the training
config, the loss / validation history, the metrics of the *saved* fp16 weights on the first
``--num-val`` validation scenes evaluated with one thread — the numbers the notebooks print — and,
for models with LD, their LD effect on the same scenes).

Five models are the columns of the paper's Fig. 8 (FCN, +LD, +GA, +GALD) plus LDGA for Fig. 4,
trained with the schedule of the pre-registered v2 grid (benchmark v2, LD at d = 2, 600 iterations
of batch 8; ``benchmarks/PREREGISTRATION_v2.md``) on a narrow variant of the default tiny network
(widths 8-16-32-64, head 32 channels) so that all of them fit in a few MB; GA is pyramid pooling
(see ``ASSETS``). ``stages`` is only a card: it describes the shipped default model
(``gald/assets/``, the ``model.pt`` of ``python -m gald.train`` with the stage classifiers of
Fig. 5), which the notebooks read from there rather than from a second copy. ``detector`` is Mask R-CNN + FPN on the tiny ResNet with GALD at
the end of stage 4, trained with the schedule of one ``benchmarks/detection.py`` cell (variant
``gald``, seed 0, benchmark v1) on a narrower trunk; its card records COCO / VOC metrics of the
saved weights on the first ``--num-val`` validation scenes.

The files hold what inference needs: fp16 weights and no auxiliary head (it only adds a training
loss), so that all of them stay under 8 MB.

Usage::

    python scripts/make_notebook_assets.py --only fcn ld ga gald ldga
    python -m gald.train && python scripts/make_app_checkpoint.py   # the shipped model, for `stages`
    python scripts/make_notebook_assets.py --only stages
    python scripts/make_notebook_assets.py --only detector
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
from gald.engine.evaluation import evaluate_checkpoint
from gald.metrics.ld_effect import ld_effect_summary
from gald.models import LD_ARRANGEMENTS, read_checkpoint

log = logging.getLogger("gald.make_notebook_assets")

# Shared by every asset: the v2 grid's schedule and data (the default config's), a narrow network.
COMMON = dict(
    widths=[8, 16, 32, 64], head_channels=32, aux_channels=32, iterations=600, batch_size=8, num_val=32,
    eval_interval=200, log_interval=10, checkpoint_interval=10**9, stage_classifiers=False, stage_iterations=0,
    ld_effect=False,  # measured below on the saved fp16 weights, on the scenes the notebooks use
)
# name -> (what it is, config overrides). GA is pyramid pooling: with CGNL (the grid's GA) none of
# these narrow seed-0 models learned the sky cue (context IoU 30-33; their cards are kept in
# benchmarks/results/notebook_assets_cgnl/), and a figure of GA's effect needs a GA that uses it.
ASSETS: dict[str, tuple[str, dict]] = {
    "fcn": ("FCN baseline (Fig. 8 b)", dict(block="none")),
    "ld": ("FCN + LD (Fig. 8 c)", dict(block="ld")),
    "ga": ("FCN + GA, pyramid pooling (Fig. 8 d)", dict(ga="psp", block="ga")),
    "gald": ("GALD, PSP + LD, with stage classifiers (Fig. 4, 5, 8 e)",
             dict(ga="psp", block="gald", stage_classifiers=True, stage_iterations=100)),
    "ldga": ("LDGA, LD then PSP (Fig. 4)", dict(ga="psp", block="ldga")),
}
STAGES = "stages"
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


def _evaluate(path: str, num_val: int) -> tuple[dict, dict | None]:
    """The saved weights' metrics on the first ``num_val`` validation scenes (one thread), and for a
    model with LD its LD effect there (``gald.metrics.ld_effect``: card form, with the mask contrast),
    from one evaluation."""
    ckpt = read_checkpoint(path)
    with_ld = ckpt["config"]["model"].get("block", "gald") in LD_ARRANGEMENTS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = evaluate_checkpoint(path, num_val=num_val, batch_size=8, ckpt=ckpt, ld_effect=with_ld)
    finally:
        torch.set_num_threads(threads)
    result.pop("checkpoint", None)
    measured, contrast = result.pop("ld_effect", None), result.pop("mask_contrast", None)
    if measured is None:
        return result, None
    effect = ld_effect_summary(measured)
    effect["command"] = (f"python -m gald.evaluate --checkpoint {os.path.relpath(path)} "
                         f"--num-val {num_val} --ld-effect --no-stages")
    if contrast is not None:
        effect["mask_contrast"] = contrast
    return result, effect


def make_stages(checkpoint: str, *, out_dir: str, num_val: int) -> dict:
    """``stages``: a card for the shipped default model (``python -m gald.train``'s ``model.pt``,
    stage classifiers included, as ``scripts/make_app_checkpoint.py`` copied it into
    ``gald/assets/``), which notebooks 3-5 read from there rather than from a second copy."""
    trained = load_checkpoint(checkpoint)
    result, effect = _evaluate(checkpoint, num_val)
    card = {
        "name": STAGES,
        "what": "the default model of python -m gald.train (CGNL + LD at d = 2, benchmark v2, 600 iterations, "
                "widths 16-32-64-96), with its stage classifiers (Fig. 4, 5, attribution)",
        "command": _command(),
        "trained_by": "python -m gald.train (every setting at its default), shipped by scripts/make_app_checkpoint.py",
        "file": os.path.relpath(checkpoint, out_dir),
        "parameters": sum(v.numel() for k, v in trained["model"].items() if not k.startswith("aux_head.")),
        "config": trained["config"]["train"] | {"output_dir": "<work dir>"},
        "eval": result,
        "environment": f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, 1 evaluation thread",
        **({"ld_effect": effect} if effect else {}),
    }
    with open(os.path.join(out_dir, f"{STAGES}.json"), "w") as f:
        json.dump(card, f, indent=1)
    log.info("%s: mIoU %.2f on %d val scenes", STAGES, result["out"]["mIoU"], num_val)
    return card


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
    result, effect = _evaluate(path, num_val)
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
        **({"ld_effect": effect} if effect else {}),
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(card, f, indent=1)
    log.info("%s: mIoU %.2f on %d val scenes (%d bytes) in %.0f s", name, result["out"]["mIoU"], num_val,
             card["bytes"], wall)
    return card


def make_detector(*, out_dir: str, work_dir: str, seed: int, num_val: int) -> dict:
    from gald.config import load_detection_config
    from gald.data.detection import DetectionTransform, SyntheticDetection
    from gald.engine.detection import evaluate
    from gald.engine.detection import fit as train_detection
    from gald.engine.predictor import load_detector

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
    parser.add_argument("--only", nargs="+", choices=[*ASSETS, STAGES, "detector"],
                        default=[*ASSETS, STAGES, "detector"])
    parser.add_argument("--default-model", default=os.path.join("gald", "assets", TrainConfig().name + ".pt"),
                        help="the shipped default model, described by the stages card")
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
            if name == STAGES:
                make_stages(args.default_model, out_dir=args.out, num_val=args.num_val)
                continue
            if name in ASSETS:
                make = functools.partial(make_asset, name, iterations=args.iterations)
            else:
                make = make_detector
            make(out_dir=args.out, work_dir=args.work_dir or tmp, seed=args.seed, num_val=args.num_val)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s")
    main()
