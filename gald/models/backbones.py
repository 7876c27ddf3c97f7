"""Dilated ResNet backbones (output stride 8 or 16) built from torchvision's ``Bottleneck``.

One class covers every backbone the project uses:

* ResNet-50/101 in *paper mode* — torchvision's conventions: a 7×7 stem, and
  ``replace_stride_with_dilation`` semantics (the first block of a dilated stage keeps the previous
  dilation, "contraction"). State-dict keys and outputs equal
  ``torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])``.
* ResNet-50/101 in *official mode* — the authors' ``libs/models/GALDNet.py``: a deep 3×3 stem
  (64-64-128), ``maxpool(ceil_mode=True)``, every block of a dilated stage at the full dilation (no
  contraction) and multi-grid (1, 2, 4) in layer4. Key names equal the authors' ones.
* Tiny Bottleneck ResNets with any widths and depths, for CPU work and tests (torchvision's
  ``BasicBlock`` refuses dilation, so tiny nets use ``Bottleneck`` too).

Nothing is ever downloaded unless ``pretrained="torchvision"`` is asked for explicitly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, conv1x1

from gald.config import FIDELITY_MODES, OUTPUT_STRIDES, check_choice, lookup
from gald.errors import MissingFileError

from .layers import NormLayer
from .state_dict import load_state_dict_checked, read_weights_file

log = logging.getLogger(__name__)

STAGES = ("layer1", "layer2", "layer3", "layer4")

__all__ = ["STAGES", "ResNetBackbone", "resnet50", "resnet101", "tiny_resnet", "BACKBONES", "build_backbone"]


class ResNetBackbone(nn.Module):
    """A ResNet trunk (stem + layer1–4, no classifier) that returns layer3 and layer4 features.

    Args:
        depths: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        widths: bottleneck widths per stage; each stage outputs ``4 * width`` channels.
        output_stride: 8 (layer3 and layer4 dilated) or 16 (layer4 dilated) or 32.
        stem: ``"standard"`` (7×7 conv, torchvision) or ``"deep"`` (three 3×3 convs, authors).
        stem_channels: channels after the stem (64 standard, 128 for the authors' deep stem).
        contract_dilation: the first block of a dilated stage uses the previous stage's dilation
            (torchvision); ``False`` uses the full dilation in every block (authors).
        multi_grid: per-block dilation multipliers of layer4, cycled (authors: ``(1, 2, 4)``).
        maxpool_ceil_mode: ``ceil_mode`` of the stem max-pool (authors: ``True``).
        norm_layer: normalisation callable, e.g. ``nn.BatchNorm2d`` or ``FrozenBatchNorm2d``.

    Shape:
        (N, 3, H, W) -> {"layer3": (N, 4·widths[2], H/os, W/os), "layer4": (N, 4·widths[3], H/os, W/os)}
        at output stride 8 or 16 (sizes rounded as the strided convs round them).
    """

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        output_stride: int = 8,
        stem: str = "standard",
        stem_channels: int = 64,
        contract_dilation: bool = True,
        multi_grid: Sequence[int] = (1,),
        maxpool_ceil_mode: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(widths) != 4:
            raise ValueError(f"depths and widths need 4 entries (one per stage), got {depths} and {widths}")
        check_choice("output_stride", output_stride, OUTPUT_STRIDES)
        if stem not in ("standard", "deep"):
            raise ValueError(f"stem must be 'standard' or 'deep', got {stem!r}")
        self._norm_layer = norm_layer
        self.inplanes = stem_channels
        self.dilation = 1
        self.output_stride = output_stride

        if stem == "standard":
            self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            mid = stem_channels // 2
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, mid, 3, stride=2, padding=1, bias=False),
                norm_layer(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, padding=1, bias=False),
                norm_layer(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, stem_channels, 3, padding=1, bias=False),
            )
        self.bn1 = norm_layer(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=maxpool_ceil_mode)

        dilate3 = output_stride == 8
        dilate4 = output_stride in (8, 16)
        self.layer1 = self._make_layer(widths[0], depths[0], 1, False, contract_dilation, (1,))
        self.layer2 = self._make_layer(widths[1], depths[1], 2, False, contract_dilation, (1,))
        self.layer3 = self._make_layer(widths[2], depths[2], 2, dilate3, contract_dilation, (1,))
        self.layer4 = self._make_layer(widths[3], depths[3], 2, dilate4, contract_dilation, multi_grid)
        self.channels = {"layer3": widths[2] * Bottleneck.expansion, "layer4": widths[3] * Bottleneck.expansion}

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self,
        planes: int,
        blocks: int,
        stride: int,
        dilate: bool,
        contract: bool,
        multi_grid: Sequence[int],
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                norm_layer(planes * Bottleneck.expansion),
            )
        # torchvision contracts: block 0 of a dilated stage keeps the previous dilation.
        dilations = [self.dilation * multi_grid[i % len(multi_grid)] for i in range(blocks)]
        if contract:
            dilations[0] = previous_dilation
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=dilations[0], norm_layer=norm_layer)]
        self.inplanes = planes * Bottleneck.expansion
        for i in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes, dilation=dilations[i], norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer3(self.layer2(self.layer1(x)))
        c4 = self.layer4(c3)
        return {"layer3": c3, "layer4": c4}


def _resnet(
    depths: Sequence[int],
    *,
    output_stride: int,
    mode: str,
    pretrained: str | os.PathLike | None,
    norm_layer: NormLayer,
    torchvision_name: str,
) -> ResNetBackbone:
    if mode == "paper":
        net = ResNetBackbone(depths=depths, output_stride=output_stride, norm_layer=norm_layer)
    elif mode == "official":
        net = ResNetBackbone(
            depths=depths,
            output_stride=output_stride,
            stem="deep",
            stem_channels=128,
            contract_dilation=False,
            multi_grid=(1, 2, 4),
            maxpool_ceil_mode=True,
            norm_layer=norm_layer,
        )
    else:
        check_choice("mode", mode, FIDELITY_MODES)
    if pretrained is not None:
        load_backbone_weights(net, pretrained, torchvision_name=torchvision_name)
    return net


def resnet50(
    *,
    output_stride: int = 8,
    mode: str = "paper",
    pretrained: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """Dilated ResNet-50 trunk. ``pretrained``: a local checkpoint path, ``"torchvision"`` (downloads
    ImageNet weights, paper mode only), or ``None`` (random init, the default)."""
    return _resnet(
        (3, 4, 6, 3),
        output_stride=output_stride,
        mode=mode,
        pretrained=pretrained,
        norm_layer=norm_layer,
        torchvision_name="resnet50",
    )


def resnet101(
    *,
    output_stride: int = 8,
    mode: str = "paper",
    pretrained: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """Dilated ResNet-101 trunk; arguments as :func:`resnet50`."""
    return _resnet(
        (3, 4, 23, 3),
        output_stride=output_stride,
        mode=mode,
        pretrained=pretrained,
        norm_layer=norm_layer,
        torchvision_name="resnet101",
    )


def tiny_resnet(
    *,
    depths: Sequence[int] = (1, 1, 1, 1),
    widths: Sequence[int] = (8, 16, 32, 64),
    output_stride: int = 8,
    mode: str = "paper",
    pretrained: str | os.PathLike | None = None,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> ResNetBackbone:
    """A slim Bottleneck ResNet for CPU work; ``mode`` switches the same conventions as ResNet-50."""
    stem_channels = widths[0] * (2 if mode == "official" else 1)
    official = mode == "official"
    if mode not in ("paper", "official"):
        raise ValueError(f"mode must be 'paper' or 'official', got {mode!r}")
    net = ResNetBackbone(
        depths=depths,
        widths=widths,
        output_stride=output_stride,
        stem="deep" if official else "standard",
        stem_channels=stem_channels,
        contract_dilation=not official,
        multi_grid=(1, 2, 4) if official else (1,),
        maxpool_ceil_mode=official,
        norm_layer=norm_layer,
    )
    if pretrained is not None:
        load_backbone_weights(net, pretrained, torchvision_name=None)
    return net


BACKBONES = {"resnet50": resnet50, "resnet101": resnet101, "tiny": tiny_resnet}


def build_backbone(name: str, **kwargs) -> ResNetBackbone:
    """Build a backbone by name; an unknown name raises :class:`~gald.config.UnknownChoiceError`."""
    return lookup("backbone", name, BACKBONES)(**kwargs)


def load_backbone_weights(
    net: ResNetBackbone, source: str | os.PathLike, *, torchvision_name: str | None
) -> None:
    """Load ImageNet weights into ``net`` from a local file or, only if asked, from torchvision.

    The classifier (``fc.*``) of an ImageNet checkpoint is dropped; any other missing or unexpected
    key is an error that names the keys.
    """
    if str(source) == "torchvision":
        if torchvision_name is None:
            raise ValueError("torchvision has no ImageNet weights for the tiny backbones")
        if net.conv1.__class__ is not nn.Conv2d:
            raise ValueError("torchvision weights fit the standard 7x7 stem (paper mode) only")
        from torchvision.models import get_model_weights

        weights = get_model_weights(torchvision_name).DEFAULT
        log.info("downloading torchvision weights %s (explicitly requested)", weights)
        state = weights.get_state_dict(progress=True)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise MissingFileError(
                f"backbone checkpoint not found: {path!r}; pass a local file, 'torchvision' "
                "(downloads ImageNet weights) or None (random initialisation)"
            )
        state = read_weights_file(path, what="backbone checkpoint")
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_state_dict_checked(net, state, what="backbone")
