"""Deprecated alias of :mod:`gald.metrics.ld_effect`, kept for one minor release (removed in 0.3.0)."""

from gald.metrics.ld_effect import (  # noqa: F401
    format_ld_effect,
    has_ld,
    LD_INTERVENTIONS,
    ld_effect,
    ld_effect_summary,
    ld_intervention,
    ld_verdict,
    LD_VERDICTS,
    mask_contrast,
    per_image_confusions,
    summary_from_confusions,
)

__all__ = [
    "LD_INTERVENTIONS",
    "has_ld",
    "ld_intervention",
    "per_image_confusions",
    "summary_from_confusions",
    "ld_effect",
    "ld_effect_summary",
    "format_ld_effect",
    "ld_verdict",
    "LD_VERDICTS",
    "mask_contrast",
]
