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

import inspect
import os
from typing import Any

import torch
from torch import nn

from gald.config import FIDELITY_MODES, HOST_ARCHS, check_choice, lookup

from .backbones import ResNetBackbone, build_backbone
from .heads import AuxHead, GALDHead
from .hosts import build_host, host_options
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


def _gald(
    arch: str,
    backbone_name: str,
    *,
    num_classes: int,
    head_channels: int,
    aux_channels: int,
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
    pretrained_backbone: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
    ga_kwargs: dict | None = None,
    **backbone_kwargs: Any,
) -> GALDNet:
    """The one body of the builders (torchvision's ``_deeplabv3_resnet`` pattern): every option of
    :func:`gald_resnet50` is declared here once, typed; the public builders set their defaults."""
    unknown = sorted(set(backbone_kwargs) - _BACKBONE_OPTIONS[backbone_name])
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown} for {arch}; valid options: {sorted(model_options(arch))}")
    _check_mode(mode)
    official = mode == "official"
    ld_options = _ld_options(ld_last_norm, ld_init, official)
    options = dict(
        num_classes=num_classes, ga=ga, block=block, ld_downsample=ld_downsample, d=d, ga_downsample=ga_downsample,
        output_stride=output_stride, mode=mode, aux=aux, stage_classifiers=stage_classifiers,
        head_channels=head_channels, aux_channels=aux_channels, pretrained_backbone=pretrained_backbone,
        ga_kwargs=ga_kwargs, **backbone_kwargs,
    )
    # the plain options, with LD's design resolved, so that a checkpoint rebuilds the same model
    config = {"arch": arch, **{k: v for k, v in options.items() if _plain(v)}, **ld_options}
    backbone = build_backbone(
        backbone_name, output_stride=output_stride, mode=mode, pretrained=pretrained_backbone,
        norm_layer=norm_layer, **backbone_kwargs,
    )
    ga_kwargs = dict(ga_kwargs or {})
    if official and ga == "cgnl":
        ga_kwargs.setdefault("norm_layer", None)  # the authors' GroupNorm(8)
    head = GALDHead(
        backbone.channels["layer4"],
        head_channels,
        num_classes,
        stage_classifiers=stage_classifiers,
        norm_layer=norm_layer,
        arrangement=block,
        ga=ga,
        ga_kwargs=ga_kwargs,
        ga_downsample=ga_downsample,
        ld_downsample=ld_downsample,
        d=d,
        **ld_options,
        padding=not official,
        bias=official,
        ld_last_activation=official,
        extra_residual=official,
        align_corners=official,
    )
    aux_head = None
    if aux:
        aux_head = AuxHead(backbone.channels["layer3"], aux_channels, num_classes, bias=official, norm_layer=norm_layer)
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


def gald_resnet50(*, num_classes: int = 19, head_channels: int = 512, aux_channels: int = 512, **kwargs: Any) -> GALDNet:
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

    Activation checkpointing of the backbone is a training lever applied to a built model:
    :func:`gald.engine.memory.set_activation_checkpointing`.

    Example::

        >>> model = gald_resnet50(num_classes=19, ga="cgnl", block="gald").eval()
        >>> model(torch.rand(1, 3, 97, 97))["out"].shape
        torch.Size([1, 19, 97, 97])
    """
    return _gald("gald_resnet50", "resnet50", num_classes=num_classes, head_channels=head_channels,
                 aux_channels=aux_channels, **kwargs)


def gald_resnet101(*, num_classes: int = 19, head_channels: int = 512, aux_channels: int = 512, **kwargs: Any) -> GALDNet:
    """GALD on a dilated ResNet-101; arguments as :func:`gald_resnet50`."""
    return _gald("gald_resnet101", "resnet101", num_classes=num_classes, head_channels=head_channels,
                 aux_channels=aux_channels, **kwargs)


def gald_tiny(
    *,
    num_classes: int = 19,
    depths: tuple[int, ...] = (1, 1, 1, 1),
    widths: tuple[int, ...] = (8, 16, 32, 64),
    head_channels: int = 32,
    aux_channels: int = 32,
    **kwargs: Any,
) -> GALDNet:
    """GALD on a slim Bottleneck ResNet for CPU work; ``depths``/``widths`` set the trunk, the
    other arguments are those of :func:`gald_resnet50`."""
    return _gald("gald_tiny", "tiny", num_classes=num_classes, head_channels=head_channels, aux_channels=aux_channels,
                 depths=depths, widths=widths, **kwargs)


def _plain(v: Any) -> bool:
    """Whether ``v`` can go into a ``weights_only`` checkpoint's config as it is."""
    if isinstance(v, (list, tuple)):
        return all(_plain(i) for i in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(i) for k, i in v.items())
    return v is None or isinstance(v, (bool, int, float, str))


MODELS = {"gald_resnet50": gald_resnet50, "gald_resnet101": gald_resnet101, "gald_tiny": gald_tiny}
_BACKBONES = {"gald_resnet50": "resnet50", "gald_resnet101": "resnet101", "gald_tiny": "tiny"}
# options a backbone takes beyond the shared ones (the trunk of the CPU model)
_BACKBONE_OPTIONS = {"resnet50": set(), "resnet101": set(), "tiny": {"depths", "widths"}}


def model_options(arch: str) -> set[str]:
    """The keyword options of builder ``arch``: the shared ones of the builders' body, plus its trunk's
    (for a host network, those of :func:`~gald.models.hosts.build_host`)."""
    if arch in HOST_ARCHS:
        return host_options()
    shared = {name for name, p in inspect.signature(_gald).parameters.items() if p.kind is p.KEYWORD_ONLY}
    return shared | _BACKBONE_OPTIONS[_BACKBONES[arch]]


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a model from a plain config dict: ``{"arch": "gald_tiny", "ga": "nl", ...}``, a
    :class:`GALDNet`, or a host network with GALD plugged in (``arch`` in
    :data:`~gald.models.hosts.HOSTS`, see :func:`~gald.models.hosts.build_host`).

    Unknown architectures or keys raise errors that list the valid ones.
    """
    config = dict(config)
    arch = config.pop("arch", "gald_resnet50")
    builder = lookup("arch", arch, {**MODELS, **dict.fromkeys(HOST_ARCHS)})
    if arch in HOST_ARCHS:
        unknown = sorted(set(config) - host_options())
        if unknown:
            raise TypeError(f"unknown model option(s) {unknown} for {arch}; valid options: {sorted(host_options())}")
        return build_host(arch, **config)
    valid = model_options(arch)
    unknown = sorted(set(config) - valid)
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown} for {arch}; valid options: {sorted(valid)}")
    for key in ("depths", "widths"):
        if key in config and isinstance(config[key], list):
            config[key] = tuple(config[key])
    return builder(**config)
