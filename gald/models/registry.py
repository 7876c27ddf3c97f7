"""Models by name, as torchvision's ``list_models`` / ``get_model``: every segmentation builder of
:data:`gald.models.MODELS`, every host network of :data:`gald.models.HOSTS` (torchvision's model
with a GALD block plugged in) and every detector of :data:`gald.models.detector.DETECTORS`.

Example::

    >>> from gald.models import get_model, list_models
    >>> list_models(task="segmentation")[:4]
    ['deeplabv3_mobilenet_v3_large', 'deeplabv3_resnet101', 'deeplabv3_resnet50', 'fcn_resnet101']
    >>> model = get_model("gald_resnet50", num_classes=19)   # random weights; pretrained_backbone=None
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gald.config import HOST_ARCHS, check_choice, lookup

from .segmentor import MODELS, build_model
from .weights import TASKS

__all__ = ["list_models", "get_model"]


def _detectors() -> dict[str, Any]:
    from .detector import DETECTORS  # torchvision's detection models load only when asked for

    return DETECTORS


def list_models(task: str | None = None) -> list[str]:
    """Sorted names :func:`get_model` builds; ``task``: ``"segmentation"``, ``"detection"`` or all."""
    if task is not None:
        check_choice("task", task, TASKS)
    names = [] if task == "detection" else [*MODELS, *HOST_ARCHS]
    names += [] if task == "segmentation" else list(_detectors())
    return sorted(names)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model ``name`` with the builder's keyword arguments (random weights unless asked).

    The result's ``config`` is ``{"arch": name, **kwargs}``: what checkpoints and
    :func:`gald.hub.save_pretrained` record to build it again.

    Raises:
        UnknownChoiceError: ``name`` is not in :func:`list_models`, listing the valid names.
        TypeError: an option the builder does not take, listing the valid ones.
    """
    lookup("model", name, dict.fromkeys(list_models()))
    if name in MODELS or name in HOST_ARCHS:
        return build_model({"arch": name, **kwargs})
    from .detector import build_detector

    return build_detector({"arch": name, **kwargs})
