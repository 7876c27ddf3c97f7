"""What a prediction is worth: segmentation metrics (this package's names), detection metrics
(:mod:`gald.metrics.detection`) and the causal LD metric (:mod:`gald.metrics.ld_effect`)."""

from .segmentation import (
    SegmentationMetrics,
    boundary_band,
    confusion_matrix,
    format_class_row,
    format_table,
    iou_from_confusion,
    missed_predictions,
)

__all__ = [
    "SegmentationMetrics",
    "boundary_band",
    "confusion_matrix",
    "format_class_row",
    "format_table",
    "iou_from_confusion",
    "missed_predictions",
]
