"""What a training run reports while it goes, for people and for tools (rank 0 only).

* ``train.log`` (and stdout): one line per log interval with every loss term, the learning rate and
  the throughput, and one per evaluation with the validation metrics.
* TensorBoard event files in the run folder (``torch.utils.tensorboard``): ``tensorboard --logdir
  runs`` shows every run by name. Tags are ``train/<term>``, ``train/lr``, ``train/images_per_s``
  and ``val/<metric>``.
* ``metrics.csv`` in the run folder: the same scalars, one row each (``step,tag,value,wall_time``),
  for a spreadsheet or ``pandas.read_csv(...).pivot(index="step", columns="tag", values="value")``.

A resumed run continues both files from its checkpoint's step: what an interrupted run logged after
that step is dropped (TensorBoard's ``purge_step``; the CSV rows are rewritten), so each step is
reported once.

Example::

    tracker = RunTracker(run_dir, total=600, start=0, images_per_step=8)
    tracker.train(25, {"loss": 1.3, "loss_main": 1.0, "loss_aux": 0.7}, lr=0.0096)
    tracker.validation(300, {"mIoU": 61.2, "boundary_mIoU": 40.1})
    tracker.close()
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Mapping

__all__ = ["CSV_NAME", "CSV_FIELDS", "RunTracker", "read_metrics_csv", "save_curves"]

CSV_NAME = "metrics.csv"
CSV_FIELDS = ("step", "tag", "value", "wall_time")


class RunTracker:
    """Log lines, TensorBoard scalars and ``metrics.csv`` rows of one run.

    Args:
        run_dir: the run folder (written: ``metrics.csv`` and ``events.out.tfevents.*``).
        total: the run's last step (shown as ``step k/total``).
        start: the step the run starts or resumes from; later rows of an earlier attempt are dropped.
        images_per_step: images of one optimiser step over all processes (the global batch), for
            the throughput.
        log: where the lines go.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        total: int,
        start: int = 0,
        images_per_step: int = 1,
        log: logging.Logger | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.total = int(total)
        self.images_per_step = int(images_per_step)
        self.log = log or logging.getLogger(__name__)
        path = os.path.join(run_dir, CSV_NAME)
        kept = []
        if start and os.path.isfile(path):  # a resumed run keeps what came before its checkpoint
            # the end-of-run evaluation follows the last checkpoint: resumed there, it runs again
            kept = [r for r in read_metrics_csv(path)
                    if r["step"] < start or (r["step"] == start and (start < total or r["tag"].startswith("train/")))]
        tmp = os.path.join(run_dir, f".tmp-{os.getpid()}-{CSV_NAME}")
        with open(tmp, "w", newline="") as f:  # rewritten whole, then renamed: a kill leaves the old file
            writer = csv.writer(f)
            writer.writerow(CSV_FIELDS)
            writer.writerows([r["step"], r["tag"], repr(r["value"]), f"{r['wall_time']:.3f}"] for r in kept)
        os.replace(tmp, path)
        self._file = open(path, "a", newline="")
        self._csv = csv.writer(self._file)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported when a run starts, not with gald

            # events of an earlier attempt after ``start`` are dropped (all of them for a start at 0)
            self._tb = SummaryWriter(os.fspath(run_dir), purge_step=start + 1)
        self._clock = (time.perf_counter(), int(start))

    def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        """Write ``prefix/<name>`` for every finite number in ``values``."""
        now = time.time()
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                tag = f"{prefix}/{name}"
                self._csv.writerow([step, tag, repr(float(value)), f"{now:.3f}"])
                if self._tb is not None:
                    self._tb.add_scalar(tag, float(value), step, walltime=now)
        self._file.flush()

    def train(self, step: int, losses: Mapping[str, float], lr: float) -> None:
        """One log interval: the mean of each loss term since the last call, the learning rate and
        the images per second since the last call (or evaluation)."""
        t0, step0 = self._clock
        now = time.perf_counter()
        rate = (step - step0) * self.images_per_step / (now - t0) if now > t0 and step > step0 else math.nan
        self._clock = (now, step)
        terms = ", ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in losses.items() if k != "loss")
        self.log.info("step %d/%d  loss %.4f%s  lr %.3g  %.1f img/s", step, self.total, losses["loss"],
                      f" ({terms})" if terms else "", lr, rate)
        self.scalars(step, {**{k.removeprefix("loss_") if k != "loss" else k: v for k, v in losses.items()},
                            "lr": lr, "images_per_s": rate}, "train")

    def validation(self, step: int, metrics: Mapping[str, float], *, prefix: str = "val") -> None:
        """Validation metrics at ``step``, logged as one line; the throughput clock restarts after it."""
        shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, (int, float)))
        self.log.info("step %d/%d  %s: %s", step, self.total, prefix, shown)
        self.scalars(step, metrics, prefix)
        self._clock = (time.perf_counter(), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_curves(history: Mapping, path: str | os.PathLike) -> None:
    """Write a run's ``curves.png`` (:func:`gald.viz.curves.curves_figure`)."""
    from gald.viz.curves import curves_figure  # matplotlib only when a run ends

    curves_figure(history).savefig(path, dpi=150)


def read_metrics_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a run's ``metrics.csv``: ``{"step": int, "tag": str, "value": float, "wall_time": float}``.

    A row cut short (a kill during a write) is skipped.
    """
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                rows.append({"step": int(r["step"]), "tag": r["tag"], "value": float(r["value"]),
                             "wall_time": float(r["wall_time"])})
            except (TypeError, ValueError):
                continue
    return rows
