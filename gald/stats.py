"""Deprecated alias of :mod:`gald.experiments.stats`, kept for one minor release (removed in 0.3.0)."""

from gald.experiments.stats import (  # noqa: F401
    holm,
    paired,
    PairedResult,
    seeds_for_half_width,
    verdict,
    VERDICTS,
)

__all__ = [
    "PairedResult",
    "paired",
    "holm",
    "verdict",
    "seeds_for_half_width",
    "VERDICTS",
]
