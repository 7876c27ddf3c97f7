"""GALDNet: dilated ResNet + GALD head (+ aux head) → ``{"out", "aux"}`` (Fig. 2, Section 3.3).

Builders name the variant (``gald_resnet50``, ``gald_resnet101``, ``gald_tiny``) and take the
paper's defaults; ``build_model(config)`` is the path training uses.

Two fidelity modes:

* ``mode="paper"`` (default): Eq. (1)–(3) as written — ``F_GALD = M ⊙ F_GA + F_GA``, ``M`` spans
  (0, 1) — on torchvision's ResNet conventions (7×7 stem, contracted dilation), padded depth-wise
  convs, BatchNorm everywhere, ``align_corners=False``.
* ``mode="official"``: the network of the authors' ``libs/models/GALDNet.py`` — deep 3×3 stem
  (64-64-128), ``maxpool(ceil_mode=True)``, no dilation contraction, multi-grid (1, 2, 4), no
  padding but biases in the depth-wise convs, a ReLU before the LD sigmoid, ``GroupNorm(8)`` in
  CGNL, a bias in the aux conv, ``align_corners=True``, and the block returning
  ``M ⊙ F_GA + 2·F_GA``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gald.config import FIDELITY_MODES, check_choice

from .backbones import ResNetBackbone, build_backbone
from .heads import AuxHead, GALDHead
from .layers import NormLayer, check_image_batch, resize
from .ld import PAPER_LD

__all__ = ["GALDNet", "gald_resnet50", "gald_resnet101", "gald_tiny", "MODELS", "build_model"]

MODES = FIDELITY_MODES  # defined once, in gald.config


class GALDNet(nn.Module):
    """Backbone → GALD head (on layer4) and aux head (on layer3, training only).

    Args:
        backbone: returns ``{"layer3", "layer4"}`` features.
        head: maps layer4 features to logits.
        aux_head: maps layer3 features to logits, or ``None``.
        align_corners: of the final upsampling to the input size.
        in_channels: expected image channels (checked on every call).

    Shape:
        (N, 3, H, W) -> {"out": (N, K, H, W)} in eval mode, plus ``"aux"`` (N, K, H, W) in training.
    """

    def __init__(
        self,
        backbone: ResNetBackbone,
        head: GALDHead,
        aux_head: nn.Module | None = None,
        *,
        align_corners: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.align_corners = align_corners
        self.in_channels = in_channels
        self.config: dict[str, Any] = {}  # set by the builders; saved in checkpoints

    @property
    def num_classes(self) -> int:
        """Classes the model predicts (channels of ``out``)."""
        return self.head.classifier.out_channels

    @property
    def stage_classifiers(self) -> dict[str, nn.Module]:
        """The 1×1 stage classifiers of Fig. 5 the model was built with, by their ``inspect`` key
        (``logits_fcn`` on ``F``, ``logits_ga`` on ``F_GA``); empty without them."""
        stages = {"logits_fcn": self.head.stage_fcn, "logits_ga": self.head.stage_ga}
        return {k: v for k, v in stages.items() if v is not None}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, self.in_channels)
        size = x.shape[-2:]
        feats = self.backbone(x)
        out = {"out": resize(self.head(feats["layer4"]), size, self.align_corners)}
        if self.training and self.aux_head is not None:
            out["aux"] = resize(self.aux_head(feats["layer3"]), size, self.align_corners)
        return out

    def inspect(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Run the model and return its named intermediate tensors (for figures, the app, captum).

        Keys: ``F`` (backbone layer4 feature, Eq. 3), ``F_GA`` (GA output), ``M`` (LD masks, Eq. 1),
        ``F_GALD`` (block output, Eq. 2), ``logits`` (before upsampling), ``logits_fcn`` and
        ``logits_ga`` (stage classifiers, if built), ``out`` (logits at the input size). Entries a
        variant lacks are ``None``. Gradients are kept; wrap in ``torch.no_grad()`` if not needed.

        Shape:
            (N, 3, H, W) -> feature-resolution tensors (N, ·, H/8, W/8) and ``out`` (N, K, H, W)
        """
        check_image_batch(x, self.in_channels)
        feats = self.backbone(x)
        out = self.head.forward_intermediates(feats["layer4"])
        out["out"] = resize(out["logits"], x.shape[-2:], self.align_corners)
        return out


