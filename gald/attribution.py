"""Deprecated alias of :mod:`gald.viz.attribution`, kept for one minor release (removed in 0.3.0)."""

from gald.viz.attribution import (  # noqa: F401
    ClassScore,
    grad_cam,
    REGIONS,
    stage_layer,
    STAGES,
)

__all__ = [
    "STAGES",
    "ClassScore",
    "grad_cam",
    "stage_layer",
]
