"""Deprecated alias of :mod:`gald.metrics.ld_effect`, kept for one minor release (removed in 0.3.0)."""

from gald.metrics.ld_effect import *  # noqa: F401,F403
from gald.metrics.ld_effect import __all__  # noqa: F401
