"""Pictures: overlays of predictions and LD masks (this package's names, :mod:`gald.viz.overlays`),
the notebooks' figures (:mod:`gald.viz.figures`) and Grad-CAM per stage (:mod:`gald.viz.attribution`,
needs captum)."""

from .overlays import *  # noqa: F401,F403
from .overlays import __all__  # noqa: F401
