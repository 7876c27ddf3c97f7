"""One way to look inside any GALD model: :class:`~gald.models.GALDNet` or a network plugged with :func:`gald.plug`.

The paper's figures read four tensors (Sec. 3.2, Fig. 4–5): ``F`` (the feature GALD starts from),
``F_GA`` (after Global Aggregation), ``M`` (LD's masks, Eq. 1) and ``F_GALD`` (Eq. 2). GALDNet
exposes them through :meth:`~gald.models.GALDNet.inspect`; a plugged model exposes them through
the hook that runs its block. The functions here serve both, so the mask views, the LD effect,
Grad-CAM and the stage classifiers take either kind of model.

Example::

    >>> model = gald.plug(fcn_resnet50(weights=None, weights_backbone=None), after="backbone.layer4")
    >>> t = inspect(model, torch.rand(1, 3, 97, 97))
    >>> t["M"].shape            # one mask per channel of F_GA, at layer4's resolution
    torch.Size([1, 2048, 13, 13])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from gald.config import check_choice

from .heads import GALDBlock
from .plug import GALDInsert, inserts
from .segmentor import GALDNet

__all__ = ["STAGES", "inspect", "stage_classifiers", "num_classes", "gald_block", "stage_layer", "the_insert",
           "is_gald_model"]

#: The feature stages of Fig. 5 / Grad-CAM: ``fcn`` (``F``), ``ga`` (``F_GA``), ``gald`` (``F_GALD``).
STAGES = ("fcn", "ga", "gald")


def the_insert(model: nn.Module) -> GALDInsert:
    """The one GALD block plugged into ``model``.

    Raises:
        ValueError: the model is not plugged, or holds several blocks (inspect those one by one).
    """
    found = inserts(model)
    if len(found) != 1:
        what = "no GALD block" if not found else f"{len(found)} GALD blocks ({sorted(found)})"
        raise ValueError(f"the model ({type(model).__name__}) has {what}: inspection needs a GALDNet or a model "
                         "with one block from gald.plug")
    return next(iter(found.values()))


def is_gald_model(model: nn.Module) -> bool:
    """Whether the functions here can read ``model``: a GALDNet, or a model with one plugged block."""
    return isinstance(model, GALDNet) or len(inserts(model)) == 1


def inspect(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Run the model and return its named intermediate tensors (for figures, the app, captum).

    Keys, ``None`` where the model lacks the stage: ``F``, ``F_GA``, ``M``, ``F_GALD``,
    ``logits_fcn`` / ``logits_ga`` (stage classifiers, at the feature resolution), ``logits`` (the
    classifier's output: GALDNet's before upsampling, a plugged host's as it returns it) and ``out``
    (the model's prediction). Gradients are kept; wrap in ``torch.no_grad()`` if not needed.

    Shape:
        (N, 3, H, W) -> feature-resolution tensors (N, ·, h, w) and ``out`` (N, K, H, W)
    """
    if isinstance(model, GALDNet):
        return model.inspect(x)
    insert = the_insert(model)
    insert._record = {}
    try:
        y = model(x)
        record = insert._record
    finally:
        insert._record = None
    if not record:
        raise ValueError(f"the plugged module {insert.after!r} did not run in the model's forward pass")
    out = y["out"] if isinstance(y, Mapping) else y
    return {**record, "logits": out, "out": out}


def stage_classifiers(model: nn.Module) -> dict[str, nn.Module]:
    """The 1×1 stage classifiers of Fig. 5 by their :func:`inspect` key (``logits_fcn`` on ``F``,
    ``logits_ga`` on ``F_GA``); empty for models without them (or without GALD)."""
    if isinstance(model, GALDNet):
        return model.stage_classifiers
    found = inserts(model)
    if len(found) != 1:
        return {}
    insert = next(iter(found.values()))
    stages = {"logits_fcn": insert.stage_fcn, "logits_ga": insert.stage_ga}
    return {k: v for k, v in stages.items() if v is not None}


def num_classes(model: nn.Module) -> int:
    """Classes the model predicts (channels of ``out``).

    Raises:
        ValueError: a plugged model whose classes were not read when it was plugged.
    """
    if isinstance(model, GALDNet):
        return model.num_classes
    k = the_insert(model).num_classes
    if k is None:
        raise ValueError("the plugged model's class count is unknown: plug it with num_classes=K")
    return k


def gald_block(model: nn.Module) -> GALDBlock:
    """The :class:`~gald.models.GALDBlock` of a GALDNet's head or of a plugged model."""
    return model.head.block if isinstance(model, GALDNet) else the_insert(model).block


def stage_layer(model: nn.Module, stage: str) -> tuple[nn.Module, bool]:
    """The module whose output (``False``) or input (``True``) is the feature of ``stage`` (:data:`STAGES`).

    Raises:
        ValueError: for an unknown stage, or ``"ga"`` on a model without Global Aggregation.
    """
    check_choice("stage", stage, STAGES)
    block = gald_block(model)
    if stage == "ga":
        if block.ga is None:
            raise ValueError(f"this model ({block.arrangement!r} block) has no GA stage; use 'fcn' or 'gald'")
        return block.ga, False
    if isinstance(model, GALDNet):
        if stage == "fcn":
            return model.backbone.layer4, False
        # the head calls the block's forward_intermediates, not the block, so a hook on the block
        # would never fire; F_GALD is exactly convb's input.
        return model.head.convb, True
    insert = the_insert(model)
    return (insert.feature if stage == "fcn" else insert.output), False
