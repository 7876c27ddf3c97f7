"""Activation checkpointing of backbone stages: less training memory for one more forward.

A lever of the engine, applied to a built model, not part of the architecture: a checkpointed
stage computes the same outputs, gradients and BatchNorm statistics, bit for bit.

    set_activation_checkpointing(model.backbone, ("layer3", "layer4"), policy="selective")

Each residual block of a named stage then keeps only its input for backward and is recomputed in
backward (``torch.utils.checkpoint``, non-reentrant), in training with gradients enabled; in eval
or under ``no_grad`` it runs as usual. The blocks keep their parameters and state-dict keys: the
wrapper replaces the instance's ``forward`` (as ``torch.compile`` does), not the module.

Policies (:data:`gald.config.CHECKPOINT_POLICIES`):

* ``"full"`` — recompute the whole block.
* ``"selective"`` — keep the 3×3 convolution outputs (about half of a bottleneck's FLOPs) and
  recompute the rest (1×1 convolutions, BatchNorm, ReLU, the residual add).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from gald.config import CHECKPOINT_POLICIES, UnknownChoiceError, check_choice
from gald.models.backbones import STAGES

__all__ = ["CHECKPOINT_POLICIES", "checkpointed_stages", "set_activation_checkpointing", "activation_checkpointing"]


class _CheckpointedForward:
    """A block's ``forward`` that checkpoints the original one in training."""

    def __init__(self, block: nn.Module, forward: Callable, policy: str) -> None:
        self.block, self.forward, self.policy = block, forward, policy

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.block.training and torch.is_grad_enabled()):
            return self.forward(x)
        # The recompute must not update BN statistics twice.
        contexts = partial(_recompute_contexts, self.block, self.policy)
        return checkpoint(self.forward, x, use_reentrant=False, context_fn=contexts)


def checkpointed_stages(value: bool | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise an activation-checkpointing value: ``True`` → every stage, ``False``/``None`` →
    none, a stage name or a sequence of them → those, in network order (validated)."""
    if value is None or value is False:
        return ()
    if value is True:
        return STAGES
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if n not in STAGES]
    if bad:
        raise UnknownChoiceError(
            f"unknown stage(s) {bad} for activation_checkpointing; valid: True, False or names from {list(STAGES)}"
        )
    return tuple(n for n in STAGES if n in names)


def set_activation_checkpointing(
    backbone: nn.Module, stages: bool | Sequence[str] | None = True, *, policy: str = "full"
) -> tuple[str, ...]:
    """Checkpoint the residual blocks of ``stages`` of ``backbone`` (a ResNet trunk with ``layer1``–
    ``layer4``) under ``policy``; the other stages run plainly. Calling it again replaces the
    previous setting; ``stages=False`` turns checkpointing off.

    Returns:
        The checkpointed stages, in network order.
    """
    check_choice("checkpoint_policy", policy, CHECKPOINT_POLICIES)
    chosen = checkpointed_stages(stages)
    for name in STAGES:
        for block in getattr(backbone, name):
            block.__dict__.pop("forward", None)  # back to the class's forward
            if name in chosen:
                block.forward = _CheckpointedForward(block, block.forward, policy)
    return chosen


def activation_checkpointing(backbone: nn.Module) -> tuple[tuple[str, ...], str | None]:
    """The checkpointed stages of ``backbone`` and their policy (``((), None)`` when none)."""
    stages, policies = [], set()
    for name in STAGES:
        wrapped = [b.forward for b in getattr(backbone, name) if isinstance(b.forward, _CheckpointedForward)]
        if wrapped:
            stages.append(name)
            policies.update(w.policy for w in wrapped)
    return tuple(stages), (policies.pop() if policies else None)


def _recompute_contexts(block: nn.Module, policy: str = "full"):
    """``context_fn`` of a checkpointed block: BN statistics frozen in the recompute; under the
    ``"selective"`` policy, 3×3 convolution outputs saved in forward and replayed in the recompute."""
    if policy == "full":
        return nullcontext(), _frozen_running_stats(block)
    forward, recompute = create_selective_checkpoint_contexts(_save_3x3_conv_outputs)
    return forward, _entered(_frozen_running_stats(block), recompute)  # freeze outside SAC's dispatch mode


def _save_3x3_conv_outputs(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """Selective-checkpoint policy: keep what is costly to recompute (3×3 convolutions, ~half the
    FLOPs of a bottleneck), recompute the rest (1×1 convolutions, BatchNorm, ReLU, the residual add)."""
    if op is torch.ops.aten.convolution.default and args[1].shape[-2:] == (3, 3):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


@contextmanager
def _entered(*contexts) -> Iterator[None]:
    """Enter ``contexts`` in order and leave them in reverse."""
    with ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


@contextmanager
def _frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """While active, BatchNorms in ``module`` keep their running statistics as they are: the
    checkpoint recompute must not apply the momentum update a second time.

    A momentum of 0 makes the update ``1·running + 0·batch`` (the op and the saved tensors stay
    those of the first forward, which the checkpoint requires); the step counter is restored.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
