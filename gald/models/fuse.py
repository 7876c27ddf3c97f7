"""Deprecated alias of :mod:`gald.deploy.fuse`, kept for one minor release (removed in 0.3.0)."""

from gald.deploy.fuse import *  # noqa: F401,F403
from gald.deploy.fuse import __all__  # noqa: F401
