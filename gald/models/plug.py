"""GALD as a plug-in: a GA + LD block after any module of any network (abstract; Sec. 3.2, Eq. 1–2).

The paper's abstract says GALD "can be easily plugged into existing FCNs". :func:`plug` does that
to a built model, without editing its code::

    >>> from torchvision.models.segmentation import deeplabv3_resnet50
    >>> model = gald.plug(deeplabv3_resnet50(weights=None, weights_backbone=None), after="backbone.layer4")
    >>> model.eval()(torch.rand(1, 3, 97, 97))["out"].shape
    torch.Size([1, 21, 97, 97])

What it does:

* a dry run on zeros at ``input_size`` (in eval mode, without gradients; free on the meta device)
  reads the channels ``C`` of the feature ``F`` that the module named ``after`` returns, checks that
  it runs once and returns a feature map (N, C, H, W), and reads the host's classes; where
  the square input's H = W does not already show the layout, a second run at a larger size tells
  the channel axis from a spatial one;
* a :class:`GALDInsert` holding a :class:`~gald.models.GALDBlock` of ``C`` channels is added to the
  model as the child ``gald`` — the host's state-dict keys stay as they were, the block's are added
  under ``gald.``;
* a forward hook on ``after`` replaces ``F`` by the block's output. For the paper's arrangement that
  is ``F_GALD = M ⊙ F_GA + F_GA`` with ``F_GA = GA(F)`` (Eq. 1–2), the same shape as ``F``. Eq. 3's
  concatenation with ``F`` belongs to GALD's own head (:class:`~gald.models.GALDHead`), not to the plug.

The model stays an ordinary ``nn.Module`` of its own class: it trains, saves and loads as before.
:mod:`gald.models.inspection` reads ``F``, ``F_GA``, ``M`` and ``F_GALD`` of plugged models through
the same hook, so the mask views, :func:`~gald.metrics.ld_effect.ld_intervention`, Grad-CAM and the
stage classifiers work on them as on :class:`~gald.models.GALDNet`.

To use a host's own GA module (DeepLabv3's ASPP, PSPNet's pyramid), plug ``arrangement="ld"`` after
it: ``F_GA`` is then that module's output.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gald.config import check_choice
from gald.errors import GaldError, PlugError

from .heads import ARRANGEMENTS, GALDBlock
from .layers import NormLayer
from .ld import PAPER_LD

__all__ = ["GALDInsert", "plug", "inserts", "PLUG_NAME"]

log = logging.getLogger(__name__)

#: The name of the plugged block in the host (``model.gald``; ``gald_2``, ... for more blocks).
PLUG_NAME = "gald"


class GALDInsert(nn.Module):
    """A :class:`~gald.models.GALDBlock` that runs on the output of one module of a host network.

    The host runs it from a forward hook on the module named :attr:`after` (see :func:`plug`).
    Called as a module, the insert passes its input through unchanged: it is a child of the host's
    root, and a root that runs its children in order (``nn.Sequential``) must not apply it a second
    time. Apply the block to a tensor with :attr:`block`.

    Args:
        channels: channels of the feature ``F`` at ``after``.
        after: dotted name of the host module whose output is ``F``.
        num_classes: classes of the host's output, if known (needed by ``stage_classifiers``).
        stage_classifiers: 1×1 classifiers on ``F`` and ``F_GA`` (Sec. 4.3.1, Fig. 5); they are
            trained separately on the frozen model and do not change the host's output.
        **block_kwargs: passed to :class:`~gald.models.GALDBlock` (``arrangement``, ``ga``, ``d``, ...).

    Shape:
        the block's: (N, C, H, W) -> (N, C, H, W)
    """

    def __init__(
        self,
        channels: int,
        *,
        after: str,
        num_classes: int | None = None,
        stage_classifiers: bool = False,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        if stage_classifiers and not num_classes:
            raise ValueError("stage_classifiers need num_classes")
        self.after = after
        self.channels = channels
        self.num_classes = num_classes
        # Taps: hooks on these (Grad-CAM's) see F before the block and F_GALD after it, even though
        # the block itself runs inside the hook on ``after``.
        self.feature = nn.Identity()
        self.block = GALDBlock(channels, **block_kwargs)
        self.output = nn.Identity()
        self.stage_fcn = self.stage_ga = None
        if stage_classifiers:
            self.stage_fcn = nn.Conv2d(channels, num_classes, 1)
            if self.block.ga is not None:
                self.stage_ga = nn.Conv2d(channels, num_classes, 1)
        self._record: dict[str, torch.Tensor | None] | None = None  # set while inspection reads the stages

    @property
    def arrangement(self) -> str:
        return self.block.arrangement

    def extra_repr(self) -> str:
        return f"after={self.after!r}, channels={self.channels}, arrangement={self.arrangement!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # see the class docstring: the block runs from the hook

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """The forward hook on :attr:`after`: ``F`` → the block's output (``F_GALD`` for GALD)."""
        f = self.feature(output)
        if self._record is None:
            return self.output(self.block(f))
        t = self.block.forward_intermediates(f)
        record = {
            "F": f, **t,
            "logits_fcn": self.stage_fcn(f) if self.stage_fcn is not None else None,
            "logits_ga": self.stage_ga(t["F_GA"]) if self.stage_ga is not None and t["F_GA"] is not None else None,
        }
        # copies: the host may change F or the block's output in place after this point (``x += identity``)
        self._record.update({k: None if v is None else v.clone() for k, v in record.items()})
        return self.output(t["F_GALD"])


