"""Deprecated alias of :mod:`gald.metrics.detection`, kept for one minor release (removed in 0.3.0)."""

from gald.metrics.detection import (  # noqa: F401
    coco_evaluate,
    coco_from_targets,
    coco_results,
    COCO_STATS,
    format_table3,
    format_table6,
    voc_ap,
    voc_evaluate,
)

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