def _build(arch: str, backbone_name: str, args: dict[str, Any], **backbone_kwargs: Any) -> GALDNet:
    """The body shared by the builders: ``args`` are the builder's arguments (its ``locals()``)."""
    _check_mode(args["mode"])
    official = args["mode"] == "official"
    ld_options = _ld_options(args["ld_last_norm"], args["ld_init"], official)
    # resolved, so that a checkpoint rebuilds the same LD whatever the mode's default becomes
    config = {"arch": arch, **{k: v for k, v in args.items() if _plain(v)}, **ld_options}
    norm_layer = args["norm_layer"]
    backbone = build_backbone(
        backbone_name, output_stride=args["output_stride"], mode=args["mode"],
        pretrained=args["pretrained_backbone"], norm_layer=norm_layer, **backbone_kwargs,
    )
    backbone.activation_checkpointing = args["activation_checkpointing"]
    backbone.checkpoint_policy = args["checkpoint_policy"]
    ga_kwargs = dict(args["ga_kwargs"] or {})
    if official and args["ga"] == "cgnl":
        ga_kwargs.setdefault("norm_layer", None)  # the authors' GroupNorm(8)
    head = GALDHead(
        backbone.channels["layer4"],
        args["head_channels"],
        args["num_classes"],
        stage_classifiers=args["stage_classifiers"],
        norm_layer=norm_layer,
        arrangement=args["block"],
        ga=args["ga"],
        ga_kwargs=ga_kwargs,
        ga_downsample=args["ga_downsample"],
        ld_downsample=args["ld_downsample"],
        d=args["d"],
        **ld_options,
        padding=not official,
        bias=official,
        ld_last_activation=official,
        extra_residual=official,
        align_corners=official,
    )
    aux_head = None
    if args["aux"]:
        aux_head = AuxHead(
            backbone.channels["layer3"], args["aux_channels"], args["num_classes"], bias=official, norm_layer=norm_layer
        )
    model = GALDNet(backbone, head, aux_head, align_corners=official)
    model.config = config
    return model


def _ld_options(last_norm: bool | None, init: str | None, official: bool) -> dict[str, bool | str]:
    """LD's design for a mode: official mode is the authors' (fixed); paper mode defaults to
    :data:`~gald.models.ld.PAPER_LD` and accepts explicit choices (for the diagnosis)."""
    if official:
        if last_norm is False or init not in (None, "default"):
            raise ValueError("official mode is the authors' network (LD's last conv normalised, default init); "
                             "ld_last_norm / ld_init need mode='paper'")
        return {"ld_last_norm": True, "ld_init": "default"}
    return {
        "ld_last_norm": PAPER_LD["last_norm"] if last_norm is None else bool(last_norm),
        "ld_init": PAPER_LD["init"] if init is None else init,
    }


def _check_mode(mode: str) -> None:
    check_choice("mode", mode, MODES)


def gald_resnet50(
    *,
    num_classes: int = 19,
    ga: str = "cgnl",
    block: str = "gald",
    ld_downsample: str = "dwconv",
    d: int = 8,
    ld_last_norm: bool | None = None,
    ld_init: str | None = None,
    ga_downsample: bool = True,
    output_stride: int = 8,
    mode: str = "paper",
    aux: bool = True,
    stage_classifiers: bool = False,
    head_channels: int = 512,
    aux_channels: int = 512,
    pretrained_backbone: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
    ga_kwargs: dict | None = None,
    activation_checkpointing: bool | Sequence[str] = False,
    checkpoint_policy: str = "full",
) -> GALDNet:
    """GALD on a dilated ResNet-50 (Table 1, Table 2).

    Args:
        num_classes: output classes (19 for Cityscapes).
        ga: GA module, a name in ``GA_MODULES`` (``"psp"``, ``"aspp"``, ``"nl"``, ``"cgnl"``).
        block: arrangement, one of ``ARRANGEMENTS`` (``"gald"``, ``"ldga"``, ``"parallel"``, ``"ga"``,
            ``"ld"``, ``"none"``).
        ld_downsample: ``"dwconv"``, ``"bilinear"`` or ``"avgpool"`` (Table 1(e)).
        d: LD downsampling rate, a power of two.
        ld_last_norm: normalisation on LD's last depth-wise conv; ``None``: the mode's choice
            (official: yes, as the authors; paper: ``PAPER_LD["last_norm"]``, see :mod:`gald.models.ld`).
        ld_init: initialisation of LD's depth-wise convs (``LD_INITS``); ``None``: the mode's choice
            (official: ``"default"``; paper: ``PAPER_LD["init"]``).
        ga_downsample: the stride-2 depth-wise conv before GA (Section 3.2).
        output_stride: 8 (paper) or 16.
        mode: ``"paper"`` or ``"official"`` (see the module docstring).
        aux: build the aux (DSN) head on layer3 (its output is returned while training).
        stage_classifiers: 1×1 classifiers on ``F`` and ``F_GA`` (Fig. 5).
        head_channels: width of the head.
        aux_channels: width of the aux head.
        pretrained_backbone: local ImageNet checkpoint path, ``"torchvision"`` (downloads), or ``None``.
        norm_layer: normalisation callable (``nn.BatchNorm2d``; SyncBN via ``convert_sync_batchnorm``).
        ga_kwargs: extra keyword arguments of the GA module.
        activation_checkpointing: backbone stages (``True``: all four; or names such as
            ``("layer1", "layer2", "layer3")``) whose residual blocks are recomputed during backward
            instead of storing their activations: training memory for time, the network unchanged.
        checkpoint_policy: ``"full"`` (recompute whole blocks) or ``"selective"`` (keep the 3×3
            convolution outputs, recompute the rest): see :class:`~gald.models.backbones.ResNetBackbone`.

    Example::

        >>> model = gald_resnet50(num_classes=19, ga="cgnl", block="gald").eval()
        >>> model(torch.rand(1, 3, 97, 97))["out"].shape
        torch.Size([1, 19, 97, 97])
    """
    return _build("gald_resnet50", "resnet50", locals())


