"""Faster / Mask R-CNN with FPN and GALD — paper Section 3.3 ("Object detection and instance
segmentation"), Section 4.2 and Table 3.

The paper adds GALD "at the end of stage 4 of a ResNet backbone", so that ``F_GALD`` sits on top of
FPN and "passes information from the top-down pathway". Here that is ``placement="c5"``: the
context block is appended to ``layer4`` (``body.layer4 = nn.Sequential(layer4, block)``, which
keeps the child name torchvision's ``IntermediateLayerGetter`` needs), so C5 — and through the
top-down pathway every FPN level — carries its output. ``placement="p5"`` is the alternative: the
block refines the coarsest FPN output inside an :class:`~torchvision.ops.feature_pyramid_network.ExtraFPNBlock`
before the ``"pool"`` level is appended. The Table 3 baselines, Non-Local (``"nl"``) and CGNL
(``"cgnl"``), go in the same places.

Every context block is residual and the identity at initialisation (the last normalisation's scale
starts at zero), so inserting one into a (pre)trained backbone changes nothing until it learns.

Nothing here forks torchvision's detection code: the backbone is a
:class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN` and the detectors are
torchvision's :class:`~torchvision.models.detection.FasterRCNN` / :class:`~torchvision.models.detection.MaskRCNN`.
Offline by default: random initialisation unless ``weights_backbone`` names a local checkpoint (or
``"torchvision"``, which downloads ImageNet weights when asked explicitly).

Example::

    >>> model = mask_rcnn_tiny_fpn_gald(num_classes=5, context="gald").eval()
    >>> out = model([torch.rand(3, 97, 131)])[0]   # {"boxes", "labels", "scores", "masks"}
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from gald.config import check_choice, lookup

from .backbones import resnet50, resnet101, tiny_resnet
from .context import CGNL2d, NonLocal2d
from .heads import GALDBlock
from .layers import NormLayer

__all__ = [
    "CONTEXTS",
    "PLACEMENTS",
    "DETECTORS",
    "ResidualGALD",
    "ContextOnP5",
    "build_context_block",
    "SeededSampler",
    "sampling_seeds",
    "resnet_fpn_backbone",
    "faster_rcnn_fpn",
    "mask_rcnn_fpn",
    "faster_rcnn_resnet50_fpn_gald",
    "faster_rcnn_resnet101_fpn_gald",
    "faster_rcnn_tiny_fpn_gald",
    "mask_rcnn_resnet50_fpn_gald",
    "mask_rcnn_resnet101_fpn_gald",
    "mask_rcnn_tiny_fpn_gald",
    "build_detector",
    "context_block",
    "context_parameters",
]

CONTEXTS = ("none", "nl", "cgnl", "gald")
PLACEMENTS = ("c5", "p5")
_LAYERS = ("layer4", "layer3", "layer2", "layer1", "conv1")


class ResidualGALD(nn.Module):
    """GALD (GA then LD, Eq. 1–2) as a residual insertion: ``x + BN(W · GALD(x))``.

    The segmentation head uses GALD between two convolutions; inside a backbone the block has to
    leave the features it is given usable, so its output goes through a 1×1 projection and a
    normalisation whose scale starts at zero, and is added to the input (identity at init, like the
    Non-Local and CGNL blocks it is compared with in Table 3).

    Args:
        channels: input and output channels.
        ga: GA module name (``"cgnl"``, ``"nl"``, ...) used inside GALD.
        d: LD downsampling rate (Eq. 1).
        norm_layer: normalisation of the block and of the output.
        zero_init: zero the output normalisation's scale (identity at init).
        **block_kwargs: more :class:`~gald.models.heads.GALDBlock` arguments.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        channels: int,
        *,
        ga: str = "cgnl",
        d: int = 8,
        norm_layer: NormLayer = nn.BatchNorm2d,
        zero_init: bool = True,
        **block_kwargs,
    ) -> None:
        super().__init__()
        self.block = GALDBlock(channels, arrangement="gald", ga=ga, d=d, norm_layer=norm_layer, **block_kwargs)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = norm_layer(channels)
        if zero_init:
            nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.proj(self.block(x)))


