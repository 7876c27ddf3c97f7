"""The causal LD metric: what a model loses when LD's masks lose their spatial information.

Reading ``M`` (Eq. 1) tells little about whether a model *uses* LD: a mask can vary and be ignored
downstream, and Fig. 4's channel-mean map sits near σ(β) by construction when a norm precedes the
sigmoid. An intervention answers the causal question directly: evaluate the model as trained, then
again with every :class:`~gald.models.LocalDistribution`'s mask replaced, and compare.

* ``"spatial_mean"`` (primary, the **LD effect**): ``M`` → its per-image, per-channel spatial mean.
  Eq. (2)'s scale is kept, only *where* the global features are distributed is removed.
* ``"zero"`` (secondary): ``M`` → 0, so Eq. (2) returns ``F_GA``; this also rescales ``F_GALD``.

The LD effect of a metric is ``metric(as trained) − metric(intervened)`` in points: positive when
LD's spatial information helps. Its 95 % interval comes from a paired bootstrap over validation
images (both evaluations resampled with the same images). A model is **LD inert** when that
interval contains 0 and lies within ± the smallest effect of interest (``sesoi``); the finer
:func:`ld_verdict` also names the other cases (negligible, helps, hurts, undetermined).

Example::

    >>> with ld_intervention(model, "spatial_mean"):
    ...     logits = model(images)["out"]          # M replaced by its spatial mean
    >>> effect = ld_effect(model, data.val_loader, small_classes=(5, 6, 7), large_classes=(0, 1, 2, 3, 4))
    >>> effect["metrics"]["mIoU"]["effect"], effect["metrics"]["mIoU"]["ci95"]
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from gald.config import check_choice
from gald.metrics.segmentation import boundary_band, confusion_matrix, iou_from_confusion
from gald.models.inspection import inspect
from gald.models.ld import LD_INTERVENTIONS, LocalDistribution

__all__ = [
    "LD_INTERVENTIONS",
    "has_ld",
    "ld_intervention",
    "per_image_confusions",
    "summary_from_confusions",
    "ld_effect",
    "ld_effect_summary",
    "format_ld_effect",
    "ld_verdict",
    "LD_VERDICTS",
    "mask_contrast",
]

#: What an LD effect's interval says, given the smallest effect of interest S (see :func:`ld_verdict`).
LD_VERDICTS = {
    "inert": "LD inert: the interval holds 0 and lies within ±S",
    "negligible": "LD used, negligibly: the interval excludes 0 but lies within ±S",
    "helps": "LD helps: the interval lies above 0 and reaches beyond S",
    "hurts": "LD hurts: the interval lies below 0 and reaches beyond −S",
    "undetermined": "undetermined: the interval holds 0 and reaches beyond ±S",
}


def ld_verdict(ci95: Sequence[float], sesoi: float) -> str:
    """One of :data:`LD_VERDICTS` for an LD effect's 95 % interval ``(lo, hi)``."""
    lo, hi = ci95
    within = -sesoi <= lo and hi <= sesoi
    if lo <= 0 <= hi:
        return "inert" if within else "undetermined"
    if within:
        return "negligible"
    return "helps" if lo > 0 else "hurts"


def _ld_modules(model: nn.Module) -> list[LocalDistribution]:
    return [m for m in model.modules() if isinstance(m, LocalDistribution)]


def has_ld(model: nn.Module) -> bool:
    """Whether ``model`` contains at least one :class:`~gald.models.LocalDistribution`."""
    return bool(_ld_modules(model))


@contextlib.contextmanager
def _restore_mode(model: nn.Module, training: bool) -> Iterator[None]:
    try:
        yield
    finally:
        model.train(training)


