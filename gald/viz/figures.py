"""Matplotlib figures of the paper's story, and the small measurements behind them (notebooks).

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure` (not registered with pyplot)
with titles and legends;
the colours of label maps are the dataset palette (the synthetic classes use Cityscapes colours).
The measurement helpers return plain dicts / arrays, so the notebooks can print and assert them.

* :func:`scene_batch`, :func:`stage_predictions` — images in, FCN / GA / GALD predictions out
  (the stage classifiers of Fig. 5, ``model.inspect``).
* :func:`curves_figure` — training loss and validation curves from a run's ``history`` (:mod:`gald.viz.curves`).
* :func:`segmentation_grid` — input | prediction columns | ground truth (Fig. 5, Fig. 8 row).
* :func:`ld_mask_figure`, :func:`ld_channels_figure`, :func:`mask_by_pattern_size`,
  :func:`mask_size_figure` — the LD masks ``M`` of Eq. (1) and how they follow pattern size (Fig. 4).
* :func:`group_accuracy` — pixel accuracy on the context / small / large class groups per stage.
* :func:`ablation_table`, :func:`ablation_figure` — Table 1 from ``benchmarks/results/ablation.json``.
* :func:`attribution_figure`, :func:`cue_twins_figure` — Grad-CAM per stage and the reach of context.
* :func:`image_grid` — RGB images side by side (detections with boxes and masks drawn).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gald.viz import overlays as viz
from gald.viz.curves import curves_figure
from gald.data import synthetic
from gald.data.transforms import ToTensorNormalize
from gald.errors import MissingFileError
from gald.models.inspection import inspect

__all__ = [
    "STAGE_KEYS",
    "ablation_figure",
    "claims_figure",
    "ablation_table",
    "attribution_figure",
    "colorbar_figure",
    "legend_figure",
    "save_figure",
    "cue_twins_figure",
    "curves_figure",
    "group_accuracy",
    "image_grid",
    "ld_channels_figure",
    "ld_mask_figure",
    "load_ablation",
    "mask_by_pattern_size",
    "mask_size_figure",
    "scene_batch",
    "segmentation_grid",
    "stage_predictions",
]

# stage name -> model.inspect key (Fig. 5: (b) FCN, (c) GA, (d) GALD)
STAGE_KEYS = {"FCN": "logits_fcn", "GA": "logits_ga", "GALD": "out"}


def _figure(figsize: tuple[float, float]):
    # A Figure outside pyplot: no global backend state, nothing shown twice or left open; a
    # notebook displays it as a cell's value, a script saves it with fig.savefig.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _legend_handles(classes: Sequence[str], palette: Sequence[Sequence[int]]):
    from matplotlib.patches import Patch

    return [Patch(color=np.asarray(c) / 255.0, label=n) for n, c in zip(classes, palette)]


def save_figure(fig, path: str | os.PathLike, *, formats: Sequence[str] = ("pdf", "svg", "png"),
                dpi: int = 300) -> list[str]:
    """Save a figure for a paper: vector PDF and SVG, and a ``dpi`` PNG, beside each other.

    Args:
        fig: a figure of this module (or any matplotlib figure).
        path: the file name without (or with, ignored) an extension.
        formats: which of pdf, svg, png (and any other format matplotlib writes).
        dpi: resolution of raster formats.

    Returns:
        The written paths, in ``formats`` order.
    """
    stem = os.path.splitext(os.fspath(path))[0]
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    written = []
    for fmt in formats:
        target = f"{stem}.{fmt}"
        fig.savefig(target, dpi=dpi, bbox_inches="tight", metadata=None if fmt != "png" else {"Software": "gald"})
        written.append(target)
    return written


def legend_figure(classes: Sequence[str], palette: Sequence[Sequence[int]], *, title: str = "classes"):
    """A colour swatch and a name per class, in class-id order (what a label PNG's colours mean)."""
    fig = _figure((2.6, 0.28 * len(classes) + 0.5))
    ax = fig.subplots()
    ax.set_axis_off()
    fig.legend(handles=_legend_handles([f"{i}: {n}" for i, n in enumerate(classes)], palette), loc="center",
               frameon=False, title=title, fontsize=9)
    return fig


def colorbar_figure(label: str, *, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis"):
    """A colour bar alone: the scale of heat-map images written without one (e.g. LD masks)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = _figure((4.0, 0.9))
    ax = fig.add_axes((0.05, 0.55, 0.9, 0.3))
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap=cmap), cax=ax, orientation="horizontal", label=label)
    return fig


def scene_batch(scenes: Sequence[synthetic.Scene]) -> torch.Tensor:
    """Normalised image batch of generated scenes (ImageNet statistics, as in training).

    Shape:
        K scenes of (H, W, 3) -> (K, 3, H, W) float32
    """
    if not scenes:
        raise ValueError("scene_batch needs at least one scene")
    norm = ToTensorNormalize()
    return torch.stack([norm(s.image, s.label)[0] for s in scenes])


@torch.no_grad()
def stage_predictions(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Arg-max predictions of the FCN, GA and GALD stages of one model (Sec. 4.3.1, Fig. 5).

    ``FCN`` and ``GA`` are the 1×1 stage classifiers on ``F`` and ``F_GA`` (a model built with
    ``stage_classifiers=True``), upsampled like the final output; ``GALD`` is the model's output.
    Stages the model lacks are left out.

    Shape:
        (N, 3, H, W) -> {stage: (N, H, W) int64}
    """
    model.eval()
    t = inspect(model, x)
    size = x.shape[-2:]
    out = {}
    for stage, key in STAGE_KEYS.items():
        logits = t.get(key)
        if logits is None:
            continue
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=getattr(model, "align_corners", False))
        out[stage] = logits.argmax(1).numpy()
    return out


def segmentation_grid(
    images: Sequence[np.ndarray],
    columns: Mapping[str, Sequence[np.ndarray]],
    *,
    classes: Sequence[str] = synthetic.CLASSES,
    palette: Sequence[Sequence[int]] = synthetic.PALETTE,
    title: str = "",
    panel_width: float = 2.4,
):
    """Rows of ``input | column 1 | … | column k`` label maps, with a class legend.

    Args:
        images: RGB images, one per row.
        columns: column title → one label map per row (e.g. FCN / +LD / +GA / +GALD / ground truth).
        classes: class names of the legend.
        palette: RGB colour per class.
        title: figure title.
        panel_width: inches per panel.

    Shape:
        images (H, W, 3) uint8, label maps (H, W) int
    """
    rows, cols = len(images), 1 + len(columns)
    for name, maps in columns.items():
        if len(maps) != rows:
            raise ValueError(f"column {name!r} has {len(maps)} label maps for {rows} images")
    h, w = np.asarray(images[0]).shape[:2]
    fig = _figure((panel_width * cols, panel_width * h / w * rows + 0.9))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, image in enumerate(images):
        axes[r, 0].imshow(image)
        for c, (name, maps) in enumerate(columns.items(), start=1):
            axes[r, c].imshow(viz.colorize(np.asarray(maps[r]).astype(np.int64), palette))
        for c, name in enumerate(["input", *columns]):
            if r == 0:
                axes[r, c].set_title(name, fontsize=10)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    fig.legend(handles=_legend_handles(classes, palette), loc="lower center", ncol=min(len(classes), 9), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def ld_mask_figure(
    images: Sequence[np.ndarray],
    masks: Mapping[str, Sequence[torch.Tensor | np.ndarray]],
    *,
    scale: str = "unit",
    title: str = "",
):
    """Fig. 4: each image beside the channel mean of its LD masks ``M`` for several models.

    Args:
        images: RGB images, one per row.
        masks: model name → per image ``M`` of shape (C, h, w) (``inspect(x)["M"][i]``).
        scale: ``"unit"`` — the fixed [0, 1] range of the sigmoid, shared by every panel (one
            colour bar); ``"minmax"`` — each panel stretched to its own range, written under it
            (shows the spatial pattern of a mask that varies little).
        title: figure title.
    """
    if scale not in ("unit", "minmax"):
        raise ValueError(f"scale must be 'unit' or 'minmax', got {scale!r}")
    rows, cols = len(images), 1 + len(masks)
    h, w = np.asarray(images[0]).shape[:2]
    fig = _figure((2.6 * cols + 0.6 + 0.5 * (cols - 1) * (scale == "minmax"), 2.6 * h / w * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    for r, image in enumerate(images):
        axes[r, 0].imshow(image)
        for c, (name, per_image) in enumerate(masks.items(), start=1):
            m = per_image[r]
            m = m.detach().float().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, np.float32)
            mean = m.mean(0)
            lo, hi = (0.0, 1.0) if scale == "unit" else (float(mean.min()), float(mean.max()))
            im = axes[r, c].imshow(mean, vmin=lo, vmax=hi, cmap="viridis", extent=(0, w, h, 0))
            if scale == "minmax":  # each panel its own range, so each its own colour bar
                fig.colorbar(im, ax=axes[r, c], fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
        for c, name in enumerate(["input", *(f"{k}: mean of M" for k in masks)]):
            if r == 0:
                axes[r, c].set_title(name, fontsize=10)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.93 if scale == "unit" else 1, 1))
    if im is not None and scale == "unit":
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="M")
    return fig


def ld_channels_figure(mask: torch.Tensor | np.ndarray, channels: Sequence[int], *, title: str = "", ncols: int = 4):
    """Individual channels of one image's LD masks ``M`` (Eq. 1), on the fixed [0, 1] scale.

    Shape:
        mask (C, h, w)
    """
    m = mask.detach().float().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    if m.ndim != 3:
        raise ValueError(f"expected one image's masks (C, h, w), got shape {m.shape}")
    bad = [c for c in channels if not 0 <= c < m.shape[0]]
    if bad:
        raise IndexError(f"channels {bad} out of range: the mask has {m.shape[0]} channels")
    nrows = -(-len(channels) // ncols)
    fig = _figure((2.6 * ncols + 0.6, 1.5 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, c in zip(axes.ravel(), channels):
        im = ax.imshow(m[c], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"channel {c}: mean {m[c].mean():.2f}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="M")
    return fig


def mask_by_pattern_size(
    masks: torch.Tensor,
    labels: Sequence[np.ndarray],
    instances: Sequence[np.ndarray] | None = None,
    *,
    small_classes: Sequence[int] = synthetic.SMALL_CLASSES,
    large_classes: Sequence[int] = synthetic.LARGE_CLASSES,
) -> dict:
    """How much GA feature LD lets through inside large vs small patterns (Sec. 3.2, Fig. 4).

    The channel mean of ``M`` is resized bilinearly to the label size, then averaged over the pixels
    of each class, of the small-pattern and large-pattern classes, and (with ``instances``) over
    each object instance, with its area.

    Args:
        masks: ``inspect(x)["M"]``.
        labels: ground-truth train ids per image, at the input size.
        instances: instance ids per image (0 = none), e.g. ``Scene.instances``.
        small_classes: train ids of small patterns.
        large_classes: train ids of large patterns.

    Returns:
        ``{"small": mean M, "large": mean M, "per_class": {class id: mean M},
        "instances": [(area in pixels, mean M), ...]}``

    Shape:
        masks (N, C, h, w), labels N × (H, W)
    """
    if masks.ndim != 4 or masks.shape[0] != len(labels):
        raise ValueError(f"masks {tuple(masks.shape)} must be (N, C, h, w) with N = {len(labels)} label maps")
    size = np.asarray(labels[0]).shape
    mean = F.interpolate(masks.detach().float().mean(1, keepdim=True), size=size, mode="bilinear", align_corners=False)
    mean = mean[:, 0].numpy().astype(np.float64)
    label = np.stack([np.asarray(x) for x in labels])
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for k in np.unique(label):
        sel = label == k
        sums[int(k)], counts[int(k)] = float(mean[sel].sum()), int(sel.sum())

    def group(ids: Sequence[int]) -> float:
        n = sum(counts.get(i, 0) for i in ids)
        return sum(sums.get(i, 0.0) for i in ids) / n if n else float("nan")

    per_instance = []
    if instances is not None:
        for n, inst in enumerate(instances):
            inst = np.asarray(inst)
            for i in np.unique(inst[inst > 0]):
                sel = inst == i
                per_instance.append((int(sel.sum()), float(mean[n][sel].mean())))
    return {
        "small": group(small_classes),
        "large": group(large_classes),
        "per_class": {k: sums[k] / counts[k] for k in sorted(sums)},
        "instances": per_instance,
    }


def mask_size_figure(stats: Mapping[str, Mapping], *, classes: Sequence[str] = synthetic.CLASSES,
                     palette: Sequence[Sequence[int]] = synthetic.PALETTE, title: str = ""):
    """Mean of ``M`` per class (bars) and per object instance against its area (scatter), per model.

    Args:
        stats: model name → :func:`mask_by_pattern_size` result.
    """
    fig = _figure((11, 3.4))
    (ax_bar, ax_inst) = fig.subplots(1, 2)
    names = list(stats)
    width = 0.8 / max(len(names), 1)
    ids = sorted({k for s in stats.values() for k in s["per_class"]})
    x = np.arange(len(ids))
    for j, name in enumerate(names):
        values = [stats[name]["per_class"].get(k, np.nan) for k in ids]
        ax_bar.bar(x + (j - (len(names) - 1) / 2) * width, values, width, label=name,
                   color=[np.asarray(palette[k]) / 255 for k in ids], edgecolor="k", hatch=["", "//", ".."][j % 3])
    ax_bar.set_xticks(x, [classes[k] for k in ids], rotation=40, ha="right", fontsize=8)
    ax_bar.set(title="mean of M per class", ylabel="M", ylim=(0, 1))
    ax_bar.legend(fontsize=8)
    for name in names:
        inst = stats[name]["instances"]
        if inst:
            area, m = zip(*inst)
            ax_inst.scatter(area, m, s=10, alpha=0.6, label=name)
    ax_inst.set(xscale="log", title="mean of M inside each object", xlabel="object area (pixels)", ylabel="M", ylim=(0, 1))
    ax_inst.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def group_accuracy(
    preds: Mapping[str, np.ndarray],
    labels: np.ndarray,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, dict[str, float]]:
    """Pixel accuracy (%) of each prediction on groups of ground-truth classes.

    Default groups: ``context`` (road, terrain: decided by the sky, far away), ``small`` (pole,
    sign, person) and ``large`` (road … sky) — where GA should help and where it may over-smooth.

    Shape:
        preds {name: (N, H, W)}, labels (N, H, W)
    """
    groups = dict(groups or {"context": synthetic.CONTEXT_CLASSES, "small": synthetic.SMALL_CLASSES,
                             "large": synthetic.LARGE_CLASSES})
    labels = np.asarray(labels)
    out = {}
    for name, pred in preds.items():
        pred = np.asarray(pred)
        if pred.shape != labels.shape:
            raise ValueError(f"prediction {name!r} {pred.shape} and labels {labels.shape} differ in shape")
        out[name] = {}
        for g, ids in groups.items():
            sel = np.isin(labels, list(ids))
            out[name][g] = float((pred[sel] == labels[sel]).mean() * 100) if sel.any() else float("nan")
    return out


def load_ablation(path: str | os.PathLike) -> dict:
    """Read ``benchmarks/results/ablation.json`` (written by ``python benchmarks/ablation.py``).

    Returns:
        ``{"environment": str, "table": {variant: {metric: Stat}}, "verdicts": [...]}``
    """
    from gald.experiments.ablation import Stat

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} not found: run `python benchmarks/ablation.py` to write it")
    with open(path) as f:
        raw = json.load(f)
    try:
        table = {variant: {m: Stat(**s) for m, s in metrics.items()} for variant, metrics in raw["table"].items()}
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not an ablation results file ('table': variant → metric → stat): {err}") from None
    return {"environment": raw.get("environment", ""), "table": table, "verdicts": raw.get("verdicts", [])}


def ablation_table(table: Mapping[str, Mapping]) -> str:
    """Table 1 on the embedded benchmark as markdown (mean ± std over seeds), as the README shows it."""
    from gald.experiments.ablation import markdown_table

    return markdown_table(dict(table))


_ABLATION_METRICS = (("large_mIoU", "large-pattern"), ("small_mIoU", "small-pattern"), ("boundary_mIoU", "boundary"))


def ablation_figure(table: Mapping[str, Mapping], *, title: str = "Table 1 on the embedded benchmark"):
    """Grouped bars of large-pattern / small-pattern / boundary mIoU per variant, with seed std as error bars."""
    from gald.experiments.ablation import VARIANTS

    variants = [v for v in VARIANTS if v in table]
    fig = _figure((12, 3.6))
    ax = fig.subplots()
    x = np.arange(len(variants))
    width = 0.27
    for j, (metric, label) in enumerate(_ABLATION_METRICS):
        means = [table[v][metric].mean if metric in table[v] else np.nan for v in variants]
        stds = [table[v][metric].std if metric in table[v] else 0.0 for v in variants]
        ax.bar(x + (j - 1) * width, means, width, yerr=stds, capsize=2, label=label)
    ax.set_xticks(x, [f"({VARIANTS[v][0]}) {v}" for v in variants], rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="mIoU (%)", ylim=(0, 100), title=title)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def claims_figure(analysis: Mapping, *, title: str = "Benchmark v2: the pre-registered claims"):
    """A forest plot of an ``analyse_v2`` result: per claim (and the manipulation check, last) the
    paired difference Δ = a − b with its 95 % t-interval, each seed's difference as a dot, and the
    ±SESOI band of equivalence; the label carries the claim's status and verdict.
    """
    rows = [*analysis["claims"], {**analysis["manipulation_check"], "status": "manipulation check",
                                  "verdict": {True: "passed", False: "failed"}.get(
                                      analysis["manipulation_check"].get("passed"), "not run")}]
    fig = _figure((9, 0.55 * len(rows) + 1.2))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        if "sesoi" in r:
            ax.fill_betweenx([y - 0.35, y + 0.35], -r["sesoi"], r["sesoi"], color="0.9", lw=0)
        dots = r.get("differences") or []
        ax.plot(dots, [y + 0.18] * len(dots), "o", ms=3, color="0.45", alpha=0.8)
        if "delta" in r:
            lo, hi = r["ci95"]
            ax.errorbar(r["delta"], y, xerr=[[r["delta"] - lo], [hi - r["delta"]]], fmt="s", ms=5, capsize=3,
                        color="C3" if r.get("status") == "manipulation check" else "C0")
    ax.axvline(0, color="k", lw=0.8)
    labels = [f"{r['claim']}\n({r.get('status', '')}: {r['verdict']})" for r in rows]
    ax.set_yticks(range(len(rows))[::-1], labels, fontsize=7)
    ax.set(xlabel="Δ = a − b, points (95 % paired t-interval; dots: seeds; grey: ±SESOI)", title=title)
    fig.tight_layout()
    return fig


def attribution_figure(
    image: np.ndarray,
    maps: Mapping[str, torch.Tensor | np.ndarray],
    *,
    label: np.ndarray | None = None,
    palette: Sequence[Sequence[int]] = synthetic.PALETTE,
    title: str = "",
):
    """The image (and its labels), then one attribution heat map per stage blended over the image.

    Each map is scaled to its own maximum (Grad-CAM maps of different stages have different units).

    Shape:
        image (H, W, 3) uint8, maps {stage: (H, W)}
    """
    panels = 1 + (label is not None) + len(maps)
    h, w = image.shape[:2]
    fig = _figure((2.8 * panels, 2.8 * h / w + 1.0))
    axes = fig.subplots(1, panels, squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=10)
    k = 1
    if label is not None:
        axes[1].imshow(viz.colorize(np.asarray(label).astype(np.int64), palette))
        axes[1].set_title("ground truth", fontsize=10)
        k = 2
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    for ax, (stage, m) in zip(axes[k:], maps.items()):
        m = m.detach().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        top = float(m.max())
        ax.imshow(viz.blend_heatmap(image, viz.heatmap(m, size=(h, w), vmin=0.0, cmap="inferno"), alpha=0.6))
        ax.set_title(stage, fontsize=10)
        # the scale of this panel's heat map (0 to its own maximum), in a strip under it: every
        # panel keeps the same size
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, top if top > 0 else 1.0), cmap="inferno"),
                           cax=ax.inset_axes((0.0, -0.14, 1.0, 0.06)), orientation="horizontal")
        bar.ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, *, ncols: int = 3,
               title: str = "", panel_width: float = 3.2):
    """RGB images side by side (e.g. detections drawn by :func:`gald.predict_detection.draw_detections`).

    Shape:
        images (H, W, 3) uint8
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    h, w = np.asarray(images[0]).shape[:2]
    fig = _figure((panel_width * ncols, panel_width * h / w * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (ax, image) in enumerate(zip(axes.ravel(), images)):
        ax.imshow(image)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cue_twins_figure(results: Mapping[str, Mapping], *, title: str = "Does the ground prediction follow the sky?"):
    """Share of ground pixels whose prediction follows the sky cue, by distance below the sky, per model.

    Args:
        results: model name → :func:`gald.experiments.analysis.cue_twins` result.
    """
    fig = _figure((7, 3.2))
    ax = fig.subplots()
    names = list(results)
    bins = list(dict.fromkeys(b for r in results.values() for b in r["by_distance"]))
    x = np.arange(len(bins))
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        values = [results[name]["by_distance"].get(b, {}).get("follows_cue", np.nan) for b in bins]
        ax.bar(x + (j - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, [f"{b} below the sky" for b in bins], fontsize=9)
    ax.set(ylabel="follows the cue (% of ground pixels)", ylim=(0, 100), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