def build_context_block(
    context: str,
    channels: int,
    *,
    ga: str = "cgnl",
    d: int = 8,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init: bool = True,
) -> nn.Module | None:
    """The residual context block of Table 3: ``"nl"``, ``"cgnl"``, ``"gald"``; ``"none"`` gives ``None``.

    Args:
        context: one of :data:`CONTEXTS`.
        channels: channels of the feature it refines.
        ga: the GA module inside GALD.
        d: LD downsampling rate.
        norm_layer: normalisation callable.
        zero_init: start as the identity.

    Shape:
        (N, C, H, W) -> (N, C, H, W)
    """
    check_choice("context", context, CONTEXTS)
    if context == "none":
        return None
    if context == "nl":
        block = NonLocal2d(channels, norm_layer=norm_layer)
        if not zero_init:
            nn.init.ones_(block.norm.weight)
        return block
    if context == "cgnl":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // 2) % g == 0)
        return CGNL2d(channels, groups=groups, norm_layer=norm_layer, zero_init=zero_init)
    return ResidualGALD(channels, ga=ga, d=d, norm_layer=norm_layer, zero_init=zero_init)


class ContextOnP5(ExtraFPNBlock):
    """Refine the coarsest FPN output with a context block, then append ``"pool"`` (stride-2 subsample).

    The ``placement="p5"`` alternative: the block sees FPN's P5 instead of the backbone's C5, so the
    top-down pathway does not carry its output. Without a block it is torchvision's
    :class:`~torchvision.ops.feature_pyramid_network.LastLevelMaxPool`.

    Args:
        block: a ``(N, C, H, W) -> (N, C, H, W)`` module with ``C`` the FPN width.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(
        self, results: list[torch.Tensor], x: list[torch.Tensor], names: list[str]
    ) -> tuple[list[torch.Tensor], list[str]]:
        results = list(results)
        results[-1] = self.block(results[-1])
        names = [*names, "pool"]
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results, names


def _trunk(
    backbone: str,
    *,
    weights_backbone: str | os.PathLike | None,
    norm_layer: NormLayer,
    depths: Sequence[int] | None,
    widths: Sequence[int] | None,
) -> nn.Module:
    if backbone == "resnet50":
        return resnet50(output_stride=32, pretrained=weights_backbone, norm_layer=norm_layer)
    if backbone == "resnet101":
        return resnet101(output_stride=32, pretrained=weights_backbone, norm_layer=norm_layer)
    if backbone == "tiny":
        kwargs = {}
        if depths is not None:
            kwargs["depths"] = tuple(depths)
        if widths is not None:
            kwargs["widths"] = tuple(widths)
        return tiny_resnet(output_stride=32, pretrained=weights_backbone, norm_layer=norm_layer, **kwargs)
    check_choice("detection backbone", backbone, ("resnet50", "resnet101", "tiny"))


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` by a ``FrozenBatchNorm2d`` holding the same statistics and affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def resnet_fpn_backbone(
    *,
    backbone: str = "resnet50",
    context: str = "gald",
    placement: str = "c5",
    ga: str = "cgnl",
    d: int = 8,
    weights_backbone: str | os.PathLike | None = None,
    trainable_backbone_layers: int | None = None,
    fpn_channels: int = 256,
    depths: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
    context_norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init: bool = True,
) -> BackboneWithFPN:
    """A ResNet + FPN backbone (levels ``0``–``3`` from layer1–4, plus ``"pool"``) with a context block.

    Args:
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"tiny"`` (a slim Bottleneck ResNet for CPU work).
        context: ``"none"`` (baseline), ``"nl"``, ``"cgnl"`` or ``"gald"``.
        placement: ``"c5"`` (end of stage 4, the paper) or ``"p5"`` (on the coarsest FPN level).
        ga: the GA module inside GALD.
        d: LD downsampling rate.
        weights_backbone: local ImageNet checkpoint, ``"torchvision"`` (downloads), or ``None``.
        trainable_backbone_layers: 0–5 trunk stages left trainable, counted from layer4, as
            torchvision's argument; default 3 with ``weights_backbone`` else 5. The context block is
            new, so it is always trainable.
        fpn_channels: FPN width.
        depths, widths: stage depths and bottleneck widths of the tiny backbone.
        context_norm_layer: normalisation of the context block. The trunk uses
            ``FrozenBatchNorm2d`` when it starts from ImageNet weights and ``BatchNorm2d`` otherwise,
            as torchvision does.
        zero_init: start the context block as the identity.

    Shape:
        (N, 3, H, W) -> {"0": (N, C, H/4, W/4), "1": H/8, "2": H/16, "3": H/32, "pool": H/64}
    """
    check_choice("placement", placement, PLACEMENTS)
    pretrained = weights_backbone is not None
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if pretrained else 5
    if not 0 <= trainable_backbone_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_backbone_layers}")
    body = _trunk(backbone, weights_backbone=weights_backbone, norm_layer=nn.BatchNorm2d, depths=depths, widths=widths)
    if pretrained:  # ImageNet statistics stay fixed, as in torchvision's detectors
        _freeze_batchnorm(body)
    # freeze by name exactly as torchvision's _resnet_fpn_extractor does
    train = list(_LAYERS[:trainable_backbone_layers]) + (["bn1"] if trainable_backbone_layers == 5 else [])
    for name, p in body.named_parameters():
        if not any(name.startswith(layer) for layer in train):
            p.requires_grad_(False)
    in_channels = [body.layer1[-1].conv3.out_channels, body.layer2[-1].conv3.out_channels,
                   body.layer3[-1].conv3.out_channels, body.layer4[-1].conv3.out_channels]
    extra: ExtraFPNBlock = LastLevelMaxPool()
    block_kwargs = dict(ga=ga, d=d, norm_layer=context_norm_layer, zero_init=zero_init)
    if placement == "c5":
        block = build_context_block(context, in_channels[-1], **block_kwargs)
        if block is not None:
            body.layer4 = nn.Sequential(body.layer4, block)  # keeps the name IntermediateLayerGetter needs
    else:
        block = build_context_block(context, fpn_channels, **block_kwargs)
        if block is not None:
            extra = ContextOnP5(block)
    return_layers = {f"layer{i + 1}": str(i) for i in range(4)}
    return BackboneWithFPN(body, return_layers, in_channels, fpn_channels, extra_blocks=extra)


def context_block(backbone: BackboneWithFPN) -> nn.Module | None:
    """The context block of a :func:`resnet_fpn_backbone` (``None`` for the baseline), wherever it sits."""
    layer4 = backbone.body.layer4
    if isinstance(layer4, nn.Sequential) and len(layer4) == 2 and not isinstance(layer4[1], Bottleneck):
        return layer4[1]
    extra = backbone.fpn.extra_blocks
    return extra.block if isinstance(extra, ContextOnP5) else None


def context_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of a detector's context block (empty for the baseline)."""
    block = context_block(model.backbone)
    return list(block.parameters()) if block is not None else []


