"""Small shared building blocks and initialisation helpers."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv2dNormActivation

NormLayer = Callable[[int], nn.Module]

__all__ = ["ConvNormAct", "NormLayer", "resize", "check_image_batch"]


class ConvNormAct(Conv2dNormActivation):
    """Conv → norm → activation, torchvision's block with ``same`` padding by default.

    The children are named ``0`` (conv), ``1`` (norm), ``2`` (activation), which is also the
    layout of ``nn.Sequential(conv, bn, relu)`` in the authors' code, so state dicts line up.

    Shape:
        (N, C_in, H, W) -> (N, C_out, H', W')
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        activation: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            norm_layer=norm_layer,
            activation_layer=nn.ReLU if activation else None,
            dilation=dilation,
            inplace=True,
            bias=bias,
        )


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize to ``size``; a no-op when the size already matches.

    Shape:
        (N, C, h, w) -> (N, C, *size)
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def check_image_batch(x: torch.Tensor, in_channels: int) -> None:
    """Raise a ``ValueError`` that says what was expected when ``x`` is not an (N, C, H, W) batch."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (N, {in_channels}, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"expected a 4-D batch of shape (N, {in_channels}, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)}); "
            "images must be (N, C, H, W), channels first"
        )
