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

from gald.config import check_choice

from .layers import ConvNormAct, NormLayer, resize

__all__ = ["LocalDistribution", "LD_DOWNSAMPLING", "LD_INITS", "LD_INTERVENTIONS", "PAPER_LD"]

LD_DOWNSAMPLING = ("dwconv", "bilinear", "avgpool")

#: What :attr:`LocalDistribution.intervention` may replace ``M`` by (see :mod:`gald.metrics.ld_effect`):
#: its per-image, per-channel spatial mean (keeps the scale, removes the spatial information), or 0.
LD_INTERVENTIONS = ("spatial_mean", "zero")

#: Paper mode's LD design: the authors' (a norm on every depth-wise conv, PyTorch's default init).
#: Decided from gradient health alone (issue #14): no alternative tried met the criterion, and this
#: one came closest (docs/ld.md, benchmarks/results/ld_diagnosis.md).
PAPER_LD = {"last_norm": True, "init": "default"}

#: Initialisations of the depth-wise convs: PyTorch's ``default``; ``box`` — every 3×3 kernel
#: 1/9, so ``W_d`` starts as a smoothing downsampler (average pooling, Table 1(e)) and learns
#: from there; ``zero`` — the last conv (weights and bias) at 0, so ``M = 0.5`` everywhere at the
#: start (needs ``last_norm=False``).
LD_INITS = ("default", "box", "zero")


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
        last_norm: normalise the last depth-wise conv's output (the authors do). Without it the last
            conv gets a bias instead, so that ``σ`` sees ``W_d F_GA`` itself as Eq. (1) writes.
        init: initialisation of the depth-wise convs, one of :data:`LD_INITS`.
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
        last_norm: bool = True,
        init: str = "default",
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(d, int) or d < 2 or d & (d - 1):
            raise ValueError(f"LD downsampling rate d must be a power of two >= 2 (2, 4, 8, 16, ...), got {d!r}")
        check_choice("ld_init", init, LD_INITS)
        if init == "zero" and last_norm:
            raise ValueError("LD init 'zero' needs last_norm=False (a norm after a zero conv divides by zero variance)")
        check_choice("ld_downsample", downsample, LD_DOWNSAMPLING)
        self.d = d
        self.mode = downsample
        self.padding = padding
        self.align_corners = align_corners
        self.intervention: str | None = None  # set through gald.metrics.ld_effect.ld_intervention
        if downsample == "dwconv":
            n = int(math.log2(d))
            last = n - 1
            self.convs = nn.Sequential(
                *(
                    ConvNormAct(
                        channels, channels, 3, stride=2, padding=1 if padding else 0, groups=channels,
                        bias=bias or (i == last and not last_norm),
                        norm_layer=norm_layer if (i < last or last_norm) else None,
                        activation=(i < last) or last_activation,
                    )
                    for i in range(n)
                )
            )
            convs = [block[0] for block in self.convs]
            if init == "box":
                for conv in convs:
                    nn.init.constant_(conv.weight, 1.0 / conv.weight[0].numel())
                    if conv.bias is not None:
                        nn.init.zeros_(conv.bias)
            elif init == "zero":
                nn.init.zeros_(convs[-1].weight)
                nn.init.zeros_(convs[-1].bias)
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
        """Eq. (1): ``M = σ(upsample(W_d x))`` with values in [0, 1].

        Under an :attr:`intervention` the mask is replaced: ``"spatial_mean"`` by its per-image,
        per-channel spatial mean, ``"zero"`` by 0 (so Eq. 2 returns ``x``).
        """
        m = torch.sigmoid(resize(self.downsample(x), x.shape[-2:], self.align_corners))
        if self.intervention is None:
            return m
        check_choice("LD intervention", self.intervention, LD_INTERVENTIONS)
        if self.intervention == "spatial_mean":
            return m.mean(dim=(-2, -1), keepdim=True).expand_as(m)
        return torch.zeros_like(m)  # "zero"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (2): ``M ⊙ x + x``."""
        return torch.addcmul(x, self.mask(x), x)
