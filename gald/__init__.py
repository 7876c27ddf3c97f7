"""gald — Global Aggregation then Local Distribution (BMVC 2019) for segmentation and detection."""

import logging

from .models import GA_MODULES, GALDNet, build_model, gald_resnet50, gald_resnet101, gald_tiny, plug

__version__ = "0.2.5"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["GA_MODULES", "GALDNet", "__version__", "build_model", "gald_resnet50", "gald_resnet101", "gald_tiny", "plug"]
