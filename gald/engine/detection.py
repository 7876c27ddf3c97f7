"""Detection training and evaluation: Faster / Mask R-CNN + FPN with GALD (Sections 3.3, 4.2, 4.4).

The same API as :mod:`gald.engine.segmentation`: :func:`train_step`, :func:`evaluate`, :func:`fit`.
``python -m gald.train --task detection`` parses a :class:`~gald.config.DetectionConfig` and calls
:func:`fit`. With the config's defaults it trains ``mask_rcnn-gald_tiny-fpn_synthetic``: Mask R-CNN
on the tiny CPU ResNet + FPN with GALD at the end of stage 4, on the scene benchmark's four thing
classes (pole, traffic sign, person, car), then evaluates VOC mAP@0.5 and COCO box / mask AP on the
validation scenes. The paper's recipes are in ``configs/faster_rcnn-*`` (VOC 07+12, 14 epochs) and
``configs/mask_rcnn-*`` (COCO 1×: 90k iterations of batch 16, lr 0.02, steps at 60k / 80k).

Output in ``runs/<name>/`` as segmentation training writes it: ``config.yaml``, ``train.log``,
``metrics.json``, ``last.pt`` (full state, ``--resume auto``) and ``model.pt`` (weights, config,
class names, metrics — what :func:`gald.engine.predictor.load_detector` loads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from gald.config import DetectionConfig, detector_config
from gald.data.build import build_detection_data, detection_batches
from gald.data.detection import collate
from gald.engine import checkpoint as ckpt
from gald.engine import distributed as dist
from gald.engine.loop import LossMeter, non_finite_stop, open_run, prepare_run, resume_run, save_run_state
from gald.engine.runtime import autocast
from gald.engine.tracking import RunTracker, save_curves
from gald.errors import ConfigError
from gald.metrics.detection import coco_evaluate, coco_from_targets, coco_results, voc_evaluate
from gald.models.detector import build_detector, sampling_seeds
from gald.models.state_dict import load_state_dict_checked

# the name of the command's log (``python -m gald.train --task detection``), kept when the loop moved here
log = logging.getLogger("gald.train_detection")

__all__ = ["train_step", "predict", "evaluate", "fit"]


def _schedule(cfg: DetectionConfig, per_epoch: int):
    """``(total iterations, lr factor per iteration)``: linear warm-up, then ×gamma at each step."""
    total = cfg.epochs * per_epoch if cfg.epochs else cfg.iterations
    steps = [s * per_epoch for s in cfg.lr_steps] if cfg.epochs else list(cfg.lr_steps)

    def factor(it: int) -> float:
        f = cfg.gamma ** sum(it >= s for s in steps)
        if it < cfg.warmup_iters:
            f *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
        return f

    return total, factor


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def train_step(model, images, targets, optimizer, cfg: DetectionConfig, *, scaler: torch.amp.GradScaler | None = None,
               device: torch.device | None = None) -> dict[str, float]:
    """One optimiser step on a list batch; returns the detached losses. Raises on a non-finite loss.

    ``model`` may be wrapped in DDP. Targets that carry ``"sample_seed"`` (the training stream's)
    make the RPN / RoI sampling of each image a function of its own seed
    (:func:`gald.models.detector.sampling_seeds`). Under ``cfg.amp`` the forward runs in autocast;
    ``scaler`` (a GradScaler, enabled for fp16) scales the loss.
    """
    device = device or images[0].device
    seeds = [int(t["sample_seed"]) for t in targets] if all("sample_seed" in t for t in targets) else None
    with autocast(cfg, device), sampling_seeds(_unwrap(model), seeds):
        losses = model(images, targets)
    losses = {k: v.float() for k, v in losses.items()}
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss: " + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()))
    optimizer.zero_grad(set_to_none=True)
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    scaler.scale(loss).backward()
    if cfg.max_grad_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}


@torch.no_grad()
def predict(model, dataset, device: torch.device, batch_size: int = 4) -> tuple[list[dict], list[dict], list]:
    """Run the model over ``dataset``: ``(predictions, targets, image sizes)`` on the CPU."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    preds, targets, sizes = [], [], []
    for images, tgts in loader:
        out = model([im.to(device) for im in images])
        preds += [{k: v.cpu() for k, v in o.items()} for o in out]
        targets += list(tgts)
        sizes += [tuple(im.shape[-2:]) for im in images]
    model.train(was_training)
    return preds, targets, sizes


def evaluate(model, dataset, classes: list[str], device: torch.device, *, masks: bool,
             batch_size: int = 4, mask_threshold: float = 0.5) -> dict[str, Any]:
    """VOC mAP@0.5 (11-point and area, per class) and COCO box (and mask) AP of ``model`` on ``dataset``."""
    preds, targets, sizes = predict(model, dataset, device, batch_size)
    voc07 = voc_evaluate(preds, targets, len(classes), use_07_metric=True)
    voc_area = voc_evaluate(preds, targets, len(classes), use_07_metric=False)
    if hasattr(dataset, "coco_gt"):
        coco_gt, label_to_cat = dataset.coco_gt()
    else:
        coco_gt, label_to_cat = coco_from_targets(targets, classes, sizes), None
    image_ids = [int(t["image_id"]) for t in targets]
    results = {
        "voc07_mAP": voc07["mAP"], "voc_area_mAP": voc_area["mAP"],
        "voc07_ap": dict(zip(classes, voc07["ap"])), "voc_area_ap": dict(zip(classes, voc_area["ap"])),
        "box": coco_evaluate(coco_gt, coco_results(preds, image_ids, label_to_category=label_to_cat), iou_type="bbox"),
        "images": len(dataset),
    }
    if masks:
        segm = coco_results(preds, image_ids, label_to_category=label_to_cat, masks=True, mask_threshold=mask_threshold)
        results["mask"] = coco_evaluate(coco_gt, segm, iou_type="segm")
    return results


def _scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The summary numbers of :func:`evaluate` (what logs, TensorBoard and the curves show)."""
    out = {"voc07_mAP": result["voc07_mAP"], "voc_area_mAP": result["voc_area_mAP"], "box_AP": result["box"]["AP"]}
    if "mask" in result:
        out["mask_AP"] = result["mask"]["AP"]
    return out


def fit(cfg: DetectionConfig) -> dict:
    """Train, evaluate and save; returns the summary (also written to ``metrics.json``).

    One process, or DDP under ``torchrun`` (NCCL on CUDA, gloo on CPU; SyncBatchNorm on CUDA with
    more than one process): ``cfg.batch_size`` is the global batch, split evenly over the processes.
    Rank 0 writes every file and evaluates.
    """
    # before any process joins the group or writes; the class count does not change what is checked
    cfg = prepare_run(cfg, build=lambda: build_detector({**detector_config(cfg, 2), "weights_backbone": None}))
    with contextlib.ExitStack() as cleanup:
        return _fit(cfg, cleanup)


def _fit(cfg: DetectionConfig, cleanup: contextlib.ExitStack) -> dict:
    device, distributed, world, guard = open_run(cfg, cleanup)
    run_dir = cfg.run_dir
    train_set, val_set, classes = build_detection_data(cfg)
    model = build_detector(detector_config(cfg, len(classes) + 1))
    if cfg.init_from:
        state = ckpt.load_checkpoint(cfg.init_from)
        load_state_dict_checked(model, state.get("model", state), what=cfg.init_from)
        log.info("initialised weights from %s (fresh optimiser and schedule)", cfg.init_from)
    model.to(device)
    model = dist.maybe_sync_batchnorm(model, device, cfg.sync_bn)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("detector %s context=%s placement=%s: %.3f M parameters; data %s: %d train / %d val images, %d classes; "
             "global batch %d = %d process(es) × %d", cfg.arch, cfg.context, cfg.placement, n_params / 1e6, cfg.dataset,
             len(train_set), len(val_set), len(classes), cfg.batch_size, world, cfg.batch_size // world)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    per_epoch = len(train_set) // cfg.batch_size
    if per_epoch == 0:
        raise ConfigError(f"{len(train_set)} training images are fewer than one batch of {cfg.batch_size}")
    total, factor = _schedule(cfg, per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    last_path = os.path.join(run_dir, "last.pt")
    start, history = resume_run(cfg, last_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                distributed=distributed, world=world, log=log)
    net = model
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    end = min(total, cfg.stop_at) if cfg.stop_at else total
    batches = detection_batches(train_set, cfg.batch_size, rank=dist.rank(), world_size=world, seed=cfg.seed,
                                start_step=start, workers=cfg.workers)
    model.train()
    guard.disarm()  # the data, the model and the resume state are ready: from here on train.log stays
    tracker = cleanup.enter_context(RunTracker(run_dir, total=total, start=start, images_per_step=cfg.batch_size,
                                               log=log)) if dist.is_main() else None
    t0, cpu0 = time.perf_counter(), time.process_time()
    meter = LossMeter()
    for step in range(start, end):
        images, targets = next(batches)
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        try:
            losses = train_step(model, images, targets, optimizer, cfg, scaler=scaler, device=device)
        except FloatingPointError as err:
            raise non_finite_stop(err, step + 1, scheduler.get_last_lr()[0], last_path) from None
        scheduler.step()
        meter.update(losses)
        done = step + 1
        if done % cfg.log_interval == 0 or done == end:
            avg, lr = meter.pop(), scheduler.get_last_lr()[0]
            history["train"].append({"step": done, "lr": lr, **avg})
            if tracker is not None:
                tracker.train(done, avg, lr)
        if cfg.eval_interval and done % cfg.eval_interval == 0 and done < total and dist.is_main():
            # rank 0 evaluates; the others wait in the next step's gradient all-reduce
            res = evaluate(net, val_set, classes, device, masks=cfg.masks, batch_size=cfg.eval_batch_size,
                           mask_threshold=cfg.mask_threshold)
            history["val"].append({"step": done, **_scalar_metrics(res)})
            tracker.validation(done, _scalar_metrics(res))
        if done % cfg.checkpoint_interval == 0 or done == end:
            save_run_state(net, optimizer, scheduler, scaler, done, cfg, history, last_path, distributed=distributed)
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rank = dist.rank()  # read before the group is gone (then every process would say rank 0)
    model = net  # drop the DDP wrapper: cleanup collects it before the group goes (an abort at exit was seen)
    dist.cleanup()  # the processes are done with each other; rank 0 evaluates and writes alone
    if end < total:
        log.info("stopped at step %d of %d (stop_at); resume with --resume auto", end, total)
        return {"stopped_at": end, "history": history}
    if rank != 0:
        return {"rank": rank, "history": history}

    e0 = time.perf_counter()
    final = evaluate(net, val_set, classes, device, masks=cfg.masks, batch_size=cfg.eval_batch_size,
                     mask_threshold=cfg.mask_threshold)
    summary = {
        "name": cfg.name, "iterations": total, "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1), "eval_seconds": round(time.perf_counter() - e0, 1),
        "parameters": n_params, "classes": classes, "final": final,
        "final_train_loss": history["train"][-1]["loss"] if history["train"] else None,
        "device": str(device), "world_size": world, "amp": cfg.amp, "torch": torch.__version__,
    }
    log.info("%s: VOC07 mAP@0.5 %.2f (area %.2f), COCO box AP %.2f%s on %d images", cfg.name, final["voc07_mAP"],
             final["voc_area_mAP"], final["box"]["AP"],
             f", mask AP {final['mask']['AP']:.2f}" if "mask" in final else "", len(val_set))
    history["val"].append({"step": total, **_scalar_metrics(final)})
    tracker.validation(total, _scalar_metrics(final))
    summary["history"] = history
    save_curves(history, os.path.join(run_dir, "curves.png"))
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, allow_nan=True)
    ckpt.save_checkpoint(
        {"model": net.state_dict(), "config": {"train": cfg.to_dict(), "model": net.config}, "classes": classes,
         "metrics": {"voc07_mAP": final["voc07_mAP"], "box_AP": final["box"]["AP"],
                     **({"mask_AP": final["mask"]["AP"]} if "mask" in final else {})},
         "format_version": 1},
        os.path.join(run_dir, "model.pt"),
    )
    log.info("wrote %s (model.pt, last.pt, metrics.json, metrics.csv, curves.png, TensorBoard events) in %.1f s of "
             "training", run_dir, train_seconds)
    return summary
