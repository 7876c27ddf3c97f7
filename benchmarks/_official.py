"""Helpers shared by the benchmarks that run the authors' network beside ``gald``.

The authors' code (github.com/lxtGH/GALD-Net, ``libs/models/GALDNet.py``) is imported at run time
from a checkout whose path the user gives on the command line; nothing of it is copied here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from types import ModuleType

import torch
from torch import nn

from gald.convert_official import official_to_gald
from gald.models import MODELS, GALDNet, load_state_dict_checked

__all__ = ["ARCHS", "authors_module", "randomise", "build_authors", "build_pair"]

# gald builder name -> the authors' builder name in GALDNet.py
ARCHS = {"gald_resnet50": "GALD_res50", "gald_resnet101": "GALD_res101"}


def authors_module(repo: str) -> ModuleType:
    """Import ``repo/libs/models/GALDNet.py`` (a checkout of github.com/lxtGH/GALD-Net)."""
    path = os.path.join(repo, "libs", "models", "GALDNet.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: pass a checkout of github.com/lxtGH/GALD-Net as --official-repo")
    spec = importlib.util.spec_from_file_location("authors_galdnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise(model: nn.Module, seed: int) -> None:
    """Random norm affine parameters and BatchNorm running statistics (a trained-looking model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def build_authors(
    authors: ModuleType, arch: str, seed: int = 0, num_classes: int = 19, *, random_stats: bool = True
) -> nn.Module:
    """The authors' network for ``arch`` with seeded random weights (and, with ``random_stats``,
    random norm parameters and BatchNorm statistics; leave it off on the meta device).

    The constructor's ``print`` warnings are swallowed.
    """
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = getattr(authors, ARCHS[arch])(num_classes)
    if random_stats:
        randomise(model, seed)
    return model


def build_pair(authors: ModuleType, arch: str, seed: int = 0, num_classes: int = 19) -> tuple[nn.Module, GALDNet]:
    """The authors' network and ``gald``'s official mode with the same (converted) weights."""
    theirs = build_authors(authors, arch, seed, num_classes)
    ours = MODELS[arch](num_classes=num_classes, mode="official")
    load_state_dict_checked(ours, official_to_gald(theirs.state_dict()), what="converted authors' weights")
    return theirs, ours
