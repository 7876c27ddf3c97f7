"""The GALD block in every arrangement the paper ablates, the segmentation head and the aux head.

Arrangements (Fig. 3, Table 1(b)–(c)), all mapping ``(N, C, H, W) -> (N, C, H, W)``:

=============  ===========================================================================
``gald``       GA then LD: ``F_GALD = M(F_GA) ⊙ F_GA + F_GA`` (Eq. 1–2)
``ldga``       LD then GA: ``GA(M(F) ⊙ F + F)``
``parallel``   LD and GA on the same input, concatenated, 1×1 conv back to C
``ga``         GA only (Table 1(a))
``ld``         LD only (Table 1(b), "+LD")
``none``       identity: the FCN baseline
=============  ===========================================================================

One head serves every arrangement, so Table 1's comparisons differ only in the block:
``conva`` (3×3) → block → ``convb`` (3×3) → ``concat(F, ·)`` (Eq. 3) → 3×3 → 1×1 classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from gald.config import check_choice

from .context import GlobalAggregation
from .layers import ConvNormAct, NormLayer
from .ld import LocalDistribution

__all__ = ["ARRANGEMENTS", "LD_ARRANGEMENTS", "GALDBlock", "GALDHead", "AuxHead"]

ARRANGEMENTS = ("gald", "ldga", "parallel", "ga", "ld", "none")
#: The arrangements that hold an LD module.
LD_ARRANGEMENTS = ("gald", "ldga", "parallel", "ld")


class GALDBlock(nn.Module):
    """Global Aggregation and Local Distribution in one of the paper's arrangements.

    Args:
        channels: input and output channels.
        arrangement: one of :data:`ARRANGEMENTS`.
        ga: GA module name (see ``GA_MODULES``) or class.
        ga_kwargs: extra keyword arguments of the GA module.
        ga_downsample: stride-2 depth-wise conv before GA (Section 3.2).
        ld_downsample: ``"dwconv"``, ``"bilinear"`` or ``"avgpool"`` (Table 1(e)).
        d: LD downsampling rate (Eq. 1), a power of two.
        padding: pad the depth-wise convs (paper); the authors' convs have no padding.
        bias: biases in the depth-wise convs (the authors have them).
        ld_last_activation: ReLU before the sigmoid of Eq. (1) (the authors have it).
        ld_last_norm: normalisation on LD's last depth-wise conv (the authors have it).
        ld_init: initialisation of LD's depth-wise convs (``LD_INITS``).
        extra_residual: add the LD input once more, ``M ⊙ F_GA + 2·F_GA`` — what the authors' block
            returns (``LD(x) + x``); the paper's Eq. (2) has a single ``F_GA``.
        norm_layer: normalisation callable.
        align_corners: of every bilinear resize.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        channels: int,
        *,
        arrangement: str = "gald",
        ga: str | type[nn.Module] = "cgnl",
        ga_kwargs: dict | None = None,
        ga_downsample: bool = True,
        ld_downsample: str = "dwconv",
        d: int = 8,
        padding: bool = True,
        bias: bool = False,
        ld_last_activation: bool = False,
        ld_last_norm: bool = True,
        ld_init: str = "default",
        extra_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        check_choice("block", arrangement, ARRANGEMENTS)
        self.channels = channels
        self.arrangement = arrangement
        self.extra_residual = extra_residual
        self.ga = self.ld = self.project = None
        if arrangement in ("gald", "ldga", "parallel", "ga"):
            self.ga = GlobalAggregation(
                channels, ga=ga, ga_kwargs=ga_kwargs, downsample=ga_downsample, padding=padding, bias=bias,
                norm_layer=norm_layer, align_corners=align_corners,
            )
        if arrangement in LD_ARRANGEMENTS:
            self.ld = LocalDistribution(
                channels, d=d, downsample=ld_downsample, padding=padding, bias=bias,
                last_activation=ld_last_activation, last_norm=ld_last_norm, init=ld_init,
                norm_layer=norm_layer, align_corners=align_corners,
            )
        if arrangement == "parallel":
            self.project = ConvNormAct(2 * channels, channels, 1, norm_layer=norm_layer)

    def _distribute(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(x, m, x)  # Eq. (2): M ⊙ x + x
        # addcmul's backward needs x and m, not its output, so the extra residual can go in place.
        return out.add_(x) if self.extra_residual else out

    def forward_intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Run the block and return ``{"F_GA", "M", "F_GALD"}`` (``None`` where a stage is absent).

        ``F_GALD`` is the block's output whatever the arrangement.
        """
        f_ga = m = None
        a = self.arrangement
        if a == "gald":
            f_ga = self.ga(x)
            m = self.ld.mask(f_ga)
            out = self._distribute(f_ga, m)
        elif a == "ldga":
            m = self.ld.mask(x)
            f_ga = out = self.ga(self._distribute(x, m))
        elif a == "parallel":
            f_ga = self.ga(x)
            m = self.ld.mask(x)
            out = self.project(torch.cat([self._distribute(x, m), f_ga], dim=1))
        elif a == "ga":
            f_ga = out = self.ga(x)
        elif a == "ld":
            m = self.ld.mask(x)
            out = self._distribute(x, m)
        else:
            out = x
        return {"F_GA": f_ga, "M": m, "F_GALD": out}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)["F_GALD"]


class GALDHead(nn.Module):
    """Segmentation head around a :class:`GALDBlock` (Section 3.3, Eq. 3).

    ``conva`` (3×3, C_in → C) → block → ``convb`` (3×3) → ``concat(F, ·)`` → ``fuse`` (3×3) →
    dropout → 1×1 classifier. With ``arrangement="none"`` this is an FCN head with two convs and
    input concatenation (the paper's baseline).

    Args:
        in_channels: channels of the backbone feature ``F``.
        channels: head width C (512 in the paper).
        num_classes: output classes.
        stage_classifiers: add 1×1 classifiers on ``F`` and on ``F_GA`` (Section 4.3.1, Fig. 5) whose
            logits :meth:`forward_intermediates` returns; they are trained separately on a frozen
            model and do not change the main output.
        dropout: dropout before the classifier (the authors use none).
        norm_layer: normalisation callable.
        **block_kwargs: passed to :class:`GALDBlock` (``arrangement``, ``ga``, ``d``, ...).

    Shape:
        (N, C_in, H, W) -> (N, num_classes, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        stage_classifiers: bool = False,
        dropout: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        **block_kwargs,
    ) -> None:
        super().__init__()
        self.conva = ConvNormAct(in_channels, channels, 3, norm_layer=norm_layer)
        self.block = GALDBlock(channels, norm_layer=norm_layer, **block_kwargs)
        self.convb = ConvNormAct(channels, channels, 3, norm_layer=norm_layer)
        self.fuse = ConvNormAct(in_channels + channels, channels, 3, norm_layer=norm_layer)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.stage_fcn = self.stage_ga = None
        if stage_classifiers:
            self.stage_fcn = nn.Conv2d(in_channels, num_classes, 1)
            if self.block.ga is not None:
                self.stage_ga = nn.Conv2d(channels, num_classes, 1)

    def forward_intermediates(self, f: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Return ``F``, ``F_GA``, ``M``, ``F_GALD``, ``logits`` and the stage logits
        ``logits_fcn`` / ``logits_ga`` (``None`` where absent), all at the feature resolution."""
        out = {"F": f, **self.block.forward_intermediates(self.conva(f))}
        x = self.convb(out["F_GALD"])
        x = self.fuse(torch.cat([f, x], dim=1))  # Eq. (3); F first, as the authors concatenate
        out["logits"] = self.classifier(self.dropout(x))
        out["logits_fcn"] = self.stage_fcn(f) if self.stage_fcn is not None else None
        out["logits_ga"] = (
            self.stage_ga(out["F_GA"]) if self.stage_ga is not None and out["F_GA"] is not None else None
        )
        return out

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(f)["logits"]


class AuxHead(nn.Sequential):
    """Auxiliary (deep supervision, "DSN") head on layer3: 3×3 conv + norm + ReLU, dropout, 1×1.

    Args:
        in_channels: channels of layer3.
        channels: hidden width (512 in the authors' code).
        num_classes: output classes.
        dropout: ``Dropout2d`` rate (0.1 in the authors' code).
        bias: bias of the 3×3 conv (the authors have one).
        norm_layer: normalisation callable.

    Shape:
        (N, C_in, H, W) -> (N, num_classes, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        dropout: float = 0.1,
        bias: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, channels, 3, bias=bias, norm_layer=norm_layer),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )
