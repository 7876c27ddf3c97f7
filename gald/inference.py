"""Deprecated alias of :mod:`gald.engine.inference`, kept for one minor release (removed in 0.3.0)."""

from gald.engine.inference import *  # noqa: F401,F403
from gald.engine.inference import __all__  # noqa: F401
