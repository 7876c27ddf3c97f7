"""Deprecated alias of :mod:`gald.experiments.analysis`, kept for one minor release (removed in 0.3.0)."""

from gald.experiments.analysis import (  # noqa: F401
    cue_twins,
    effective_receptive_field,
    erf_sky_share,
)

__all__ = [
    "effective_receptive_field",
    "erf_sky_share",
    "cue_twins",
]