def inserts(model: nn.Module) -> dict[str, GALDInsert]:
    """The GALD blocks plugged into ``model``, by their name in it (``{"gald": ...}``; empty if none)."""
    return {name: m for name, m in model.named_children() if isinstance(m, GALDInsert)}


#: Leaves that the library's conversions replace by new modules (which would lose the hook).
_REPLACED = (nn.Conv2d, nn.modules.batchnorm._BatchNorm)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for a dry run, then every module's own mode back (a frozen BatchNorm stays frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def plug(
    model: nn.Module,
    after: str,
    *,
    ga: str | type[nn.Module] = "cgnl",
    arrangement: str = "gald",
    d: int = 8,
    ga_kwargs: dict | None = None,
    ga_downsample: bool = True,
    ld_downsample: str = "dwconv",
    ld_last_norm: bool = PAPER_LD["last_norm"],
    ld_init: str = PAPER_LD["init"],
    stage_classifiers: bool = False,
    num_classes: int | None = None,
    input_size: Sequence[int] = (224, 224),
    in_channels: int = 3,
    norm_layer: NormLayer = nn.BatchNorm2d,
    align_corners: bool = False,
    allow_multiple: bool = False,
) -> nn.Module:
    """Insert a GALD block after the module ``after`` of ``model`` (in place) and return ``model``.

    Args:
        model: any network: a torchvision or timm model, a backbone, a user's module tree.
        after: dotted module name (as in ``model.named_modules()``) whose output ``F`` is a feature
            map (N, C, H, W); the block's output replaces it.
        ga: GA module: a name in :data:`~gald.models.GA_MODULES` or a class (Sec. 3.2, Table 1(a)).
        arrangement: one of :data:`~gald.models.ARRANGEMENTS`; ``"gald"`` is Eq. 1–2.
        d: LD's downsampling rate (Eq. 1), a power of two.
        ga_kwargs: extra keyword arguments of the GA module.
        ga_downsample: the stride-2 depth-wise conv before GA (Sec. 3.2).
        ld_downsample: ``"dwconv"``, ``"bilinear"`` or ``"avgpool"`` (Table 1(e)).
        ld_last_norm: normalise LD's last depth-wise conv (paper mode's choice by default).
        ld_init: initialisation of LD's depth-wise convs (paper mode's choice by default).
        stage_classifiers: 1×1 classifiers on ``F`` and ``F_GA`` (Fig. 5).
        num_classes: the host's classes; read from its output (``out``, or the tensor it returns)
            when stage classifiers need it and it is not given.
        input_size: ``(H, W)`` of the dry run that reads the channels.
        in_channels: image channels of the dry run.
        norm_layer: normalisation callable of the block.
        align_corners: of the block's bilinear resizes.
        allow_multiple: plug a further block into a model that has one already.

    Returns:
        ``model``, with the block as the child ``gald`` (``gald_2``, ... when ``allow_multiple``)
        and a forward hook on ``after``; the block is on ``model``'s device, in its mode.

    Raises:
        PlugError: ``after`` is not a module of ``model`` (the nearest valid names are listed), is a
            Conv2d / BatchNorm leaf (conversions replace those), runs more than once per forward, or
            does not return a feature map (N, C, H, W) (e.g. spatially flat after global pooling);
            the block cannot take its channels; the model is plugged already, or wrapped in DDP.
            Nothing is changed then.
        UnknownChoiceError: an unknown ``ga`` or ``arrangement`` name.

    Shape:
        the model's own; ``F`` (N, C, H, W) at ``after`` -> the block's output (N, C, H, W)
    """
    check_choice("arrangement", arrangement, ARRANGEMENTS)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise PlugError(f"the model is wrapped in {type(model).__name__}: plug the model itself, then wrap it")
    if not isinstance(after, str):
        raise PlugError(f"after must be a module name (a str, as model.named_modules() lists), got {after!r}")
    present = inserts(model)
    if present and not allow_multiple:
        where = ", ".join(f"{name} after {m.after!r}" for name, m in present.items())
        raise PlugError(f"the model is plugged already ({where}); pass allow_multiple=True to add another block")
    modules = dict(model.named_modules())
    inside = tuple(f"{name}." for name in present)
    valid = [n for n in modules if n and n not in present and not n.startswith(inside)]
    if after not in valid:
        if after in modules:
            raise PlugError(f"{after!r} is a plugged GALD block or inside one, not an insertion point")
        raise PlugError(_unknown(after, valid))
    target = modules[after]
    if isinstance(target, _REPLACED):
        # SyncBatchNorm conversion, BatchNorm folding and NNPACK swap these leaves for new modules,
        # which would drop the hook and, silently, the block
        parent = after.rpartition(".")[0]
        raise PlugError(f"{after!r} is a {type(target).__name__}, a layer that conversions (SyncBatchNorm, BatchNorm "
                        "folding, NNPACK) replace, which would drop the block; plug after the module that holds it"
                        + (f", e.g. {parent!r}" if parent else ""))
    shape, out_classes = _dry_run(model, target, after, input_size, in_channels)
    if len(shape) == 3:
        raise PlugError(f"the output of {after!r} is {tuple(shape)}: a sequence (e.g. a transformer's tokens), not a "
                        "feature map (N, C, H, W); GALD works on convolutional feature maps")
    if len(shape) != 4 or shape[-2:] == (1, 1):
        raise PlugError(f"the output of {after!r} is {tuple(shape)}, not a feature map (N, C, H, W) with a spatial "
                        f"extent (spatially flat, e.g. after global pooling): GALD needs one; plug it after an "
                        f"earlier module{_spatial_hint(model, after, input_size, in_channels)}")
    num_classes = num_classes or (out_classes if stage_classifiers else None)
    if stage_classifiers and not num_classes:
        raise PlugError("stage_classifiers need num_classes: the model's output is neither a tensor (N, K, H, W) "
                        "nor a dict with 'out'; pass num_classes=K")
    try:
        insert = GALDInsert(
            shape[1], after=after, num_classes=num_classes, stage_classifiers=stage_classifiers,
            arrangement=arrangement, ga=ga, ga_kwargs=ga_kwargs, ga_downsample=ga_downsample,
            ld_downsample=ld_downsample, d=d, ld_last_norm=ld_last_norm, ld_init=ld_init, norm_layer=norm_layer,
            align_corners=align_corners,
        )
    except GaldError:
        raise
    except (ValueError, TypeError) as err:
        hint = "; ga_kwargs={'groups': g} with g dividing the channels, or another ga, fits" if "groups" in str(err) else ""
        raise PlugError(f"cannot plug a GALD block (GA {_name(ga)!r}, d={d}) after {after!r} ({shape[1]} channels): "
                        f"{err}{hint}") from None
    if math.ceil(shape[2] / d) == 1 and math.ceil(shape[3] / d) == 1 and insert.block.ld is not None:
        log.warning("LD's d=%d reduces the %dx%d feature at %r (input %s) to one cell: M is then constant over space "
                    "at this input size; use a smaller d or larger inputs", d, shape[2], shape[3], after,
                    "x".join(map(str, input_size)))
    reference = next(target.parameters(), None)
    reference = next(model.parameters(), None) if reference is None else reference
    if reference is not None:
        insert.to(device=reference.device, dtype=reference.dtype)
    insert.train(model.training)
    name, i = PLUG_NAME, 1
    while hasattr(model, name):  # never replace a child or shadow an attribute the model has
        i += 1
        name = f"{PLUG_NAME}_{i}"
    model.add_module(name, insert)
    target.register_forward_hook(insert.hook)
    return model


