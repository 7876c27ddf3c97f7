"""Segmentation metrics: confusion-matrix mIoU, and the splits the paper's argument is about.

Beyond the standard per-class IoU, mIoU and pixel accuracy, :class:`SegmentationMetrics` reports

* mIoU over **small-pattern** and over **large-pattern** classes (caller-defined class groups);
* **boundary mIoU**: the same confusion matrix restricted to a band of ``boundary_width`` pixels
  around label edges (where global aggregation oversmooths, Section 1);
* **per-instance recall by size**: for each ground-truth instance, the fraction of its pixels
  predicted as its class, averaged per instance-area bin (needs instance maps).

Everything accumulates in tensors that :meth:`SegmentationMetrics.all_reduce` sums over processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.nn import functional as F

__all__ = [
    "SegmentationMetrics",
    "confusion_matrix",
    "iou_from_confusion",
    "missed_predictions",
    "boundary_band",
    "format_table",
    "format_class_row",
]


def _valid_target(target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    valid = target != ignore_index
    t = target[valid]
    if t.numel() and (t.max() >= num_classes or t.min() < 0):
        bad = sorted(set(t[(t >= num_classes) | (t < 0)].unique().tolist()))
        raise ValueError(f"target holds values {bad} outside 0..{num_classes - 1} (and not ignore {ignore_index})")
    return valid


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(K, K) int64 counts, rows = ground truth, columns = prediction; ignored pixels skipped.

    A prediction outside ``0 … K-1`` (e.g. a void id in an external result) has no column: it is
    left out here and counted by :func:`missed_predictions`, a false negative of the true class.
    """
    valid = _valid_target(target, num_classes, ignore_index)
    valid &= (pred >= 0) & (pred < num_classes)
    t, p = target[valid].long(), pred[valid].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def missed_predictions(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(K,) int64: per true class, the labelled pixels whose prediction is no class (outside
    ``0 … K-1``). They are false negatives of the true class and false positives of none, as
    cityscapesscripts counts a void prediction."""
    valid = _valid_target(target, num_classes, ignore_index) & ((pred < 0) | (pred >= num_classes))
    return torch.bincount(target[valid].long(), minlength=num_classes)


def iou_from_confusion(cm: torch.Tensor, missed: torch.Tensor | None = None) -> torch.Tensor:
    """Per-class IoU; NaN for classes absent from both ground truth and prediction. ``missed``
    (:func:`missed_predictions`) adds false negatives outside the matrix.

    Shape:
        (..., K, K) -> (..., K): a batch of confusion matrices gives a batch of IoUs
    """
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    union = cm.sum(-2) + cm.sum(-1) - tp
    if missed is not None:
        union = union + missed.double()
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))


def boundary_band(target: torch.Tensor, width: int, ignore_index: int = 255) -> torch.Tensor:
    """Pixels within ``width`` of a label edge (an edge: a 4-neighbour with another valid label).

    Shape:
        (N, H, W) -> (N, H, W) bool
    """
    t = target.long()
    valid = t != ignore_index
    edge = torch.zeros_like(valid)
    dh = (t[:, 1:] != t[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    dw = (t[:, :, 1:] != t[:, :, :-1]) & valid[:, :, 1:] & valid[:, :, :-1]
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    edge[:, :, 1:] |= dw
    edge[:, :, :-1] |= dw
    if width > 1:
        k = 2 * (width - 1) + 1
        edge = F.max_pool2d(edge[:, None].float(), k, stride=1, padding=k // 2)[:, 0] > 0
    return edge & valid


class SegmentationMetrics:
    """Accumulates predictions and reports mIoU, pixel accuracy, size and boundary splits.

    Args:
        num_classes: number of classes.
        class_names: names for the table (default ``class_i``).
        ignore_index: label value left out everywhere.
        small_classes: train ids of small-pattern classes (poles, signs, ...).
        large_classes: train ids of large-pattern classes (road, sky, ...).
        boundary_width: half-width in pixels of the band around label edges.
        size_bins: instance-area bin edges in pixels; ``(64, 256)`` gives ``<64``, ``64-256``, ``>=256``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        small_classes: Sequence[int] = (),
        large_classes: Sequence[int] = (),
        boundary_width: int = 3,
        size_bins: Sequence[int] = (64, 256),
    ) -> None:
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.ignore_index = ignore_index
        self.small_classes = list(small_classes)
        self.large_classes = list(large_classes)
        self.boundary_width = boundary_width
        self.size_bins = list(size_bins)
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self.cm = torch.zeros(k, k, dtype=torch.int64)
        self.cm_boundary = torch.zeros(k, k, dtype=torch.int64)
        self.missed = torch.zeros(k, dtype=torch.int64)  # labelled pixels predicted as no class
        self.missed_boundary = torch.zeros(k, dtype=torch.int64)
        nbins = len(self.size_bins) + 1
        self.inst_recall_sum = torch.zeros(nbins, dtype=torch.float64)
        self.inst_count = torch.zeros(nbins, dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, instances: torch.Tensor | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` (N, H, W) class ids; ``instances`` (N, H, W), 0 = none."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        pred, target = pred.cpu(), target.cpu()
        self.cm += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.missed += missed_predictions(pred, target, self.num_classes, self.ignore_index)
        band = boundary_band(target, self.boundary_width, self.ignore_index)
        self.cm_boundary += confusion_matrix(
            pred[band], target[band], self.num_classes, self.ignore_index
        )
        self.missed_boundary += missed_predictions(pred[band], target[band], self.num_classes, self.ignore_index)
        if instances is not None:
            self._update_instances(pred, target, instances.cpu())

    def _update_instances(self, pred: torch.Tensor, target: torch.Tensor, instances: torch.Tensor) -> None:
        for n in range(instances.shape[0]):
            ids = instances[n].flatten().long()
            on = ids > 0
            if not on.any():
                continue
            ids, correct = ids[on], (pred[n].flatten()[on] == target[n].flatten()[on]).double()
            uniq, inv = ids.unique(return_inverse=True)
            area = torch.bincount(inv, minlength=len(uniq)).double()
            hits = torch.bincount(inv, weights=correct, minlength=len(uniq))
            bins = torch.bucketize(area, torch.tensor(self.size_bins, dtype=torch.float64), right=True)
            self.inst_recall_sum += torch.bincount(bins, weights=hits / area, minlength=len(self.size_bins) + 1)
            self.inst_count += torch.bincount(bins, minlength=len(self.size_bins) + 1).double()

    def all_reduce(self) -> None:
        """Sum the accumulators over processes (no-op in one process)."""
        if not dist.is_initialized():
            return
        for name in ("cm", "cm_boundary", "missed", "missed_boundary", "inst_recall_sum", "inst_count"):
            dist.all_reduce(getattr(self, name), op=dist.ReduceOp.SUM)

    def _bin_names(self) -> list[str]:
        edges = self.size_bins
        names = [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
        return names

    def compute(self) -> dict:
        """Return a JSON-ready dict; IoUs in percent, NaN classes left out of means."""
        iou = iou_from_confusion(self.cm, self.missed)
        biou = iou_from_confusion(self.cm_boundary, self.missed_boundary)

        def mean(values: torch.Tensor, idx: Sequence[int] | None = None) -> float:
            v = values if idx is None else values[list(idx)]
            v = v[~torch.isnan(v)]
            return float(v.mean() * 100) if v.numel() else math.nan

        total = self.cm.sum() + self.missed.sum()
        result = {
            "mIoU": mean(iou),
            "pixel_acc": float(self.cm.diag().sum() / total * 100) if total else math.nan,
            "per_class_iou": {n: (None if math.isnan(v) else float(v * 100)) for n, v in zip(self.class_names, iou)},
            "boundary_mIoU": mean(biou),
            "boundary_width": self.boundary_width,
        }
        if self.small_classes:
            result["small_mIoU"] = mean(iou, self.small_classes)
        if self.large_classes:
            result["large_mIoU"] = mean(iou, self.large_classes)
        if self.inst_count.sum() > 0:
            recall = torch.where(
                self.inst_count > 0, self.inst_recall_sum / self.inst_count.clamp(min=1), torch.nan
            )
            result["instance_recall_by_area"] = {
                name: {"recall": None if math.isnan(r) else float(r * 100), "instances": int(c)}
                for name, r, c in zip(self._bin_names(), recall.tolist(), self.inst_count.tolist())
            }
        return result


def format_table(result: dict, title: str = "") -> str:
    """A plain-text per-class IoU table with the summary metrics underneath, in aligned columns."""

    def number(v: float | None) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    rows = [(name, number(v), "") for name, v in result["per_class_iou"].items()]
    rows += [(key, number(result[key]), "") for key in ("mIoU", "pixel_acc", "small_mIoU", "large_mIoU", "boundary_mIoU")
             if key in result]
    rows += [(f"recall {name} px", number(r["recall"]), f"({r['instances']} instances)")
             for name, r in result.get("instance_recall_by_area", {}).items()]
    width = max(len("class"), *(len(label) for label, _, _ in rows))
    lines = [title] if title else []
    lines.append(f"{'class':<{width}}  {'%':>7}")
    lines += [f"{label:<{width}}  {value:>7}  {note}".rstrip() for label, value, note in rows]
    return "\n".join(lines)


#: The column names of the paper's Tables 4 and 5 for the Cityscapes classes (train-id order).
_PAPER_SHORT_NAMES = {
    "sidewalk": "swalk", "building": "build", "traffic light": "tlight", "traffic sign": "sign",
    "vegetation": "veg.", "motorcycle": "mbike", "bicycle": "bike",
}  # fmt: skip


def format_class_row(result: dict, method: str = "gald") -> str:
    """A markdown table in the layout of the paper's Table 4: one column per class, then mIoU.

    Classes come in the result's order (train-id order, which for Cityscapes is Table 4's order);
    Cityscapes names are shortened as in the paper (``swalk``, ``tlight``, ``veg.``, ``mbike``, …).
    """
    names = [_PAPER_SHORT_NAMES.get(n, n) for n in result["per_class_iou"]]
    values = ["n/a" if v is None else f"{v:.1f}" for v in result["per_class_iou"].values()]
    header = "| Method | " + " | ".join(names) + " | mIoU |"
    rule = "|" + "---|" * (len(names) + 2)
    row = f"| {method} | " + " | ".join(values) + f" | {result['mIoU']:.1f} |"
    return "\n".join([header, rule, row])
