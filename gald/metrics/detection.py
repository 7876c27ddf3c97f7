"""Detection metrics: Pascal VOC AP (11-point and area), COCO box / mask AP through pycocotools,
and tables in the layout of the paper's Table 3 and Table 6 (Section 4.4, appendix 6.2).

VOC AP follows the official devkit (``VOCevaldet`` / py-faster-rcnn's ``voc_eval.py``): detections
of a class are sorted by score over the whole test set; a detection matching (IoU > 0.5) a not yet
matched ground truth is a true positive, a second match or no match a false positive; matching a
*difficult* ground truth counts as neither, and difficult boxes are not in the positives. The
devkit's inclusive pixel boxes (``width = xmax - xmin + 1``) are continuous boxes here
(``x0 = xmin - 1``, ``x1 = xmax``, see :mod:`gald.data.voc`), so the plain IoU is the devkit's IoU.

Every AP is returned in percent.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = [
    "voc_ap",
    "voc_evaluate",
    "coco_from_targets",
    "coco_results",
    "coco_evaluate",
    "COCO_STATS",
    "format_table3",
    "format_table6",
]

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool = False) -> float:
    """AP from a precision/recall curve, as the VOC devkit computes it (a fraction, not percent).

    Args:
        recall: cumulative recall per detection, in score order.
        precision: cumulative precision per detection.
        use_07_metric: the VOC2007 11-point interpolated AP; otherwise the area under the
            monotone precision envelope (VOC2010+).
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t].max() if np.any(recall >= t) else 0.0
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(boxes[:, 0], box[0])
    iy0 = np.maximum(boxes[:, 1], box[1])
    ix1 = np.minimum(boxes[:, 2], box[2])
    iy1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def voc_evaluate(
    detections: Sequence[dict[str, Any]],
    ground_truths: Sequence[dict[str, Any]],
    num_classes: int,
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """Per-class VOC AP and mAP over a test set.

    Args:
        detections: per image ``{"boxes" (n, 4) xyxy, "scores" (n,), "labels" (n,)}``.
        ground_truths: per image ``{"boxes" (m, 4), "labels" (m,), "difficult" (m,) optional}``.
        num_classes: foreground classes; labels run 1..num_classes (0 is the background).
        iou_threshold: a match needs IoU strictly above it (0.5, the devkit's ``ovmax > 0.5``).
        use_07_metric: 11-point AP (VOC2007 test, what Table 3 reports) or the area metric.

    Returns:
        ``{"mAP": %, "ap": [% per class], "num_gts": [non-difficult ground truths per class]}``;
        a class without ground truth has AP NaN and is left out of the mean.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truths)} images")
    aps, num_gts = [], []
    gts = []
    for g in ground_truths:
        labels = _np(g["labels"]).astype(np.int64)
        difficult = _np(g.get("difficult", np.zeros(len(labels), bool))).astype(bool)
        gts.append((_np(g["boxes"]).astype(np.float64).reshape(-1, 4), labels, difficult))
    for c in range(1, num_classes + 1):
        per_image = {}
        npos = 0
        for i, (boxes, labels, difficult) in enumerate(gts):
            sel = labels == c
            per_image[i] = (boxes[sel], difficult[sel], np.zeros(int(sel.sum()), bool))
            npos += int((~difficult[sel]).sum())
        img_ids, scores, dets = [], [], []
        for i, d in enumerate(detections):
            labels = _np(d["labels"]).astype(np.int64)
            sel = labels == c
            if sel.any():
                img_ids.append(np.full(int(sel.sum()), i))
                scores.append(_np(d["scores"]).astype(np.float64)[sel])
                dets.append(_np(d["boxes"]).astype(np.float64).reshape(-1, 4)[sel])
        num_gts.append(npos)
        if npos == 0:
            aps.append(math.nan)
            continue
        if not scores:
            aps.append(0.0)
            continue
        img_ids, scores, dets = np.concatenate(img_ids), np.concatenate(scores), np.concatenate(dets)
        order = np.argsort(-scores, kind="stable")
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for k, j in enumerate(order):
            boxes, difficult, matched = per_image[img_ids[j]]
            if len(boxes) == 0:
                fp[k] = 1
                continue
            overlaps = _iou(dets[j], boxes)
            best = int(overlaps.argmax())
            if overlaps[best] > iou_threshold:
                if difficult[best]:
                    continue  # neither a true nor a false positive
                if not matched[best]:
                    tp[k], matched[best] = 1, True
                else:
                    fp[k] = 1
            else:
                fp[k] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / npos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(100.0 * voc_ap(recall, precision, use_07_metric=use_07_metric))
    valid = [a for a in aps if not math.isnan(a)]
    return {"mAP": float(np.mean(valid)) if valid else math.nan, "ap": aps, "num_gts": num_gts}


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_from_targets(
    targets: Sequence[dict[str, Any]], classes: Sequence[str], image_sizes: Sequence[tuple[int, int]]
):
    """An in-memory ``pycocotools.coco.COCO`` ground truth from torchvision-style targets.

    Category ids are the labels 1..K; image ids are the targets' ``image_id`` (else the index).
    Masks, where the targets have them, become RLE segmentations; ``iscrowd`` is kept.

    Args:
        targets: per image ``{"boxes", "labels", "masks" optional, "iscrowd" optional, "image_id" optional}``.
        classes: foreground class names (label ``k`` is ``classes[k - 1]``).
        image_sizes: ``(height, width)`` per image.
    """
    from pycocotools.coco import COCO

    images, annotations = [], []
    for i, (t, (h, w)) in enumerate(zip(targets, image_sizes)):
        image_id = int(t["image_id"]) if "image_id" in t else i
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        boxes = _np(t["boxes"]).reshape(-1, 4).tolist()
        labels = _np(t["labels"]).tolist()
        crowd = _np(t["iscrowd"]).tolist() if "iscrowd" in t else [0] * len(labels)
        masks = _np(t["masks"]) if "masks" in t else None
        for k, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, labels)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(crowd[k])}
            if masks is not None:
                ann["segmentation"] = _rle(masks[k])
                ann["area"] = float(masks[k].sum())
            else:
                ann["area"] = float((x1 - x0) * (y1 - y0))
            annotations.append(ann)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def coco_results(
    predictions: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    *,
    label_to_category: dict[int, int] | None = None,
    masks: bool = False,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """COCO result entries (``bbox`` xywh, ``score``, ``category_id``, ``segmentation`` RLE) of
    torchvision predictions; Mask R-CNN's soft masks ``(n, 1, H, W)`` are thresholded at ``mask_threshold``."""
    results = []
    for pred, image_id in zip(predictions, image_ids):
        boxes = _np(pred["boxes"]).reshape(-1, 4).tolist()
        scores, labels = _np(pred["scores"]).tolist(), _np(pred["labels"]).tolist()
        soft = _np(pred["masks"]) if masks else None
        for k, ((x0, y0, x1, y1), s, label) in enumerate(zip(boxes, scores, labels)):
            cat = label_to_category[label] if label_to_category else int(label)
            r = {"image_id": int(image_id), "category_id": cat, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
            if soft is not None:
                r["segmentation"] = _rle(soft[k].reshape(soft.shape[-2:]) > mask_threshold)
            results.append(r)
    return results


def coco_evaluate(coco_gt, results: list[dict[str, Any]], *, iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP / AR (``COCOeval.summarize``'s 12 numbers, in percent) of ``results`` against ``coco_gt``.

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` ground truth.
        results: entries as :func:`coco_results` makes them.
        iou_type: ``"bbox"`` or ``"segm"``.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if not results:  # pycocotools cannot load an empty result list; nothing detected scores 0
        return {k: 0.0 for k in COCO_STATS}
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("COCOeval %s:\n%s", iou_type, buffer.getvalue())
    # -1 marks "no ground truth in this area range"; report it as NaN
    return {k: (100.0 * float(v) if v >= 0 else math.nan) for k, v in zip(COCO_STATS, ev.stats)}


def _cell(value, base=None, *, delta: bool) -> str:
    if value is None:
        return ""
    mean, std = value if isinstance(value, (tuple, list)) else (value, None)
    text = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
    if delta and base is not None:
        b = base[0] if isinstance(base, (tuple, list)) else base
        d = mean - b
        text += f" ({abs(d):.1f} {'↑' if d >= 0 else '↓'})"
    return text


def format_table3(rows: Sequence[dict[str, Any]], *, metrics: Sequence[str] = ("mAP",),
                  headers: Sequence[str] | None = None) -> str:
    """A Markdown table in the layout of Table 3: ``Backbone | Detector | metrics…``, each row's
    change against the first row of its backbone (the baseline) in brackets.

    Args:
        rows: ``{"backbone", "detector", <metric>: value or (mean, std)}`` in display order.
        metrics: the keys to show (``("mAP",)`` for Table 3(a), ``("AP-box", "AP-mask")`` for 3(b)).
        headers: column titles for the metrics (default: the keys).
    """
    headers = list(headers or metrics)
    lines = ["| Backbone | Detector | " + " | ".join(headers) + " |", "|---|---|" + "---|" * len(headers)]
    baselines: dict[str, dict] = {}
    for r in rows:
        base = baselines.setdefault(r["backbone"], r)
        cells = [_cell(r.get(m), base.get(m), delta=r is not base) for m in metrics]
        lines.append(f"| {r['backbone']} | {r['detector']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table6(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """A Markdown table in the layout of Table 6: ``Method | AP per class… | mAP(%)``.

    Args:
        rows: ``{"method", "ap": [per class], "mAP"}``; an AP may be ``(mean, std)``.
        classes: class names, the column order of ``ap``.
    """
    lines = ["| Method | " + " | ".join(classes) + " | mAP(%) |", "|---|" + "---|" * (len(classes) + 1)]
    for r in rows:
        cells = [_cell(a, delta=False) if not (isinstance(a, float) and math.isnan(a)) else "–" for a in r["ap"]]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {_cell(r['mAP'], delta=False)} |")
    return "\n".join(lines)