@contextlib.contextmanager
def ld_intervention(model: nn.Module, kind: str = "spatial_mean") -> Iterator[nn.Module]:
    """Replace the mask of every LD module in ``model`` while the context is open.

    Args:
        model: any module containing :class:`~gald.models.LocalDistribution` modules.
        kind: ``"spatial_mean"`` or ``"zero"`` (see :data:`LD_INTERVENTIONS`).

    Raises:
        ValueError: for an unknown ``kind``, or a model without LD.

    Shape:
        the model's own; every ``M`` (N, C, H, W) becomes its spatial mean broadcast to (N, C, H, W)
    """
    check_choice("LD intervention", kind, LD_INTERVENTIONS)
    modules = _ld_modules(model)
    if not modules:
        raise ValueError("the model has no LD module (block 'ga' or 'none'); the LD effect is undefined")
    previous = [m.intervention for m in modules]
    for m in modules:
        m.intervention = kind
    try:
        yield model
    finally:
        for m, p in zip(modules, previous):
            m.intervention = p


@torch.no_grad()
def per_image_confusions(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int | None = None,
    *,
    intervention: str | None = None,
    ignore_index: int = 255,
    boundary_width: int = 3,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One confusion matrix per image, over all pixels and over the boundary band.

    Args:
        model: a segmentation model returning ``{"out": logits}`` at the input size.
        batches: ``(images, labels, ...)`` batches, e.g. a validation loader (extra items ignored).
        num_classes: K (default: the number of output channels).
        intervention: ``None`` (as trained) or an :data:`LD_INTERVENTIONS` name.
        ignore_index: label value left out.
        boundary_width: half-width of the band around label edges (as :class:`~gald.metrics.SegmentationMetrics`).
        device: where the model runs.

    Shape:
        -> (N, K, K), (N, K, K) int64, rows ground truth, columns prediction
    """
    was_training = model.training
    model.eval()
    context = ld_intervention(model, intervention) if intervention else contextlib.nullcontext()
    full, band_cms = [], []
    with context, _restore_mode(model, was_training):
        for batch in batches:
            images, labels = batch[0], batch[1]  # loaders may add instance maps
            logits = model(images.to(device))["out"]
            num_classes = num_classes or logits.shape[1]
            pred = logits.argmax(1).cpu()
            band = boundary_band(labels, boundary_width, ignore_index)
            for p, t, b in zip(pred, labels, band):
                full.append(confusion_matrix(p, t, num_classes, ignore_index))
                band_cms.append(confusion_matrix(p[b], t[b], num_classes, ignore_index))
    return torch.stack(full), torch.stack(band_cms)


def _means(iou: np.ndarray, groups: dict[str, Sequence[int] | None]) -> dict[str, np.ndarray]:
    """NaN-aware means of (..., K) IoUs over class groups, in percent."""
    out = {}
    for name, idx in groups.items():
        v = iou if idx is None else iou[..., list(idx)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a group with no class present: NaN
            out[name] = np.nanmean(v, axis=-1) * 100
    return out


def _iou(cm: np.ndarray) -> np.ndarray:
    """:func:`gald.metrics.iou_from_confusion` of (..., K, K) NumPy confusion matrices."""
    return iou_from_confusion(torch.from_numpy(cm)).numpy()


def summary_from_confusions(
    cm: torch.Tensor, cm_boundary: torch.Tensor, *, small_classes: Sequence[int] = (), large_classes: Sequence[int] = ()
) -> dict[str, float]:
    """mIoU, small / large-pattern mIoU, boundary mIoU (percent) of summed confusion matrices.

    Equal to :meth:`gald.metrics.SegmentationMetrics.compute` on the same predictions.

    Shape:
        (K, K), (K, K) -> dict of floats
    """
    table = _metric_table(cm.numpy()[None], cm_boundary.numpy()[None], small_classes, large_classes)
    return {k: float(v[0]) for k, v in table.items() if k != "per_class"}


def _groups(small: Sequence[int], large: Sequence[int]) -> dict[str, Sequence[int] | None]:
    groups: dict[str, Sequence[int] | None] = {"mIoU": None}
    if small:
        groups["small_mIoU"] = small
    if large:
        groups["large_mIoU"] = large
    return groups


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) multiplicities of a with-replacement resample of n images."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)


def _metric_table(cm: np.ndarray, cm_b: np.ndarray, small, large) -> dict[str, np.ndarray]:
    """Metrics of (B, K, K) confusion matrices: summary means (B,) and per-class IoU (B, K)."""
    iou = _iou(cm)
    table = _means(iou, _groups(small, large))
    table["boundary_mIoU"] = _means(_iou(cm_b), {"b": None})["b"]
    table["per_class"] = iou * 100
    return table


def ld_effect(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    small_classes: Sequence[int] = (),
    large_classes: Sequence[int] = (),
    kind: str = "spatial_mean",
    sesoi: float = 1.0,
    n_boot: int = 2000,
    seed: int = 0,
    ignore_index: int = 255,
    device: str | torch.device = "cpu",
) -> dict:
    """The LD effect of ``model`` on ``batches``, with paired-bootstrap 95 % intervals.

    Args:
        model: a segmentation model with at least one LD module.
        batches: ``(images, labels, ...)`` batches; iterated twice, so a loader or a list, not a generator.
        num_classes: K (default: the number of output channels).
        class_names: names for the per-class effects (default ``class_i``).
        small_classes / large_classes: train ids of the small- and large-pattern groups.
        kind: the intervention, ``"spatial_mean"`` (the LD effect) or ``"zero"``.
        sesoi: smallest effect of interest in points, for the "LD inert" verdict (on mIoU).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
        ignore_index: label value left out.
        device: where the model runs.

    Returns:
        ``{"kind", "images", "n_boot", "sesoi", "inert", "verdict", "metrics": {name: {"as_trained",
        "intervened", "effect", "ci95"}}, "per_class": {class: {...}}}``; effects are
        ``as_trained − intervened``; ``verdict`` is :func:`ld_verdict` of the mIoU interval.

    Shape:
        batches of images (N, 3, H, W) and labels (N, H, W) -> a dict of floats
    """
    if not has_ld(model):
        raise ValueError("the model has no LD module (block 'ga' or 'none'); the LD effect is undefined")
    base, base_b = per_image_confusions(model, batches, num_classes, ignore_index=ignore_index, device=device)
    alt, alt_b = per_image_confusions(model, batches, num_classes, intervention=kind, ignore_index=ignore_index,
                                      device=device)
    n, k = base.shape[0], base.shape[-1]
    flat = lambda c: c.reshape(n, -1).double().numpy()  # noqa: E731
    w = _bootstrap_weights(n, n_boot, seed)

    def resampled(cm: torch.Tensor) -> np.ndarray:
        return (w @ flat(cm)).reshape(n_boot, k, k)

    point_base = _metric_table(base.sum(0).numpy()[None], base_b.sum(0).numpy()[None], small_classes, large_classes)
    point_alt = _metric_table(alt.sum(0).numpy()[None], alt_b.sum(0).numpy()[None], small_classes, large_classes)
    boot_base = _metric_table(resampled(base), resampled(base_b), small_classes, large_classes)
    boot_alt = _metric_table(resampled(alt), resampled(alt_b), small_classes, large_classes)

    def entry(name: str, j: int | None = None) -> dict:
        pick = (lambda t: t[name]) if j is None else (lambda t: t["per_class"][:, j])
        a, b = float(pick(point_base)[0]), float(pick(point_alt)[0])
        diffs = pick(boot_base) - pick(boot_alt)
        diffs = diffs[~np.isnan(diffs)]
        lo, hi = (np.percentile(diffs, [2.5, 97.5]).tolist() if diffs.size else [math.nan, math.nan])
        return {"as_trained": a, "intervened": b, "effect": a - b, "ci95": [lo, hi]}

    metrics = {name: entry(name) for name in point_base if name != "per_class"}
    names = list(class_names) if class_names else [f"class_{i}" for i in range(k)]
    per_class = {names[j]: entry("per_class", j) for j in range(k)}
    verdict = ld_verdict(metrics["mIoU"]["ci95"], sesoi)
    return {"kind": kind, "images": n, "n_boot": n_boot, "sesoi": sesoi, "inert": verdict == "inert",
            "verdict": verdict, "metrics": metrics, "per_class": per_class}


def ld_effect_summary(effect: dict) -> dict:
    """The compact form kept in checkpoints and model cards: the summary metrics' effects and
    intervals, the verdict and how it was measured (no per-class rows)."""
    keep = ("kind", "images", "n_boot", "sesoi", "inert", "verdict")
    return {**{k: effect[k] for k in keep},
            **{name: {"effect": e["effect"], "ci95": e["ci95"], "as_trained": e["as_trained"]}
               for name, e in effect["metrics"].items()}}


def format_ld_effect(summary: dict) -> str:
    """One line: ``LD effect on mIoU +0.42 [−0.10, +0.95] (small-pattern …); inert``."""
    def part(name: str, label: str) -> str:
        e = summary[name]
        return f"{label} {e['effect']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]"

    parts = [part("mIoU", "mIoU")] + ([part("small_mIoU", "small-pattern mIoU")] if "small_mIoU" in summary else [])
    verdict = summary.get("verdict") or ld_verdict(summary["mIoU"]["ci95"], summary["sesoi"])
    text = LD_VERDICTS[verdict].split(":")[0].replace("undetermined", "LD use undetermined")
    return (f"LD effect (points lost when M is replaced by its spatial mean, 95% CI over {summary['images']} images): "
            f"{'; '.join(parts)} — {text} (S = ±{summary['sesoi']:g})")


@torch.no_grad()
def mask_contrast(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    small_classes: Sequence[int],
    large_classes: Sequence[int],
    n_boot: int = 2000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """Fig. 4's channel-mean map, as a number: its mean on large-pattern minus small-pattern pixels.

    The paper's reading is that GALD's masks weight global features more inside large regions, so
    a positive contrast is the paper's direction. Unlike the map's level (fixed near σ(β) when a
    norm precedes the sigmoid), the contrast can only come from what LD learned. The per-image
    contrasts are averaged and a bootstrap over images gives the 95 % interval.

    Returns:
        ``{"contrast", "ci95", "large_mean", "small_mean", "images"}`` (mask units, 0..1).

    Shape:
        batches of images (N, 3, H, W) and labels (N, H, W) -> a dict of floats
    """
    was_training = model.training
    model.eval()
    with _restore_mode(model, was_training):
        pairs = _large_small_means(model, batches, small_classes, large_classes, device)
    if not pairs:
        raise ValueError("no image holds both small- and large-pattern pixels")
    large_vals, small_vals = zip(*pairs)
    x = np.asarray(large_vals) - np.asarray(small_vals)
    w = _bootstrap_weights(len(x), n_boot, seed)
    boots = (w @ x) / len(x)
    return {"contrast": float(x.mean()), "ci95": np.percentile(boots, [2.5, 97.5]).tolist(),
            "large_mean": float(np.mean(large_vals)), "small_mean": float(np.mean(small_vals)), "images": len(x)}


def _large_small_means(model, batches, small_classes, large_classes, device) -> list[tuple[float, float]]:
    """Per image holding both groups: the channel-mean mask's mean on large- and on small-pattern pixels."""
    pairs = []
    for batch in batches:
        images, labels = batch[0], batch[1]
        m = inspect(model, images.to(device))["M"]
        if m is None:
            raise ValueError("the model has no LD mask (block 'ga' or 'none')")
        mean_map = nn.functional.interpolate(m.mean(1, keepdim=True), size=labels.shape[-2:], mode="bilinear",
                                             align_corners=False)[:, 0].cpu()
        for mm, t in zip(mean_map, labels):
            large = torch.isin(t, torch.tensor(list(large_classes)))
            small = torch.isin(t, torch.tensor(list(small_classes)))
            if large.any() and small.any():
                pairs.append((mm[large].mean().item(), mm[small].mean().item()))
    return pairs