def _name(ga: str | type[nn.Module]) -> str:
    return ga if isinstance(ga, str) else ga.__name__


def _unknown(after: str, names: list[str]) -> str:
    near = difflib.get_close_matches(after, names, n=5, cutoff=0.5)
    if not near:  # a name of another model's layout: show the top level and the deepest feature stages
        near = [n for n in names if "." not in n][:8]
        return f"the model has no module {after!r}; its top-level modules are {near} (model.named_modules() lists all)"
    return f"the model has no module {after!r}; the nearest valid names: {near}"


def _dry_run(
    model: nn.Module, target: nn.Module, after: str, size: Sequence[int], in_channels: int
) -> tuple[tuple[int, ...], int | None]:
    """Run ``model`` in eval mode on zeros; return the shape of ``target``'s output and the channels
    of the model's output (``None`` if it has none).

    Raises:
        PlugError: the run fails, ``target`` does not run or runs more than once (a shared module:
            one block cannot follow each call), its output is not a tensor, or dim 1 of its output
            follows the input size (a channels-last map, not (N, C, H, W)).
    """
    out, calls = _run(model, {after: target}, size, in_channels)
    if not calls:
        raise PlugError(f"{after!r} did not run in the model's forward pass; plug after a module that runs")
    if len(calls) > 1:
        raise PlugError(f"{after!r} runs {len(calls)} times in one forward pass (a module used more than once, "
                        "e.g. a shared ReLU): a block after it would run after every call; plug after a module "
                        "that runs once, e.g. the block or stage that holds it")
    shape = calls[0][1]
    if isinstance(shape, str):
        raise PlugError(f"the output of {after!r} is a {shape}, not a feature map tensor (N, C, H, W); plug after a "
                        "module that returns one")
    square = size[0] == size[1]
    if len(shape) == 4 and not (square and shape[2] == shape[3] != shape[1]):  # else plainly (N, C, H, W)
        larger = [s + 32 for s in size]
        try:  # a second size tells the channel axis from a spatial one
            again = [s for _, s in _run(model, {after: target}, larger, in_channels)[1]]
        except PlugError:
            again = []  # a model that takes one input size only (e.g. Swin): judge by the square input below
        if again and not isinstance(again[0], str) and len(again[0]) == 4 and again[0][1] != shape[1]:
            raise PlugError(f"dim 1 of the output of {after!r} follows the input size ({shape[1]} at {tuple(size)}, "
                            f"{again[0][1]} at {tuple(larger)}): not channels; GALD needs (N, C, H, W), e.g. a "
                            "channels-last (N, H, W, C) map permuted")
        if not again and square and shape[1] == shape[2] != shape[3]:  # a square input gives H == W: dims 1 and 2
            raise PlugError(f"the output of {after!r} is {shape} for a square input: channels-last (N, H, W, C), not "
                            "(N, C, H, W); GALD needs the channels in dim 1 (permute them there)")
    classes = None
    y = out.get("out") if isinstance(out, Mapping) else out
    if isinstance(y, torch.Tensor) and y.ndim >= 2:
        classes = int(y.shape[1])
    return shape, classes