class SeededSampler(BalancedPositiveNegativeSampler):
    """torchvision's positive / negative sampler (RPN anchors, RoI proposals) that, under
    :func:`sampling_seeds`, draws each image's sample from that image's own seed.

    torchvision draws every image's sample from the global RNG in batch order, so what an image
    samples depends on the images before it: two processes of a DDP step draw differently from one
    process on the concatenated batch, and a resumed run differs from an uninterrupted one unless
    the RNG is restored exactly. Seeded, an image samples the same anchors and RoIs in whatever
    batch, position or process it is. Without seeds it is torchvision's sampler.

    Args:
        batch_size_per_image: samples per image.
        positive_fraction: the largest share of positives.
        stream: 0 for the RPN, 1 for the RoI heads: the two samplers of one image draw differently.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, *, stream: int) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.stream = stream
        self.seeds: list[int] | None = None

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.seeds is None:
            return super().__call__(matched_idxs)
        if len(self.seeds) != len(matched_idxs):
            raise ValueError(f"{len(self.seeds)} sampling seeds for a batch of {len(matched_idxs)} images")
        pos, neg = [], []
        for matched, seed in zip(matched_idxs, self.seeds):
            cuda = [] if not matched.is_cuda else [matched.device.index if matched.device.index is not None
                                                   else torch.cuda.current_device()]
            with torch.random.fork_rng(devices=cuda):  # the global RNG is left as it was
                state = int(np.random.SeedSequence([seed, self.stream]).generate_state(1)[0])
                torch.default_generator.manual_seed(state)
                for index in cuda:
                    torch.cuda.default_generators[index].manual_seed(state)
                (p,), (n,) = super().__call__([matched])
            pos.append(p)
            neg.append(n)
        return pos, neg


@contextmanager
def sampling_seeds(model: nn.Module, seeds: Sequence[int] | None) -> Iterator[None]:
    """While active, the detector's :class:`SeededSampler` s draw image ``i``'s sample from
    ``seeds[i]`` (one per image of the next forward; ``None``: torchvision's global-RNG sampling)."""
    samplers = [s for s in (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler) if isinstance(s, SeededSampler)]
    for s in samplers:
        s.seeds = None if seeds is None else [int(x) for x in seeds]
    try:
        yield
    finally:
        for s in samplers:
            s.seeds = None


def _seeded(sampler: BalancedPositiveNegativeSampler, stream: int) -> SeededSampler:
    return SeededSampler(sampler.batch_size_per_image, sampler.positive_fraction, stream=stream)


def _detector(
    kind: str,
    *,
    backbone: str,
    num_classes: int,
    context: str,
    placement: str,
    ga: str,
    d: int,
    weights_backbone: str | os.PathLike | None,
    trainable_backbone_layers: int | None,
    fpn_channels: int,
    depths: Sequence[int] | None,
    widths: Sequence[int] | None,
    min_size: int,
    max_size: int,
    anchor_sizes: Sequence[int] | None,
    aspect_ratios: Sequence[float],
    representation_size: int,
    mask_channels: int,
    zero_init: bool,
    **kwargs: Any,
) -> FasterRCNN:
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
    body = resnet_fpn_backbone(
        backbone=backbone, context=context, placement=placement, ga=ga, d=d, weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers, fpn_channels=fpn_channels, depths=depths,
        widths=widths, zero_init=zero_init,
    )
    sizes = tuple(anchor_sizes) if anchor_sizes is not None else (32, 64, 128, 256, 512)
    if len(sizes) != 5:
        raise ValueError(f"anchor_sizes needs one size per FPN level (5), got {sizes}")
    anchors = AnchorGenerator(tuple((s,) for s in sizes), (tuple(aspect_ratios),) * len(sizes))
    box_head = TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    common = dict(
        min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors, box_head=box_head,
        box_predictor=FastRCNNPredictor(representation_size, num_classes), **kwargs,
    )
    if kind == "faster":
        model = FasterRCNN(body, **common)
    else:
        mask_head = MaskRCNNHeads(fpn_channels, (mask_channels,) * 4, 1)
        mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, num_classes)
        model = MaskRCNN(body, mask_head=mask_head, mask_predictor=mask_predictor, **common)
    model.rpn.fg_bg_sampler = _seeded(model.rpn.fg_bg_sampler, stream=0)
    model.roi_heads.fg_bg_sampler = _seeded(model.roi_heads.fg_bg_sampler, stream=1)
    return model


