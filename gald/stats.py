"""Deprecated alias of :mod:`gald.experiments.stats`, kept for one minor release (removed in 0.3.0)."""

from gald.experiments.stats import *  # noqa: F401,F403
from gald.experiments.stats import __all__  # noqa: F401