def _run(model: nn.Module, modules: Mapping[str, nn.Module], size: Sequence[int],
         in_channels: int) -> tuple[Any, list[tuple[str, tuple[int, ...] | str]]]:
    """The model's output on a zeros batch of ``size`` (eval mode, no gradients) and, in the order
    the calls end, ``(name, output shape)`` of every call of ``modules`` (a type name for a non-tensor)."""
    calls: list[tuple[str, tuple[int, ...] | str]] = []

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:  # returns None: the output stays
            calls.append((name, tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__))

        return hook

    reference = next(model.parameters(), None)
    x = torch.zeros(1, in_channels, *size, device=reference.device if reference is not None else "cpu",
                    dtype=reference.dtype if reference is not None else torch.float32)
    handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    try:
        with _eval_mode(model), torch.no_grad():
            out = model(x)
    except Exception as err:  # a host that cannot run this input: say which input, and why
        raise PlugError(f"the dry run of the model on a {tuple(x.shape)} input failed ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); pass input_size= or in_channels= "
                        "that the model takes") from None
    finally:
        for handle in handles:
            handle.remove()
    return out, calls


def _spatial_hint(model: nn.Module, after: str, size: Sequence[int], in_channels: int) -> str:
    """``", e.g. 'layer4' (2048 × 7 × 7)"``: the last module to finish before ``after`` with a spatial output."""
    watched = {name: module for name, module in model.named_modules()
               if name and not name.startswith(after + ".") and not isinstance(module, GALDInsert)}
    try:
        calls = _run(model, watched, size, in_channels)[1]
    except PlugError:  # the first dry run has been through this input already
        return ""
    before = calls[:next((i for i, (name, _) in enumerate(calls) if name == after), len(calls))]
    spatial = [(n, s) for n, s in before if not isinstance(s, str) and len(s) == 4 and s[-2:] != (1, 1)]
    if not spatial:
        return ""
    name, s = spatial[-1]
    return f", e.g. {name!r} ({' × '.join(map(str, s[1:]))})"
