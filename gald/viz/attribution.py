"""Grad-CAM attributions of a GALD segmentation at the FCN, GA and GALD feature stages (captum).

Which pixels of the features drive the network's decision for one class, seen at three taps of
the head (Fig. 2, Sections 3.2–3.3):

========  ===================================  ==========================  =================================
stage     feature                              GALDNet's captum layer      plugged model's (``gald.plug``)
========  ===================================  ==========================  =================================
``fcn``   ``F``, the backbone output (Eq. 3)   ``backbone.layer4`` (out)   ``gald.feature`` (out)
``ga``    ``F_GA``, after Global Aggregation   ``head.block.ga`` (out)     ``gald.block.ga`` (out)
``gald``  ``F_GALD``, after Local Distribution ``head.convb`` (in), Eq. 2  ``gald.output`` (out)
========  ===================================  ==========================  =================================

(:func:`gald.models.inspection.stage_layer` picks them.)

The scalar attributed is captum's segmentation recipe (``tutorials/Segmentation_Interpret``):
the sum of the class's logit over the pixels the model predicts as that class, so a class is
explained where it is actually predicted rather than everywhere. ``region="all"`` sums over every
pixel instead (for a class the model predicts nowhere).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from gald.config import check_choice
from gald.models.inspection import STAGES, stage_layer

__all__ = ["STAGES", "ClassScore", "grad_cam", "stage_layer"]

REGIONS = ("predicted", "all")


class ClassScore(nn.Module):
    """Wrap a segmentor so each class becomes one scalar per image, the form captum attributes.

    Args:
        model: a module returning ``{"out": (N, K, H, W)}`` logits or the logits themselves.
        region: ``"predicted"`` — sum each class's logit over the pixels whose arg-max is that class
            (the selection is a constant: no gradient flows through the arg-max); ``"all"`` — over
            every pixel.

    Shape:
        (N, 3, H, W) -> (N, K)
    """

    def __init__(self, model: nn.Module, *, region: str = "predicted") -> None:
        super().__init__()
        check_choice("region", region, REGIONS)
        self.model = model
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        out = out["out"] if isinstance(out, Mapping) else out  # a plugged network may return a tensor
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"Grad-CAM explains a segmentation output (N, K, H, W); this model returns {shape}")
        if self.region == "all":
            return out.sum(dim=(2, 3))
        selected = F.one_hot(out.argmax(dim=1), out.shape[1]).permute(0, 3, 1, 2).to(out.dtype)  # (N, K, H, W)
        return (out * selected).sum(dim=(2, 3))


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    stage: str = "gald",
    *,
    region: str = "predicted",
    relu: bool = True,
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM (captum ``LayerGradCam``) of class ``target`` at one feature stage.

    ``A = ReLU(Σ_c mean_{h,w}(∂S/∂A_c) · A_c)`` where ``A`` is the stage's feature and ``S`` the
    :class:`ClassScore` of ``target``. The model is put in eval mode (BatchNorm statistics frozen).

    Args:
        model: a :class:`~gald.models.GALDNet` or a model with one block from :func:`gald.plug`.
        x: normalised images.
        target: class index.
        stage: ``"fcn"``, ``"ga"`` or ``"gald"`` (see the module docstring).
        region: ``"predicted"`` or ``"all"`` (see :class:`ClassScore`).
        relu: keep only positive evidence (classic Grad-CAM); ``False`` returns the signed map.
        upsample: bilinearly resize to the input size (else the feature resolution, H/8 × W/8).

    Returns:
        The attribution maps, detached.

    Shape:
        (N, 3, H, W) -> (N, H, W) (or (N, h, w) with ``upsample=False``)
    """
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, 3, H, W), got shape {tuple(x.shape)}")
    layer, to_input = stage_layer(model, stage)
    model.eval()
    scorer = ClassScore(model, region=region)
    with torch.no_grad():
        num_classes = scorer(x[:1]).shape[1]
    if not 0 <= int(target) < num_classes:
        raise IndexError(f"target class {target} out of range: the model has {num_classes} classes")
    cam = LayerGradCam(scorer, layer)
    attr = cam.attribute(x, target=int(target), attribute_to_layer_input=to_input, relu_attributions=relu)
    if upsample:
        attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return attr[:, 0].detach()
