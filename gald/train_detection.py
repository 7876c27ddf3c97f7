"""Deprecated alias of :mod:`gald.engine.detection` and :class:`gald.config.DetectionConfig`, kept for one minor release (removed in 0.3.0).

``python -m gald.train_detection`` still runs ``python -m gald.train --task detection``.
"""

from __future__ import annotations

from gald.config import DetectionConfig, detector_config, load_detection_config
from gald.data.build import build_detection_data
from gald.engine.detection import _schedule, evaluate, predict, train_step
from gald.engine.detection import fit as main

__all__ = [
    "DetectionConfig",
    "load_detection_config",
    "build_detection_data",
    "detector_config",
    "train_step",
    "predict",
    "evaluate",
    "main",
]

if __name__ == "__main__":
    import logging
    import sys

    from gald.train import detection_cli

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    detection_cli()
