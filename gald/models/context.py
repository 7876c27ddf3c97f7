"""Global Aggregation (GA) modules — paper Section 3.2 and Table 1(a).

Every GA module maps ``(N, C, H, W) -> (N, C, H, W)`` so that any of them can be dropped into a
GALD block. ``GA_MODULES`` is the project's one registry (name → class); it drives the CLI, the
app's dropdown and the parametrized tests. :class:`GlobalAggregation` adds the optional stride-2
depth-wise downsampling that the paper applies before GA ("we downsample F by a factor of 2 for
saving memory", Section 3.2) and resizes the result back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gald.config import lookup

from .layers import ConvNormAct, NormLayer, resize

__all__ = [
    "PSPModule",
    "ASPP",
    "NonLocal2d",
    "CGNL2d",
    "GA_MODULES",
    "get_ga",
    "build_ga",
    "GlobalAggregation",
]


class PSPModule(nn.Module):
    """Pyramid pooling (PSPNet, Zhao et al. 2017), projected back to ``in_channels``.

    Average-pools the input into ``bins`` grids, reduces each to ``in_channels // reduction`` with a
    1×1 conv, upsamples, concatenates with the input and fuses with a 3×3 conv.

    Args:
        in_channels: input and output channels.
        bins: pooled grid sizes.
        reduction: channel reduction of each pyramid branch.
        norm_layer: normalisation callable.
        align_corners: of the bilinear upsampling.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        bins: Sequence[int] = (1, 2, 3, 6),
        reduction: int = 4,
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        branch = max(1, in_channels // reduction)
        self.align_corners = align_corners
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvNormAct(in_channels, branch, 1, norm_layer=norm_layer))
            for b in bins
        )
        self.fuse = ConvNormAct(in_channels + branch * len(bins), in_channels, 3, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x] + [resize(stage(x), size, self.align_corners) for stage in self.stages]
        return self.fuse(torch.cat(pyramid, dim=1))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3, Chen et al. 2017), projected back to ``in_channels``.

    Args:
        in_channels: input and output channels.
        channels: channels of each of the five branches (default ``in_channels // 2``).
        rates: dilation rates of the three 3×3 branches (DeepLabv3's rates for output stride 8).
        norm_layer: normalisation callable. The image-pooling branch normalises a 1×1 map, so
            training with BatchNorm needs a batch of at least 2.
        align_corners: of the bilinear upsampling of the pooled branch (a broadcast, so no effect).

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: int | None = None,
        rates: Sequence[int] = (12, 24, 36),
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        channels = channels or max(1, in_channels // 2)
        self.align_corners = align_corners
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvNormAct(in_channels, channels, 1, norm_layer=norm_layer)
        )
        self.branches = nn.ModuleList(
            [ConvNormAct(in_channels, channels, 1, norm_layer=norm_layer)]
            + [ConvNormAct(in_channels, channels, 3, dilation=r, norm_layer=norm_layer) for r in rates]
        )
        self.project = ConvNormAct(channels * (len(rates) + 2), in_channels, 1, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = resize(self.pool(x), x.shape[-2:], self.align_corners)
        return self.project(torch.cat([pooled] + [b(x) for b in self.branches], dim=1))


class NonLocal2d(nn.Module):
    """Non-local block, embedded-Gaussian form (Wang et al. 2018), residual and identity at init.

    ``z = x + BN(W · softmax(θ(x)ᵀ φ(x)) g(x))``; the BN scale starts at zero so the block is the
    identity when inserted into a trained network.

    Args:
        in_channels: input and output channels.
        channels: embedding channels of θ, φ, g (default ``in_channels // 2``).
        use_scale: divide the affinities by ``sqrt(channels)`` (as mmsegmentation does; the
            original has no scaling, which saturates the softmax on large maps).
        norm_layer: normalisation after the output projection.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: int | None = None,
        use_scale: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        channels = channels or max(1, in_channels // 2)
        self.use_scale = use_scale
        self.theta = nn.Conv2d(in_channels, channels, 1)
        self.phi = nn.Conv2d(in_channels, channels, 1)
        self.g = nn.Conv2d(in_channels, channels, 1)
        self.out = nn.Conv2d(channels, in_channels, 1, bias=False)
        self.norm = norm_layer(in_channels)
        nn.init.zeros_(self.norm.weight)  # identity at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        # (N, C', H, W) -> (N, 1, HW, C'): one attention head over all positions.
        q, k, v = (m(x).flatten(2).transpose(1, 2).unsqueeze(1) for m in (self.theta, self.phi, self.g))
        scale = 1.0 / math.sqrt(q.shape[-1]) if self.use_scale else 1.0
        y = F.scaled_dot_product_attention(q, k, v, scale=scale)
        y = y.squeeze(1).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.norm(self.out(y))


class CGNL2d(nn.Module):
    """Compact Generalized Non-Local block (Yue et al. 2018), dot-product kernel, grouped.

    For each channel group, the affinity ``Σ φ·g`` over all channels and positions of the group is
    one scalar per image; the block multiplies it back into ``θ`` of the same group, projects with
    a grouped 1×1 conv and adds the input. All groups are computed in one batched reduction.

    Args:
        in_channels: input and output channels.
        channels: channels of θ, φ, g (default ``in_channels // 2``); divisible by ``groups``.
        groups: channel groups (8 in the authors' code).
        use_scale: divide the affinity by ``sqrt(channels_per_group · H · W)``.
        norm_layer: normalisation after the projection; ``None`` gives ``GroupNorm(groups, C)``,
            the authors' choice.
        zero_init: zero the normalisation scale so the block starts as the identity.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: int | None = None,
        groups: int = 8,
        use_scale: bool = False,
        norm_layer: NormLayer | None = None,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        channels = channels or max(1, in_channels // 2)
        if channels % groups or in_channels % groups:
            raise ValueError(
                f"CGNL2d needs in_channels ({in_channels}) and channels ({channels}) divisible by groups ({groups})"
            )
        self.groups = groups
        self.use_scale = use_scale
        self.t = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.p = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.g = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.z = nn.Conv2d(channels, in_channels, 1, groups=groups, bias=False)
        self.norm = norm_layer(in_channels) if norm_layer is not None else nn.GroupNorm(groups, in_channels)
        if zero_init:
            nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        t, p, g = self.t(x), self.p(x), self.g(x)
        c = t.shape[1]
        # (N, C', H, W) -> (N, groups, C'/groups · H · W): each row is one group.
        t, p, g = (y.reshape(n, self.groups, -1) for y in (t, p, g))
        att = (p * g).sum(dim=-1, keepdim=True)  # (N, groups, 1)
        if self.use_scale:
            att = att / math.sqrt(c // self.groups * h * w)
        y = (att * t).reshape(n, c, h, w)
        return self.norm(self.z(y)) + x


GA_MODULES: dict[str, type[nn.Module]] = {
    "psp": PSPModule,
    "aspp": ASPP,
    "nl": NonLocal2d,
    "cgnl": CGNL2d,
}


def get_ga(name: str | type[nn.Module]) -> type[nn.Module]:
    """Look up a GA class by registry name (or pass a class through)."""
    if isinstance(name, type):
        return name
    return lookup("ga", name, GA_MODULES)


def build_ga(name: str | type[nn.Module], in_channels: int, **kwargs) -> nn.Module:
    """Build a GA module by name or class: ``build_ga("cgnl", 512, groups=8)``."""
    return get_ga(name)(in_channels, **kwargs)


class GlobalAggregation(nn.Module):
    """``F_GA = upsample(GA(down(F)))``: GA at half resolution, back at the input size (Sec. 3.2).

    Args:
        channels: input and output channels.
        ga: a name in :data:`GA_MODULES` or a class.
        ga_kwargs: extra keyword arguments of the GA class.
        downsample: apply a depth-wise 3×3 stride-2 conv + norm + ReLU before GA.
        padding: pad the depth-wise conv (paper mode); the authors' conv has none (official mode).
        bias: bias of the depth-wise conv (the authors' conv has one).
        norm_layer: normalisation callable, also passed to the GA module unless ``ga_kwargs`` sets
            one (``{"norm_layer": None}`` gives CGNL the authors' GroupNorm).
        align_corners: of the upsampling back to the input size.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        channels: int,
        *,
        ga: str | type[nn.Module] = "cgnl",
        ga_kwargs: dict | None = None,
        downsample: bool = True,
        padding: bool = True,
        bias: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.down = (
            ConvNormAct(
                channels, channels, 3, stride=2, padding=1 if padding else 0, groups=channels, bias=bias,
                norm_layer=norm_layer,
            )
            if downsample
            else nn.Identity()
        )
        # Unpadded 3×3 convs need at least 3 pixels per side.
        self.min_size = 3 if downsample and not padding else 1
        kwargs = dict(ga_kwargs or {})
        kwargs.setdefault("norm_layer", norm_layer)  # CGNL takes None as "the authors' GroupNorm"
        self.ga = build_ga(ga, channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if min(size) < self.min_size:
            raise ValueError(
                f"feature map {tuple(size)} is smaller than {self.min_size}x{self.min_size}, the least the "
                "unpadded stride-2 downsampling of official mode accepts; use a larger input"
            )
        return resize(self.ga(self.down(x)), size, self.align_corners)
