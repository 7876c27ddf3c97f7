"""Host networks: torchvision's segmentation models, built with a GALD block plugged in (:func:`gald.plug`).

A host is trained, saved and loaded by name like gald's own networks: ``build_model({"arch":
"lraspp_mobilenet_v3_large", "block": "gald", ...})`` builds torchvision's model with a plugged
block, its ``config`` records the host and the insertion point, and
:func:`~gald.models.load_model` rebuilds it from a checkpoint. ``block="none"`` plugs the identity:
the plain host, with ``F`` readable and its stage classifier (the baseline arm of a comparison).

=============================== ===================== ==================================
host (``arch``)                 default ``after``     feature ``F`` (output stride)
=============================== ===================== ==================================
``deeplabv3_resnet50`` / ``101`` ``backbone.layer4``   2048 channels, 8 (before ASPP)
``fcn_resnet50`` / ``101``       ``backbone.layer4``   2048 channels, 8
``deeplabv3_mobilenet_v3_large`` ``backbone.16``       960 channels, 16
``lraspp_mobilenet_v3_large``    ``backbone.16``       960 channels, 16 (LRASPP's "high")
=============================== ===================== ==================================

Weights: ``pretrained_backbone=None`` (random, the offline default), ``"torchvision"`` (ImageNet
weights, downloaded only when asked) or a local ImageNet classification checkpoint of the trunk.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn
from torchvision.models import segmentation

from gald.config import check_choice, lookup
from gald.errors import ConfigError, MissingFileError

from .heads import ARRANGEMENTS
from .ld import PAPER_LD
from .plug import plug
from .state_dict import load_state_dict_checked, read_weights_file

__all__ = ["Host", "HOSTS", "host_network", "build_host", "host_options"]


@dataclass(frozen=True)
class Host:
    """A torchvision segmentation builder and where GALD goes in it by default."""

    builder: Callable[..., nn.Module]
    after: str
    aux: bool  # whether the builder has an aux classifier (its "aux" output)


#: The hosts by name; :data:`gald.config.HOST_ARCHS` holds the same names for the config layer (tested).
HOSTS: dict[str, Host] = {
    "deeplabv3_resnet50": Host(segmentation.deeplabv3_resnet50, "backbone.layer4", True),
    "deeplabv3_resnet101": Host(segmentation.deeplabv3_resnet101, "backbone.layer4", True),
    "deeplabv3_mobilenet_v3_large": Host(segmentation.deeplabv3_mobilenet_v3_large, "backbone.16", True),
    "fcn_resnet50": Host(segmentation.fcn_resnet50, "backbone.layer4", True),
    "fcn_resnet101": Host(segmentation.fcn_resnet101, "backbone.layer4", True),
    "lraspp_mobilenet_v3_large": Host(segmentation.lraspp_mobilenet_v3_large, "backbone.16", False),
}


def host_network(
    arch: str,
    *,
    num_classes: int = 21,
    aux: bool | None = None,
    pretrained_backbone: str | os.PathLike | None = None,
) -> nn.Module:
    """torchvision's ``arch`` as torchvision builds it, nothing plugged (offline unless asked).

    Args:
        arch: a name in :data:`HOSTS`.
        num_classes: output classes.
        aux: build the host's aux classifier (``None``: when the host has one).
        pretrained_backbone: ``None``, ``"torchvision"`` (downloads) or a local ImageNet checkpoint.
    """
    host = lookup("host", arch, HOSTS)
    aux = host.aux if aux is None else aux
    if aux and not host.aux:
        raise ConfigError(f"{arch} has no aux classifier; set aux false (aux_weight 0 in a training config)")
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes,
                              "weights_backbone": "DEFAULT" if pretrained_backbone == "torchvision" else None}
    if host.aux:
        kwargs["aux_loss"] = aux
    model = host.builder(**kwargs)
    if pretrained_backbone not in (None, "torchvision"):
        _load_trunk(model.backbone, pretrained_backbone)
    return model


def build_host(
    arch: str,
    *,
    num_classes: int = 21,
    aux: bool | None = None,
    after: str | None = None,
    block: str = "gald",
    ga: str = "cgnl",
    d: int = 8,
    ld_downsample: str = "dwconv",
    ld_last_norm: bool | None = None,
    ld_init: str | None = None,
    ga_downsample: bool = True,
    ga_kwargs: dict | None = None,
    stage_classifiers: bool = False,
    pretrained_backbone: str | os.PathLike | None = None,
    input_size: tuple[int, int] | list[int] = (224, 224),
) -> nn.Module:
    """:func:`host_network` with a GALD block plugged in (see the module docstring).

    Args:
        arch: a name in :data:`HOSTS`.
        num_classes: output classes.
        aux: build the host's aux classifier (``None``: when the host has one).
        after: insertion point (``None``: the host's default, :attr:`Host.after`).
        block: arrangement of the plugged block (:data:`~gald.models.ARRANGEMENTS`; ``"none"``: the host).
        ga, d, ld_downsample, ga_downsample, ga_kwargs: as :func:`gald.plug`.
        ld_last_norm, ld_init: LD's design (``None``: paper mode's, :data:`~gald.models.ld.PAPER_LD`).
        stage_classifiers: 1×1 classifiers on ``F`` and ``F_GA`` (Fig. 5).
        pretrained_backbone: ``None``, ``"torchvision"`` (downloads) or a local ImageNet checkpoint.
        input_size: of the dry run that reads the insertion point's channels.

    Returns:
        The host module with ``config`` (what checkpoints record) set; ``config["after"]`` is the
        insertion point used.
    """
    check_choice("block", block, ARRANGEMENTS)
    model = host_network(arch, num_classes=num_classes, aux=aux, pretrained_backbone=pretrained_backbone)
    aux = HOSTS[arch].aux if aux is None else aux
    after = HOSTS[arch].after if after is None else after
    ld_last_norm = PAPER_LD["last_norm"] if ld_last_norm is None else ld_last_norm
    ld_init = PAPER_LD["init"] if ld_init is None else ld_init
    plug(model, after, ga=ga, arrangement=block, d=d, ga_kwargs=ga_kwargs, ga_downsample=ga_downsample,
         ld_downsample=ld_downsample, ld_last_norm=ld_last_norm, ld_init=ld_init,
         stage_classifiers=stage_classifiers, num_classes=num_classes, input_size=tuple(input_size))
    model.config = {
        "arch": arch, "num_classes": num_classes, "aux": aux, "after": after, "block": block, "ga": ga, "d": d,
        "ld_downsample": ld_downsample, "ld_last_norm": ld_last_norm, "ld_init": ld_init,
        "ga_downsample": ga_downsample, "ga_kwargs": ga_kwargs, "stage_classifiers": stage_classifiers,
        "pretrained_backbone": None if pretrained_backbone is None else os.fspath(pretrained_backbone),
        "input_size": list(input_size),
    }
    return model


def host_options() -> set[str]:
    """The keyword options of :func:`build_host` (beyond ``arch``)."""
    return {n for n, p in inspect.signature(build_host).parameters.items() if p.kind is p.KEYWORD_ONLY}


def _load_trunk(backbone: nn.Module, source: str | os.PathLike) -> None:
    """Load an ImageNet classification checkpoint (torchvision's key names) into a host's trunk."""
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise MissingFileError(f"backbone checkpoint not found: {path!r}; pass a local file, 'torchvision' "
                               "(downloads ImageNet weights) or None (random initialisation)")
    state = read_weights_file(path, what="backbone checkpoint")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    # torchvision's classifiers: ResNet's trunk keys as they are, MobileNet's under "features."
    state = {k.removeprefix("module.").removeprefix("features."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    load_state_dict_checked(backbone, state, what=f"backbone checkpoint {path!r}")
