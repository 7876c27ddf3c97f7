"""Pieces of the training loop shared by segmentation (:mod:`gald.engine.segmentation`) and detection
(:mod:`gald.engine.detection`) training."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LossMeter", "non_finite_stop"]


class LossMeter:
    """Running means of the per-step loss terms, read (and reset) once per log interval."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0

    def update(self, losses: Mapping[str, float]) -> None:
        for k, v in losses.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1

    def pop(self) -> dict[str, float]:
        """The means since the last ``pop``; the meter starts over."""
        means = {k: v / self._count for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return means


def non_finite_stop(err: Exception, step: int, lr: float, last_path: str) -> FloatingPointError:
    """The error that stops training at a non-finite loss (``step`` counted from 1); the last
    checkpoint was written before this step, so it is good and says so."""
    return FloatingPointError(
        f"stopping at step {step}: {err}; lr={lr:.3g}. The last good checkpoint ({last_path}) was left untouched."
    )
