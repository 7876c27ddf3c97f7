"""Segmentation training and evaluation: the paper's recipe, on CPU or CUDA, 1 or N processes.

:func:`fit` trains a :class:`~gald.config.TrainConfig`, fine-tunes the stage classifiers on the
frozen model (Sec. 4.3.1), evaluates, and writes to ``runs/<name>/``: ``config.yaml``,
``train.log``, ``metrics.json``, ``curves.png``, ``last.pt`` (full training state, for
``--resume auto``) and ``model.pt`` (weights + config + metrics, what the other tools load).
``python -m gald.train`` parses the config and calls it. The pieces — :func:`train_step`,
:func:`evaluate`, :func:`finetune_stage_classifiers`, :func:`output_metrics` — are the same API
as :mod:`gald.engine.detection`'s, and are reused by :mod:`gald.engine.evaluation`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gald.config import TrainConfig, model_config
from gald.data.build import SegmentationData, build_segmentation_data
from gald.deploy.nnpack import convert_to_nnpack
from gald.engine import checkpoint as ckpt
from gald.engine import distributed as dist
from gald.engine.inference import TestProtocol, infer, training_protocol
from gald.engine.loop import (
    LossMeter,
    non_finite_stop,
    open_run,
    prepare_run,
    resume_run,
    save_run_state,
    training_state,
)
from gald.engine.memory import set_activation_checkpointing
from gald.engine.runtime import autocast
from gald.engine.tracking import RunTracker, save_curves
from gald.losses import build_criterion
from gald.metrics.ld_effect import format_ld_effect, has_ld, ld_effect, ld_effect_summary
from gald.metrics.segmentation import SegmentationMetrics, format_table
from gald.models import build_model, load_state_dict_checked
from gald.models.inspection import inspect, stage_classifiers

# the name of the command's log (``python -m gald.train``), kept when the loop moved here
log = logging.getLogger("gald.train")

__all__ = [
    "fit", "train_step", "evaluate", "finetune_stage_classifiers", "output_metrics", "make_metrics", "freeze_batchnorm",
    "unwrap", "save_curves",
]


def freeze_batchnorm(model: nn.Module) -> None:
    """Fix BatchNorm statistics and affine parameters (multi-stage training, appendix 6.1)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_metrics(data: SegmentationData) -> SegmentationMetrics:
    """An empty accumulator for ``data``'s classes, ignore index and size groups."""
    return SegmentationMetrics(
        data.num_classes,
        class_names=data.class_names,
        ignore_index=data.ignore_index,
        small_classes=data.small_classes,
        large_classes=data.large_classes,
    )


def output_metrics(model: nn.Module, data, *, stages: bool = True) -> dict[str, SegmentationMetrics]:
    """One accumulator for the final output and, with ``stages``, one per stage classifier the model has."""
    names = ["out", *(stage_classifiers(unwrap(model)) if stages else ())]
    return {name: make_metrics(data) for name in names}


_CURVE_KEYS = ("mIoU", "small_mIoU", "large_mIoU", "boundary_mIoU")


