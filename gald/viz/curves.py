"""Training curves of a run: loss terms and validation metrics against the step.

Kept apart from :mod:`gald.viz.figures` (which re-exports it) because the training engine draws a
run's ``curves.png`` with it: this module imports nothing else of ``gald``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["curves_figure"]


#: curve labels of the loss terms and validation metrics of both tasks' histories
_CURVE_LABELS = {
    "loss": "total", "loss_main": "main (OHEM)", "loss_aux": "aux (CE)",
    "mIoU": "mIoU", "large_mIoU": "large-pattern mIoU", "small_mIoU": "small-pattern mIoU",
    "boundary_mIoU": "boundary mIoU", "voc07_mAP": "VOC07 mAP@0.5", "box_AP": "box AP", "mask_AP": "mask AP",
}  # fmt: skip


def curves_figure(history: Mapping, *, title: str = ""):
    """Training loss terms and validation metrics against the step, for any run length.

    Every ``loss*`` term of the history is drawn; points get markers when there are few of them
    (a two-step run still shows its loss), and steps are integers on the axis.

    Args:
        history: ``{"train": [{"step", "loss", ...}], "val": [{"step", "mIoU", ...}]}`` as saved in
            ``last.pt`` and ``metrics.json`` by either task's training.
        title: figure title.
    """
    from matplotlib.figure import Figure  # outside pyplot: no backend state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.2))
    (ax_loss, ax_val) = fig.subplots(1, 2)
    train = list(history.get("train", []))
    if not train:
        raise ValueError("history has no training entries ('train' is empty)")
    steps = [h["step"] for h in train]
    style = {"marker": "o", "markersize": 3} if len(steps) < 30 else {}
    for key in [k for k in train[0] if k.startswith("loss")]:
        ax_loss.plot(steps, [h.get(key, math.nan) for h in train], label=_CURVE_LABELS.get(key, key), **style)
    ax_loss.set(title="training loss", xlabel="step", ylabel="loss")
    ax_loss.legend(fontsize=8)
    val = list(history.get("val", []))
    for key in [k for k in _CURVE_LABELS if not k.startswith("loss")]:
        points = [(h["step"], h[key]) for h in val if h.get(key) is not None]
        if points:
            ax_val.plot(*zip(*points), marker="o", label=_CURVE_LABELS[key])
    ax_val.set(title="validation", xlabel="step", ylabel="%", ylim=(0, 100))
    if ax_val.lines:
        ax_val.legend(fontsize=8)
    every = steps + [h["step"] for h in val]
    lo, hi = min(every), max(every)
    pad = max(1.0, 0.03 * (hi - lo))  # one step at least: a short run still spans whole steps
    for ax in (ax_loss, ax_val):
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
