"""Deprecated alias of :mod:`gald.data.images`, kept for one minor release (removed in 0.3.0)."""

from gald.data.images import *  # noqa: F401,F403
from gald.data.images import __all__  # noqa: F401
