"""Local Distribution (LD) — paper Section 3.2, Eq. (1)–(2), Table 1(e).

LD estimates, for every channel (latent pattern) of ``F_GA``, how far that pattern extends around
each position, as a mask ``M = σ(upsample(W_d F_GA))`` (Eq. 1), and re-weights the global features
with it: ``F_GALD = M ⊙ F_GA + F_GA`` (Eq. 2).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ConvNormAct, NormLayer, resize

__all__ = ["LocalDistribution", "LD_DOWNSAMPLING"]

LD_DOWNSAMPLING = ("dwconv", "bilinear", "avgpool")


class LocalDistribution(nn.Module):
    """Per-channel mask maps from a downsampled copy of the features (Eq. 1) applied as Eq. (2).

    Args:
        channels: channels of ``F_GA`` (the mask has the same number).
        d: downsampling rate, a power of two ≥ 2 (the paper uses 8).
        downsample: ``"dwconv"`` — log2(d) depth-wise 3×3 stride-2 convs, each followed by norm, the
            learned ``W_d`` of Eq. (1); ``"bilinear"`` or ``"avgpool"`` — parameter-free
            downsampling by ``d`` (Table 1(e)).
        padding: pad the depth-wise convs (paper mode). The authors' convs have no padding
            (official mode), which needs larger maps (at least 15×15 for d = 8).
        bias: bias of the depth-wise convs (the authors' convs have one).
        last_activation: ReLU after the last depth-wise conv as well. The authors apply it, which
            keeps ``M`` in [0.5, 1]; paper mode omits it so ``M`` spans (0, 1) as Eq. (1) reads.
        norm_layer: normalisation callable.
        align_corners: of the bilinear upsampling of the mask.

    Shape:
        (N, C, H, W) -> (N, C, H, W) for both :meth:`mask` and :meth:`forward`.
    """

    def __init__(
        self,
        channels: int,
        *,
        d: int = 8,
        downsample: str = "dwconv",
        padding: bool = True,
        bias: bool = False,
        last_activation: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(d, int) or d < 2 or d & (d - 1):
            raise ValueError(f"LD downsampling rate d must be a power of two >= 2 (2, 4, 8, 16, ...), got {d!r}")
        if downsample not in LD_DOWNSAMPLING:
            raise ValueError(f"unknown LD downsampling {downsample!r}; valid names: {list(LD_DOWNSAMPLING)}")
        self.d = d
        self.mode = downsample
        self.padding = padding
        self.align_corners = align_corners
        if downsample == "dwconv":
            n = int(math.log2(d))
            self.convs = nn.Sequential(
                *(
                    ConvNormAct(
                        channels, channels, 3, stride=2, padding=1 if padding else 0, groups=channels,
                        bias=bias, norm_layer=norm_layer, activation=(i < n - 1) or last_activation,
                    )
                    for i in range(n)
                )
            )
        else:
            self.convs = None

    def min_size(self) -> int:
        """The smallest feature side the downsampling accepts."""
        if self.mode != "dwconv" or self.padding:
            return 1
        size = 1
        for _ in range(int(math.log2(self.d))):
            size = 2 * size + 1  # inverse of (s - 3) // 2 + 1
        return size

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        """``W_d F_GA``: the input downsampled by ``d``. Shape: (N, C, H, W) -> (N, C, ~H/d, ~W/d)."""
        if min(x.shape[-2:]) < self.min_size():
            raise ValueError(
                f"feature map {tuple(x.shape[-2:])} is smaller than {self.min_size()}x{self.min_size()}, the "
                f"least that {int(math.log2(self.d))} unpadded stride-2 convs accept (official mode); use a "
                "larger input"
            )
        if self.convs is not None:
            return self.convs(x)
        h, w = x.shape[-2:]
        size = (math.ceil(h / self.d), math.ceil(w / self.d))
        if self.mode == "avgpool":
            return F.avg_pool2d(x, kernel_size=self.d, stride=self.d, ceil_mode=True)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (1): ``M = σ(upsample(W_d x))`` with values in [0, 1]."""
        return torch.sigmoid(resize(self.downsample(x), x.shape[-2:], self.align_corners))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (2): ``M ⊙ x + x``."""
        return torch.addcmul(x, self.mask(x), x)
