"""Deprecated alias of :mod:`gald.deploy.submission`, kept for one minor release (removed in 0.3.0)."""

from gald.deploy.submission import *  # noqa: F401,F403
from gald.deploy.submission import __all__  # noqa: F401