_DEFAULTS: dict[str, Any] = dict(
    context="gald", placement="c5", ga="cgnl", d=8, weights_backbone=None, trainable_backbone_layers=None,
    fpn_channels=256, depths=None, widths=None, min_size=800, max_size=1333, anchor_sizes=None,
    aspect_ratios=(0.5, 1.0, 2.0), representation_size=1024, mask_channels=256, zero_init=True,
)
_TINY_DEFAULTS: dict[str, Any] = dict(
    _DEFAULTS, fpn_channels=64, depths=(1, 1, 2, 1), widths=(16, 32, 64, 96), min_size=128, max_size=256,
    anchor_sizes=(8, 16, 32, 64, 128), aspect_ratios=(0.5, 1.0, 2.0, 4.0), representation_size=256,
    mask_channels=64, d=4,
    # fewer proposals and RoI samples than torchvision's defaults: small images with ~14 objects
    # each, and a CPU budget of about half a second per batch of 4
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=150, box_batch_size_per_image=128, box_detections_per_img=50,
)


def faster_rcnn_fpn(*, backbone: str = "resnet50", num_classes: int = 91, **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN + FPN with a context block; keyword arguments as :func:`resnet_fpn_backbone` plus
    ``min_size``, ``max_size``, ``anchor_sizes`` (one per level), ``aspect_ratios``,
    ``representation_size`` and any :class:`~torchvision.models.detection.FasterRCNN` argument.

    ``num_classes`` includes the background (21 for VOC, 91 for COCO's category ids).
    """
    defaults = _TINY_DEFAULTS if backbone == "tiny" else _DEFAULTS
    return _detector("faster", backbone=backbone, num_classes=num_classes, **{**defaults, **kwargs})


def mask_rcnn_fpn(*, backbone: str = "resnet50", num_classes: int = 91, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN + FPN with a context block; arguments as :func:`faster_rcnn_fpn` plus ``mask_channels``."""
    defaults = _TINY_DEFAULTS if backbone == "tiny" else _DEFAULTS
    return _detector("mask", backbone=backbone, num_classes=num_classes, **{**defaults, **kwargs})


def faster_rcnn_resnet50_fpn_gald(*, num_classes: int = 21, context: str = "gald", placement: str = "c5",
                                  **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN, ResNet-50 + FPN, GALD at the end of stage 4 (Table 3(a), VOC: 21 classes)."""
    return faster_rcnn_fpn(backbone="resnet50", num_classes=num_classes, context=context, placement=placement, **kwargs)


def faster_rcnn_resnet101_fpn_gald(*, num_classes: int = 21, context: str = "gald", placement: str = "c5",
                                   **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN, ResNet-101 + FPN, GALD at the end of stage 4 (Table 3(a), Table 6)."""
    return faster_rcnn_fpn(backbone="resnet101", num_classes=num_classes, context=context, placement=placement, **kwargs)


def faster_rcnn_tiny_fpn_gald(*, num_classes: int = 5, context: str = "gald", placement: str = "c5",
                              **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN on the tiny CPU ResNet + FPN (the embedded scene benchmark: 4 things + background)."""
    return faster_rcnn_fpn(backbone="tiny", num_classes=num_classes, context=context, placement=placement, **kwargs)


def mask_rcnn_resnet50_fpn_gald(*, num_classes: int = 91, context: str = "gald", placement: str = "c5",
                                **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN, ResNet-50 + FPN, GALD at the end of stage 4 (Table 3(b), COCO)."""
    return mask_rcnn_fpn(backbone="resnet50", num_classes=num_classes, context=context, placement=placement, **kwargs)


def mask_rcnn_resnet101_fpn_gald(*, num_classes: int = 91, context: str = "gald", placement: str = "c5",
                                 **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN, ResNet-101 + FPN, GALD at the end of stage 4 (Table 3(b), COCO)."""
    return mask_rcnn_fpn(backbone="resnet101", num_classes=num_classes, context=context, placement=placement, **kwargs)


def mask_rcnn_tiny_fpn_gald(*, num_classes: int = 5, context: str = "gald", placement: str = "c5",
                            **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN on the tiny CPU ResNet + FPN (the embedded scene benchmark)."""
    return mask_rcnn_fpn(backbone="tiny", num_classes=num_classes, context=context, placement=placement, **kwargs)


DETECTORS = {
    "faster_rcnn_resnet50_fpn_gald": faster_rcnn_resnet50_fpn_gald,
    "faster_rcnn_resnet101_fpn_gald": faster_rcnn_resnet101_fpn_gald,
    "faster_rcnn_tiny_fpn_gald": faster_rcnn_tiny_fpn_gald,
    "mask_rcnn_resnet50_fpn_gald": mask_rcnn_resnet50_fpn_gald,
    "mask_rcnn_resnet101_fpn_gald": mask_rcnn_resnet101_fpn_gald,
    "mask_rcnn_tiny_fpn_gald": mask_rcnn_tiny_fpn_gald,
}


def build_detector(config: dict[str, Any]) -> FasterRCNN:
    """Build a detector from ``{"arch": name, **kwargs}``; the config is kept as ``model.config``.

    An unknown ``arch`` raises :class:`~gald.config.UnknownChoiceError` listing the valid names.
    """
    config = dict(config)
    arch = config.pop("arch", None)
    builder = lookup("detector arch", arch, DETECTORS)
    model = builder(**config)
    model.config = {"arch": arch, **config}
    return model