def _scalar_metrics(result: dict) -> dict[str, float]:
    """The summary numbers of a :class:`SegmentationMetrics` result (what logs and TensorBoard show)."""
    return {k: result[k] for k in ("mIoU", "pixel_acc", "small_mIoU", "large_mIoU", "boundary_mIoU") if k in result}


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """One optimiser step; returns the detached losses. Raises on a non-finite loss."""
    with autocast(cfg, device):
        outputs = model(images)
    losses = criterion({k: v.float() for k, v in outputs.items()}, targets)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(
            "non-finite loss: " + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.max_grad_norm:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return {k: v.item() for k, v in losses.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    metrics: dict[str, SegmentationMetrics],
    device: torch.device,
    cfg: TrainConfig,
    protocol: TestProtocol | None = None,
    sink: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, dict]:
    """Evaluate the final output and, if given, the stage classifiers under a test protocol.

    Args:
        metrics: output name (``out``, ``logits_fcn``, ``logits_ga``) → its accumulator.
        protocol: whole image / sliding windows, scales, flip (default: whole image, one scale).
        sink: called with each batch's final predictions (N, H, W), in loader order (e.g. to
            write test-server files).
    """
    net = unwrap(model)
    was_training = net.training
    net.eval()
    for m in metrics.values():
        m.reset()
    for batch in loader:
        images, targets = batch[0].to(device), batch[1]
        instances = batch[2] if len(batch) > 2 else None
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(cfg, device):
            scores = infer(net, images, protocol, keys=tuple(metrics))
        for name, m in metrics.items():
            pred = scores[name].argmax(1).cpu()
            m.update(pred, targets, instances)
            if name == "out" and sink is not None:
                sink(pred)
    results = {}
    for name, m in metrics.items():
        m.all_reduce()
        results[name] = m.compute()
    net.train(was_training)
    return results


def finetune_stage_classifiers(
    model: nn.Module, loader_iter, cfg: TrainConfig, device: torch.device, *, to_device
) -> list[float]:
    """Sec. 4.3.1: freeze the trained model, train only the 1×1 classifiers on ``F`` and ``F_GA``.

    ``to_device(images, targets, device)`` finishes each batch of ``loader_iter`` on the device
    (:meth:`gald.data.build.SegmentationData.to_device`).
    """
    net = unwrap(model)
    classifiers = stage_classifiers(net)
    heads = list(classifiers.values())
    if not heads:
        return []
    for p in net.parameters():
        p.requires_grad_(False)
    params = [p for h in heads for p in h.parameters()]
    for p in params:
        p.requires_grad_(True)
    net.eval()  # BatchNorm statistics stay those of the trained model
    optimizer = torch.optim.SGD(params, lr=cfg.stage_lr, momentum=0.9, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.stage_iterations, power=0.9)
    ce = nn.CrossEntropyLoss(ignore_index=cfg.ignore_index)
    losses = []
    for _ in tqdm(range(cfg.stage_iterations), desc="stage classifiers", disable=not dist.is_main(), leave=False):
        images, targets = to_device(*next(loader_iter)[:2], device)
        with torch.no_grad(), autocast(cfg, device):
            t = inspect(net, images)
        loss = 0.0
        for name in ("logits_fcn", "logits_ga"):
            if t[name] is None:
                continue
            head = classifiers[name]
            feature = t["F"] if name == "logits_fcn" else t["F_GA"]
            logits = head(feature.float().detach())
            logits = nn.functional.interpolate(
                logits, size=targets.shape[-2:], mode="bilinear", align_corners=getattr(net, "align_corners", False)
            )
            loss = loss + ce(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if dist.world_size() > 1:
            for p in params:
                dist.all_reduce_sum(p.grad)
                p.grad /= dist.world_size()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    for p in net.parameters():
        p.requires_grad_(True)
    if cfg.freeze_bn:
        freeze_batchnorm(net)
    return losses


def fit(cfg: TrainConfig) -> dict:
    """Train, evaluate and save; returns the final metrics dict (also written to metrics.json)."""
    # before any process joins the group or writes; the class count does not change what is checked
    cfg = prepare_run(cfg, build=lambda: build_model({**model_config(cfg, 2), "pretrained_backbone": None}))
    with contextlib.ExitStack() as cleanup:
        return _fit(cfg, cleanup)


def _fit(cfg: TrainConfig, cleanup: contextlib.ExitStack) -> dict:
    device, distributed, world, guard = open_run(cfg, cleanup)
    run_dir = cfg.run_dir

    data = build_segmentation_data(cfg, rank=dist.rank(), world_size=world)
    data.pin_memory = device.type == "cuda"  # page-locked batches: the copies below overlap compute
    model = build_model(model_config(cfg, data.num_classes))
    if cfg.activation_checkpointing:
        set_activation_checkpointing(model.backbone, True, policy=cfg.checkpoint_policy)
    if cfg.init_from:
        state = ckpt.load_checkpoint(cfg.init_from)
        load_state_dict_checked(model, state.get("model", state), what=cfg.init_from)
        log.info("initialised weights from %s (fresh optimiser and schedule)", cfg.init_from)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.nnpack and device.type == "cpu":
        convert_to_nnpack(model)  # parameters shared: the state dict and checkpoints are unchanged
    elif cfg.nnpack:
        log.warning("--nnpack applies to CPU training only; %s runs the ordinary convolutions", device)
    model = dist.maybe_sync_batchnorm(model, device, cfg.sync_bn)
    if cfg.freeze_bn:
        freeze_batchnorm(model)
    for stage in stage_classifiers(model).values():  # trained after the main run, on the frozen model (Sec. 4.3.1)
        stage.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    where = ""
    if "after" in model.config:  # a host network (gald.models.hosts)
        where = (" (torchvision's, nothing plugged)" if cfg.block == "none"
                 else f" (torchvision's, GALD plugged after {model.config['after']})")
    log.info(
        "model %s%s ga=%s block=%s ld=%s d=%d mode=%s: %.3f M parameters; data %s: %d train / %d val images",
        cfg.arch, where, cfg.ga, cfg.block, cfg.ld_downsample, cfg.d, cfg.mode, n_params / 1e6, cfg.dataset,
        len(data.train_set), len(data.val_set),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.iterations, power=cfg.poly_power)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    criterion = build_criterion(
        ohem=cfg.ohem, thresh=cfg.ohem_thresh, min_kept=cfg.ohem_min_kept, aux_weight=cfg.aux_weight,
        ignore_index=cfg.ignore_index,
    )
    last_path = os.path.join(run_dir, "last.pt")
    start, history = resume_run(cfg, last_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                distributed=distributed, world=world, log=log)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    metrics = output_metrics(model, data, stages=False)
    # stage classifiers are only scored when they were trained (Sec. 4.3.1: fine-tuned at the end)
    evaluate_stages = output_metrics(model, data, stages=cfg.stage_iterations > 0)
    net = unwrap(model)
    guard.disarm()  # the data, the model and the resume state are ready: from here on train.log stays
    tracker = cleanup.enter_context(RunTracker(run_dir, total=cfg.iterations, start=start, images_per_step=cfg.batch_size,
                                               log=log)) if dist.is_main() else None

    end = min(cfg.iterations, cfg.stop_at) if cfg.stop_at else cfg.iterations
    batches = data.train_batches(start_step=start)
    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm(net)
    t0 = time.perf_counter()
    meter = LossMeter()
    # log lines go through tqdm.write while a bar is drawn: the bar stays on its own line
    cleanup.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger("gald")]))
    # a redirected log gets an update every 30 s instead of ten a second
    bar = tqdm(range(start, end), desc="train", disable=not dist.is_main(), initial=start, total=cfg.iterations,
               mininterval=0.1 if sys.stderr.isatty() else 30)
    for step in bar:
        images, targets = data.to_device(*next(batches), device)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        try:
            losses = train_step(model, criterion, images, targets, optimizer, scaler, cfg, device)
        except FloatingPointError as err:
            raise non_finite_stop(err, step + 1, scheduler.get_last_lr()[0], last_path) from None
        scheduler.step()
        meter.update(losses)
        done = step + 1
        if done % cfg.log_interval == 0 or done == end:
            avg, lr = meter.pop(), scheduler.get_last_lr()[0]
            history["train"].append({"step": done, "lr": lr, **avg})
            bar.set_postfix(loss=f"{avg['loss']:.3f}", lr=f"{lr:.2e}")
            if tracker is not None:
                tracker.train(done, avg, lr)
        if cfg.eval_interval and done % cfg.eval_interval == 0 and done < cfg.iterations:
            res = evaluate(model, data.val_loader, metrics, device, cfg)["out"]
            history["val"].append({"step": done, **{k: res.get(k) for k in _CURVE_KEYS}})
            if tracker is not None:
                tracker.validation(done, _scalar_metrics(res))
        if done % cfg.checkpoint_interval == 0 or done == end:
            save_run_state(net, optimizer, scheduler, scaler, done, cfg, history, last_path, distributed=distributed)
    bar.close()
    if data.skipped:
        log.warning("skipped %d corrupt training images (named in the warnings above)", data.skipped)
    train_seconds = time.perf_counter() - t0
    if end < cfg.iterations:
        log.info("stopped at step %d of %d (stop_at); resume with --resume auto", end, cfg.iterations)
        model = net  # drop the DDP wrapper: cleanup collects it before the group goes (an abort at exit was seen)
        dist.cleanup()
        return {"stopped_at": end}

    stage_losses = finetune_stage_classifiers(model, data.train_batches(start_step=cfg.iterations), cfg, device,
                                              to_device=data.to_device)
    results = evaluate(model, data.val_loader, evaluate_stages, device, cfg)
    final = results["out"]
    history["val"].append({"step": cfg.iterations, **{k: final.get(k) for k in _CURVE_KEYS}})
    summary = {
        "name": cfg.name,
        "iterations": cfg.iterations,
        "train_seconds": round(train_seconds, 1),
        "parameters": n_params,
        "final": final,
        "stages": {name: results[name] for name in results if name != "out"},
        "stage_finetune_loss": stage_losses[-1] if stage_losses else None,
        "skipped_images": data.skipped,
        "history": history,
        "device": str(device),
        "world_size": world,
        "torch": torch.__version__,
    }
    if dist.is_main():
        tracker.validation(cfg.iterations, _scalar_metrics(final))
        log.info("\n%s", format_table(final, title=f"{cfg.name}: validation ({len(data.val_set)} images)"))
        for name, res in summary["stages"].items():
            tracker.validation(cfg.iterations, _scalar_metrics(res), prefix=f"stage/{name.removeprefix('logits_')}")
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
        save_curves(history, os.path.join(run_dir, "curves.png"))
        ckpt.save_checkpoint(training_state(net, optimizer, scheduler, scaler, cfg.iterations, cfg, history), last_path)
        model_state = {
            "model": unwrap(model).state_dict(),  # parameters stay fp32 under autocast
            "config": {"train": cfg.to_dict(), "model": unwrap(model).config},
            "classes": data.class_names,
            "palette": data.palette,
            "metrics": {k: final[k] for k in ("mIoU", "pixel_acc", "boundary_mIoU") if k in final},
            # what predict and the app run by default (gald.engine.inference.checkpoint_protocol)
            "test_protocol": dataclasses.asdict(training_protocol(cfg.dataset, cfg.crop_size)),
            "format_version": 1,
        }
        ckpt.save_checkpoint(model_state, os.path.join(run_dir, "model.pt"))
        effect = _measure_ld_effect(net, data, cfg, device, world)
        if effect is not None:  # kept in metrics.json and model.pt for model cards and the app
            summary["ld_effect"] = effect
            model_state["ld_effect"] = ld_effect_summary(effect)
            with open(os.path.join(run_dir, "metrics.json"), "w") as f:
                json.dump(summary, f, indent=2)
            ckpt.save_checkpoint(model_state, os.path.join(run_dir, "model.pt"))
        log.info("wrote %s (model.pt, last.pt, metrics.json, metrics.csv, curves.png, TensorBoard events) in %.1f s of "
                 "training", run_dir, train_seconds)
    model = net  # drop the DDP wrapper: cleanup collects it before the group goes
    dist.cleanup()
    return summary


def _measure_ld_effect(net: nn.Module, data, cfg: TrainConfig, device: torch.device, world: int) -> dict | None:
    """The causal LD metric of a finished run (:mod:`gald.metrics.ld_effect`), after model.pt is safe on disk.

    Skipped for models without LD, with ``ld_effect: false``, and under DDP (each rank holds a
    shard of the validation set; ``gald.evaluate --ld-effect`` measures it afterwards). A failure
    is logged, never fatal: the trained model is already saved.
    """
    if not (cfg.ld_effect and has_ld(net)):
        return None
    if world > 1:
        log.info("LD effect not measured under DDP; run python -m gald.evaluate --checkpoint model.pt --ld-effect")
        return None
    try:
        effect = ld_effect(net, data.val_loader, class_names=data.class_names, small_classes=data.small_classes,
                           large_classes=data.large_classes, ignore_index=data.ignore_index, device=device)
    except (RuntimeError, ValueError) as err:
        log.warning("LD effect not measured: %s", err)
        return None
    log.info("%s", format_ld_effect(ld_effect_summary(effect)))
    return effect
