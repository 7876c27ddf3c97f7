"""Deprecated alias of :mod:`gald.metrics.detection`, kept for one minor release (removed in 0.3.0)."""

from gald.metrics.detection import *  # noqa: F401,F403
from gald.metrics.detection import __all__  # noqa: F401
