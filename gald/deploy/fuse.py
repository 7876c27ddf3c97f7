"""Inference-time execution path: fold BatchNorm into convolutions, channels-last layout.

Nothing here changes the network. :func:`fuse_conv_bn` returns an eval-only copy in which every
BatchNorm that directly follows a convolution is folded into that convolution's weight and bias
(``y = γ (W x + b − μ) / √(σ² + ε) + β`` is again a convolution), so the copy computes the same
function with one pass over each feature map fewer. :func:`optimize_for_inference` adds the
channels-last memory layout, which lets oneDNN (CPU) and cuDNN (GPU) run the convolutions without
layout reorders. The original model is never modified.

Example::

    >>> model = gald_resnet50(mode="official").eval()
    >>> fast = optimize_for_inference(model)            # fused, channels-last, eval-only copy
    >>> with torch.inference_mode():
    ...     logits = fast(images)["out"]                 # equals model(images)["out"] within 1e-4
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from gald.deploy.nnpack import convert_to_nnpack
from gald.models.backbones import ResNetBackbone
from gald.models.context import CGNL2d, NonLocal2d

log = logging.getLogger(__name__)

__all__ = ["fuse_conv_bn", "optimize_for_inference", "count_batch_norms"]

_NORMS = (_BatchNorm, FrozenBatchNorm2d)

# (conv attribute, norm attribute) pairs of the modules whose forward applies the norm directly to
# that conv's output; nn.Sequential children (ConvNormAct, AuxHead, downsample, stem) are found by
# position instead.
_NAMED_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    ResNetBackbone: (("conv1", "bn1"),),  # conv1 is a Sequential ending in a conv in official mode
    NonLocal2d: (("out", "norm"),),
    CGNL2d: (("z", "norm"),),
}


def count_batch_norms(model: nn.Module) -> int:
    """Number of BatchNorm-type layers (including ``FrozenBatchNorm2d``) left in ``model``."""
    return sum(isinstance(m, _NORMS) for m in model.modules())


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Fold ``norm`` (eval statistics) into ``conv`` in place."""
    if getattr(norm, "running_mean", None) is None:
        raise ValueError(
            f"cannot fold {type(norm).__name__} without running statistics (track_running_stats=False) "
            "into a convolution; build the model with tracked statistics or skip fuse_conv_bn"
        )
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    conv.weight = nn.Parameter(weight.detach(), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach(), requires_grad=False)


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    return module if isinstance(module, nn.Conv2d) else None


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Return an eval-only copy of ``model`` with each BatchNorm folded into the conv before it.

    Folded norms become ``nn.Identity``; GroupNorm (CGNL in official mode) has per-image statistics
    and stays. The copy's outputs equal the original's in eval mode within fp32 rounding; it must
    not be trained (its norms are gone), so its parameters have ``requires_grad=False``.

    Args:
        model: any ``gald`` model (or sub-module) in any mode, GA module and arrangement. It is
            not modified.

    Returns:
        The fused copy, in eval mode.

    Shape:
        the copy maps inputs to outputs exactly as ``model.eval()`` does.
    """
    fused = copy.deepcopy(model).eval()
    folded = 0
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], _NORMS):
                    _fold(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
                    folded += 1
        for cls, pairs in _NAMED_PAIRS.items():
            if not isinstance(module, cls):
                continue
            for conv_name, norm_name in pairs:
                conv, norm = _last_conv(getattr(module, conv_name)), getattr(module, norm_name)
                if conv is not None and isinstance(norm, _NORMS):
                    _fold(conv, norm)
                    setattr(module, norm_name, nn.Identity())
                    folded += 1
    for p in fused.parameters():
        p.requires_grad_(False)
    left = count_batch_norms(fused)
    log.debug("fuse_conv_bn: folded %d norms, %d left unfolded", folded, left)
    return fused


def optimize_for_inference(
    model: nn.Module, *, fuse: bool = True, channels_last: bool = True, nnpack: bool = False
) -> nn.Module:
    """An eval-only copy of ``model`` prepared for fast inference; the network is unchanged.

    Args:
        model: a ``gald`` model; it is not modified.
        fuse: fold BatchNorm into the preceding convolutions (:func:`fuse_conv_bn`).
        channels_last: store weights channels-last; every convolution then produces channels-last
            activations from the first one on, whatever the input's layout. Outputs are channels-last
            tensors with the usual (N, C, H, W) shape (call ``.contiguous()`` if a consumer needs
            the NCHW layout).
        nnpack: compute the wide 3×3 convolutions (the head's) with NNPACK's fast-convolution
            algorithms on CPU (:func:`~gald.models.nnpack.convert_to_nnpack`): several times fewer
            multiplications, results equal to fp32 rounding (about 1e-5 of the output's scale).

    Returns:
        The prepared copy, in eval mode. Run it under ``torch.inference_mode()``.

    Shape:
        the copy maps inputs to outputs exactly as ``model.eval()`` does.
    """
    out = fuse_conv_bn(model) if fuse else copy.deepcopy(model).eval()
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    if nnpack:
        convert_to_nnpack(out)
    return out
