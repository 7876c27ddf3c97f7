"""Deprecated alias of :mod:`gald.deploy.nnpack`, kept for one minor release (removed in 0.3.0)."""

from gald.deploy.nnpack import *  # noqa: F401,F403
from gald.deploy.nnpack import __all__  # noqa: F401