def gald_resnet101(
    *,
    num_classes: int = 19,
    ga: str = "cgnl",
    block: str = "gald",
    ld_downsample: str = "dwconv",
    d: int = 8,
    ld_last_norm: bool | None = None,
    ld_init: str | None = None,
    ga_downsample: bool = True,
    output_stride: int = 8,
    mode: str = "paper",
    aux: bool = True,
    stage_classifiers: bool = False,
    head_channels: int = 512,
    aux_channels: int = 512,
    pretrained_backbone: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
    ga_kwargs: dict | None = None,
    activation_checkpointing: bool | Sequence[str] = False,
    checkpoint_policy: str = "full",
) -> GALDNet:
    """GALD on a dilated ResNet-101; arguments as :func:`gald_resnet50`."""
    return _build("gald_resnet101", "resnet101", locals())


def gald_tiny(
    *,
    num_classes: int = 19,
    ga: str = "cgnl",
    block: str = "gald",
    ld_downsample: str = "dwconv",
    d: int = 8,
    ld_last_norm: bool | None = None,
    ld_init: str | None = None,
    ga_downsample: bool = True,
    output_stride: int = 8,
    mode: str = "paper",
    aux: bool = True,
    stage_classifiers: bool = False,
    depths: tuple[int, ...] = (1, 1, 1, 1),
    widths: tuple[int, ...] = (8, 16, 32, 64),
    head_channels: int = 32,
    aux_channels: int = 32,
    pretrained_backbone: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
    ga_kwargs: dict | None = None,
    activation_checkpointing: bool | Sequence[str] = False,
    checkpoint_policy: str = "full",
) -> GALDNet:
    """GALD on a slim Bottleneck ResNet for CPU work; ``depths``/``widths`` set the trunk, the
    other arguments are those of :func:`gald_resnet50`."""
    return _build("gald_tiny", "tiny", locals(), depths=depths, widths=widths)


def _plain(v: Any) -> bool:
    """Whether ``v`` can go into a ``weights_only`` checkpoint's config as it is."""
    if isinstance(v, (list, tuple)):
        return all(_plain(i) for i in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(i) for k, i in v.items())
    return v is None or isinstance(v, (bool, int, float, str))


MODELS = {"gald_resnet50": gald_resnet50, "gald_resnet101": gald_resnet101, "gald_tiny": gald_tiny}


def build_model(config: dict[str, Any]) -> GALDNet:
    """Build a model from a plain config dict: ``{"arch": "gald_tiny", "ga": "nl", ...}``.

    Unknown architectures or keys raise errors that list the valid ones.
    """
    config = dict(config)
    arch = config.pop("arch", "gald_resnet50")
    try:
        builder = MODELS[arch]
    except KeyError:
        raise KeyError(f"unknown arch {arch!r}; valid names: {sorted(MODELS)}") from None
    import inspect

    valid = set(inspect.signature(builder).parameters)
    unknown = sorted(set(config) - valid)
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown} for {arch}; valid options: {sorted(valid)}")
    for key in ("depths", "widths"):
        if key in config and isinstance(config[key], list):
            config[key] = tuple(config[key])
    return builder(**config)
