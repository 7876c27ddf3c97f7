"""Evaluate a segmentation checkpoint under the paper's test protocol (``python -m gald.evaluate``).

:func:`evaluate_checkpoint` rebuilds the model a checkpoint records, builds the validation split of
the data it was trained on (or any other), and runs :func:`gald.engine.segmentation.evaluate` under a
:class:`~gald.engine.inference.TestProtocol`: per-class IoU, mIoU, pixel accuracy, small- vs
large-pattern mIoU, boundary mIoU and per-instance recall by area, for the final output and the
stage classifiers; optionally the causal LD effect (:mod:`gald.metrics.ld_effect`) and prediction
PNGs in the test server's format (:mod:`gald.deploy.submission`).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from gald.config import TrainConfig, recorded_train_config
from gald.data.build import build_segmentation_data
from gald.deploy.nnpack import convert_to_nnpack
from gald.deploy.submission import submission_path, train_ids_to_label_ids, write_label_png
from gald.engine.inference import TestProtocol, checkpoint_normalization
from gald.engine.segmentation import evaluate, output_metrics
from gald.models import model_from_checkpoint, num_classes, read_checkpoint

# the name of the command's log (``python -m gald.evaluate``), kept when this moved here
log = logging.getLogger("gald.evaluate")

__all__ = ["evaluate_checkpoint"]


def _eval_config(ckpt: dict, path: str, **overrides) -> TrainConfig:
    train_cfg = dict(ckpt.get("config", {}).get("train", {}))
    if not train_cfg and overrides.get("dataset") is None:
        raise ValueError(
            f"{path} records no training config (e.g. converted from the authors' weights): pass --dataset "
            "(e.g. cityscapes) and --data-root"
        )
    return recorded_train_config(train_cfg, **overrides)


def _train_to_label(dataset) -> list[int] | None:
    """Train id → dataset label id (the first labelId mapped to it), or ``None`` for datasets without ids."""
    label_map = getattr(dataset, "label_map", None)
    if not label_map:
        return None
    inverse: dict[int, int] = {}
    for label_id, train_id in sorted(label_map.items()):
        inverse.setdefault(train_id, label_id)
    return [inverse.get(t, 0) for t in range(dataset.num_classes)]


def evaluate_checkpoint(
    checkpoint: str,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    split: str | None = None,
    num_val: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    stages: bool = True,
    protocol: TestProtocol | None = None,
    normalization: str | None = None,
    export_dir: str | None = None,
    ckpt: dict | None = None,
    nnpack: bool = False,
    ld_effect: bool = False,
    sesoi: float = 1.0,
) -> dict:
    """Evaluate ``checkpoint`` on the validation split of its training data (or the one given).

    With a protocol other than whole-image single-scale, only the final output is evaluated.
    ``export_dir`` receives one PNG per image (labelIds for Cityscapes, train ids otherwise);
    ``ckpt`` is the checkpoint's content when the caller has already read it; ``nnpack`` computes the
    wide 3×3 convolutions with NNPACK on CPU (:func:`gald.deploy.nnpack.convert_to_nnpack`); ``ld_effect``
    adds ``"ld_effect"`` (and ``"mask_contrast"`` where the data has size groups), measured with the
    whole-image protocol, ``sesoi`` points being the smallest effect of interest.
    """
    ckpt = read_checkpoint(checkpoint) if ckpt is None else ckpt
    norm = checkpoint_normalization(ckpt, normalization)
    cfg = _eval_config(
        ckpt, checkpoint, dataset=dataset, data_root=data_root, num_val=num_val, val_split=split,
        eval_batch_size=batch_size, workers=0, normalization=norm,
    )  # fmt: skip
    data = build_segmentation_data(cfg)
    model = model_from_checkpoint(ckpt, what=checkpoint, task="segmentation").to(device).eval()
    if nnpack:
        convert_to_nnpack(model)
    classes = num_classes(model)
    if classes != data.num_classes:
        raise ValueError(
            f"{checkpoint} predicts {classes} classes but dataset {cfg.dataset!r} has {data.num_classes}"
        )
    protocol = protocol or TestProtocol()
    whole = protocol.mode == "whole" and protocol.scales == (1.0,) and not protocol.flip
    metrics = output_metrics(model, data, stages=stages and whole)

    sink = None
    if export_dir is not None:
        files = [image for image, _ in getattr(data.val_set, "files", [])]
        if len(files) != len(data.val_set):
            raise ValueError(f"--export-dir needs an on-disk dataset with file names; {cfg.dataset!r} has none")
        train_to_label = _train_to_label(data.val_set)
        written: list[str] = []

        def sink(pred: torch.Tensor) -> None:
            for p in pred:
                label = p.numpy().astype(np.uint8) if train_to_label is None else train_ids_to_label_ids(p, train_to_label)
                written.append(str(write_label_png(label, submission_path(files[len(written)], export_dir))))

    results = evaluate(model, data.val_loader, metrics, torch.device(device), cfg, protocol, sink)
    out = {
        "checkpoint": checkpoint, "dataset": cfg.dataset, "split": getattr(cfg, "val_split", "val"),
        "images": len(data.val_set), "normalization": norm, "protocol": dataclasses.asdict(protocol), **results,
    }  # fmt: skip
    if ld_effect:
        out.update(_ld_effect(model, data, device, sesoi))
    if export_dir is not None:
        out["exported"] = len(written)
        log.info("wrote %d prediction PNGs to %s", len(written), export_dir)
    return out


def _ld_effect(model, data, device: str, sesoi: float) -> dict:
    from gald.metrics.ld_effect import ld_effect, mask_contrast  # evaluate_checkpoint's flag has the name

    batches = data.val_loader  # iterated once per pass: the validation set is never held in memory
    kwargs = dict(small_classes=data.small_classes, large_classes=data.large_classes, device=device)
    out = {"ld_effect": ld_effect(model, batches, class_names=data.class_names, sesoi=sesoi,
                                  ignore_index=data.ignore_index, **kwargs)}
    if data.small_classes and data.large_classes:
        out["mask_contrast"] = mask_contrast(model, batches, **kwargs)
    return out
