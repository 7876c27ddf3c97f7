"""Segmentation losses: OHEM cross-entropy (Section 3.3) and the main + aux criterion.

Losses live outside the models; models return ``{"out", "aux"}`` and the criterion reads them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["OhemCrossEntropy", "SegmentationCriterion", "build_criterion"]


class OhemCrossEntropy(nn.Module):
    """Online hard example mining cross-entropy, as the authors train GALD-Net.

    Pixels whose predicted probability of the true class is at most ``thresh`` are kept. If fewer
    than ``min_kept × batch`` pixels pass, the threshold rises to the probability of the
    ``min_kept × batch``-th hardest valid pixel, so that at least that many are kept. If the batch
    has fewer valid pixels than that, every valid pixel is kept. The loss is the mean cross-entropy
    over the kept pixels (class-weighted like ``nn.CrossEntropyLoss`` when ``weight`` is given).

    Args:
        thresh: probability threshold (0.7 in the paper's recipe).
        min_kept: pixels kept **per image** at least (100 000 for a 769×769 crop); scaled by the
            local batch size, as each of the authors' 8 GPUs held one image.
        ignore_index: label value that is never a training pixel.
        weight: optional per-class weights.

    Shape:
        logits (N, K, H, W), target (N, H, W) int64 -> scalar
    """

    def __init__(
        self,
        *,
        thresh: float = 0.7,
        min_kept: int = 100_000,
        ignore_index: int = 255,
        weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"OHEM thresh must be in (0, 1], got {thresh}")
        if min_kept < 0:
            raise ValueError(f"OHEM min_kept must be >= 0, got {min_kept}")
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight, persistent=False)

    @torch.no_grad()
    def kept_mask(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The boolean (N, H, W) mask of pixels the loss averages over."""
        valid = target != self.ignore_index
        num_valid = int(valid.sum())
        min_kept = self.min_kept * logits.shape[0]
        if num_valid == 0 or min_kept > num_valid:
            return valid
        safe_target = target.masked_fill(~valid, 0)
        prob = logits.float().softmax(dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        threshold = self.thresh
        if min_kept > 0:
            kth = prob[valid].kthvalue(min_kept).values.item()
            threshold = max(threshold, kth)
        return valid & (prob <= threshold)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        kept = self.kept_mask(logits, target)
        target = target.masked_fill(~kept, self.ignore_index)
        if not kept.any():  # nothing to learn from; keep the graph, avoid 0/0
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index)


class SegmentationCriterion(nn.Module):
    """``main(out) + aux_weight · CE(aux)``: OHEM (or CE) on the main output only, plain CE × 0.4 on
    the aux output, as the authors' ``CriterionOhemDSN``.

    Args:
        main: loss on ``outputs["out"]``.
        aux_weight: weight of the aux loss (0.4).
        ignore_index: label value ignored by the aux CE.

    Returns:
        ``{"loss": total, "loss_main": ..., "loss_aux": ...}`` (``loss_aux`` only if ``"aux"`` is present).
    """

    def __init__(self, main: nn.Module, *, aux_weight: float = 0.4, ignore_index: int = 255) -> None:
        super().__init__()
        self.main = main
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {"loss_main": self.main(outputs["out"], target)}
        total = losses["loss_main"]
        if "aux" in outputs and self.aux_weight:
            losses["loss_aux"] = F.cross_entropy(outputs["aux"].float(), target, ignore_index=self.ignore_index)
            total = total + self.aux_weight * losses["loss_aux"]
        losses["loss"] = total
        return losses


def build_criterion(
    *,
    ohem: bool = True,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    aux_weight: float = 0.4,
    ignore_index: int = 255,
) -> SegmentationCriterion:
    """The paper's criterion (``ohem=True``) or plain CE on both outputs (``ohem=False``)."""
    main: nn.Module = (
        OhemCrossEntropy(thresh=thresh, min_kept=min_kept, ignore_index=ignore_index)
        if ohem
        else nn.CrossEntropyLoss(ignore_index=ignore_index)
    )
    return SegmentationCriterion(main, aux_weight=aux_weight, ignore_index=ignore_index)
