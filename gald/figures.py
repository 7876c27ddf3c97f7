"""Deprecated alias of :mod:`gald.viz.figures`, kept for one minor release (removed in 0.3.0)."""

from gald.viz.figures import *  # noqa: F401,F403
from gald.viz.figures import __all__  # noqa: F401
