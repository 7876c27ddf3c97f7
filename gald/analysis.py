"""Deprecated alias of :mod:`gald.experiments.analysis`, kept for one minor release (removed in 0.3.0)."""

from gald.experiments.analysis import *  # noqa: F401,F403
from gald.experiments.analysis import __all__  # noqa: F401
