"""The authors' GALD-Net weights (github.com/lxtGH/GALD-Net) in ``gald`` official mode, and back.

The authors' ``libs/models/GALDNet.py`` and ``gald`` in ``mode="official"`` are the same network;
only the names of the head's modules differ (the backbone keys are identical up to a ``backbone.``
prefix). The mapping is one table of key prefixes, read in one direction or the other.
:func:`convert` writes a ``gald`` checkpoint (``{"model", "config", "classes", ...}``) that
``gald.models.load_model`` and ``python -m gald.evaluate`` read (``python -m gald.convert_official``
on the command line); the input is never overwritten.
"""

from __future__ import annotations

import logging
import os

import torch

from gald.config import check_choice
from gald.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from gald.engine.checkpoint import save_checkpoint
from gald.errors import CheckpointError
from gald.files import check_output
from gald.models import MODELS, load_state_dict_checked
from gald.models.state_dict import read_weights_file

# the name of the command's log (``python -m gald.convert_official``), kept when this moved here
log = logging.getLogger("gald.convert_official")

__all__ = ["OFFICIAL_ARCHS", "NotOfficialWeightsError", "official_to_gald", "gald_to_official", "official_arch", "load_official", "convert"]

# (authors' key prefix, gald key prefix): one table for both directions; the longest prefix wins.
PREFIXES = [
    ("head.conva.", "head.conva."),
    ("head.convb.", "head.convb."),
    ("head.a2block.down.", "head.block.ga.down."),
    ("head.a2block.long_relation.gn.", "head.block.ga.ga.norm."),
    ("head.a2block.long_relation.", "head.block.ga.ga."),
    ("head.a2block.local_attention.dconv1.", "head.block.ld.convs.0."),
    ("head.a2block.local_attention.dconv2.", "head.block.ld.convs.1."),
    ("head.a2block.local_attention.dconv3.", "head.block.ld.convs.2."),
    ("head.bottleneck.0.", "head.fuse.0."),
    ("head.bottleneck.1.", "head.fuse.1."),
    ("head.bottleneck.3.", "head.classifier."),
    ("dsn.0.", "aux_head.0.0."),
    ("dsn.1.", "aux_head.0.1."),
    ("dsn.4.", "aux_head.2."),
    *((f"{name}.", f"backbone.{name}.") for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")),
]


#: the networks the authors released weights for
OFFICIAL_ARCHS = ("gald_resnet50", "gald_resnet101")


class NotOfficialWeightsError(CheckpointError, KeyError):
    """A state dict whose keys are not those of the authors' GALD-Net (a ``KeyError``, as before)."""


def _rename(state: dict[str, torch.Tensor], pairs: list[tuple[str, str]], what: str) -> dict[str, torch.Tensor]:
    pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)
    out, unknown = {}, []
    for key, value in state.items():
        match = next(((old, new) for old, new in pairs if key.startswith(old)), None)
        if match is None:
            unknown.append(key)
        else:
            out[match[1] + key[len(match[0]):]] = value
    if unknown:
        raise KeyError(f"{len(unknown)} {what} keys have no counterpart: {', '.join(unknown[:8])}")
    return out


def official_to_gald(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an authors' GALD-Net state dict to ``gald`` official-mode keys.

    A ``module.`` prefix (DDP) and a ``state_dict``/``model`` wrapper are removed first.
    """
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return _rename(state, PREFIXES, "GALD-Net")


def gald_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``gald`` official-mode state dict to the authors' keys (stage classifiers excluded)."""
    state = {k: v for k, v in state.items() if not k.startswith(("head.stage_fcn", "head.stage_ga"))}
    return _rename(state, [(new, old) for old, new in PREFIXES], "gald")


def _num_classes(state: dict[str, torch.Tensor]) -> int:
    if "head.classifier.weight" not in state:
        raise KeyError("not a GALD-Net state dict: no classifier 'head.bottleneck.3.weight'")
    return int(state["head.classifier.weight"].shape[0])


def official_arch(state: dict[str, torch.Tensor]) -> str:
    """ResNet-50 or -101 from the number of layer3 blocks (6 or 23) in the authors' state dict."""
    blocks = {int(k.split(".")[1]) for k in (k.removeprefix("module.") for k in state) if k.startswith("layer3.")}
    return "gald_resnet101" if blocks and max(blocks) >= 6 else "gald_resnet50"


def load_official(path: str | os.PathLike, *, arch: str = "gald_resnet101") -> torch.nn.Module:
    """Build ``arch`` in official mode and load the authors' weights from ``path`` (strict).

    The class count comes from the checkpoint; a wrong depth or class count is an error that names
    the first mismatching keys and shapes.
    """
    check_choice("arch", arch, OFFICIAL_ARCHS)
    raw = read_weights_file(path, what="official weights")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{os.fspath(path)!r} is not a state dict (got {type(raw).__name__})")
    try:
        state = official_to_gald(raw)
    except KeyError as err:
        raise NotOfficialWeightsError(
            f"{os.fspath(path)!r} is not the authors' GALD-Net state dict: {err.args[0]} (a gald checkpoint needs "
            "no conversion)"
        ) from None
    aux = any(k.startswith("aux_head.") for k in state)
    model = MODELS[arch](num_classes=_num_classes(state), mode="official", aux=aux)
    load_state_dict_checked(model, state, what=os.fspath(path))
    return model


def convert(src: str, dst: str, *, arch: str, force: bool = False) -> str:
    """Write a ``gald`` checkpoint converted from the authors' weights; never overwrites ``src``."""
    check_output(dst, inputs=[src], force=force, what="output")
    model = load_official(src, arch=arch)
    nc = model.num_classes
    save_checkpoint(
        {
            "model": model.state_dict(),
            "config": {"model": model.config},
            "classes": list(CITYSCAPES_CLASSES) if nc == 19 else [f"class_{i}" for i in range(nc)],
            "palette": [list(c) for c in CITYSCAPES_PALETTE] if nc == 19 else None,
            "source": {"official_checkpoint": os.path.basename(src), "repository": "lxtGH/GALD-Net"},
            # the authors train and test on BGR images minus their per-channel mean (no std scaling)
            "normalization": "bgr_mean",
            "format_version": 1,
        },
        dst,
    )
    log.info("converted %s (%s, %d classes) -> %s", src, arch, nc, dst)
    return dst
