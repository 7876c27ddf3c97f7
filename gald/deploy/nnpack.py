"""Fast-convolution execution of wide 3×3 convolutions on CPU through NNPACK; the network is unchanged.

The GALD head's 3×3 convolutions (``conva`` 2048→512, ``convb`` 512→512 and the bottleneck
2560→512, all at 1/8 resolution) are a large share of GALD-Net's eval FLOPs (``docs/speed.md``). A direct
convolution (oneDNN) spends 2·C_in·C_out·9 multiply-adds per output pixel; NNPACK, which ships
inside PyTorch's x86 and ARM CPU builds, computes the same convolution with fast-convolution
algorithms (Winograd or FFT tiles, chosen by NNPACK from the output size) that need several times
fewer multiplications. The weights, the FLOP count of the network (which
counts the convolution as defined) and the function computed are unchanged; the results differ
from the direct convolution by fp32 rounding of the transforms, about 1e-5 of the output's scale
(see ``tests/test_nnpack.py`` and ``benchmarks/results/official_speed.md`` for measured errors).

:func:`convert_to_nnpack` swaps eligible ``nn.Conv2d`` modules for :class:`NNPACKConv2d`, which
shares their parameters (state dicts, optimisers and checkpoints are unaffected) and falls back to
the ordinary convolution wherever NNPACK does not apply: CUDA or non-fp32 tensors (autocast),
``torch.export`` / ONNX / TorchScript tracing, or a PyTorch build without NNPACK. Under
``torch.compile`` the NNPACK call runs between compiled graphs (a graph break per convolution).
Training works: the backward pass runs the input gradient through NNPACK as well (for a stride-1,
padding-1 3×3 convolution it is the convolution of the output gradient with the flipped, transposed
kernel); the weight gradient uses PyTorch's own convolution backward.

It pays off for wide convolutions on large maps — the paper's crops (513², 769²: 65² and 97²
features) — and loses on narrow convolutions and small maps (measurements: ``docs/speed.md`` and
``benchmarks/results/official_speed.md``). Hence the default ``min_channels=512``, and an opt-in
switch rather than a default.

Example::

    >>> model = gald_resnet50(mode="official").eval()
    >>> fast = optimize_for_inference(model, nnpack=True)   # fused, channels-last, NNPACK head convs
    >>> with torch.inference_mode():
    ...     logits = fast(images)["out"]
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

__all__ = ["NNPACKConv2d", "convert_to_nnpack", "nnpack_available", "nnpack_eligible"]

DEFAULT_MIN_CHANNELS = 512  # narrower convolutions gained little or lost (module docstring)


@functools.cache
def nnpack_available() -> bool:
    """Whether this PyTorch build has NNPACK and it initialises on this CPU.

    ``torch.backends.nnpack.is_available()`` also initialises NNPACK, which its convolution needs.
    """
    try:
        return bool(torch.backends.nnpack.is_available())
    except (RuntimeError, AttributeError):  # pragma: no cover - builds without the NNPACK bindings
        return False


def nnpack_eligible(conv: nn.Module, *, min_channels: int = DEFAULT_MIN_CHANNELS) -> bool:
    """Whether ``conv`` is a convolution NNPACK computes exactly as defined: 2-D, 3×3, stride 1,
    padding 1, dilation 1, no groups, zero padding, with at least ``min_channels`` input and output
    channels."""
    return (
        type(conv) in (nn.Conv2d, NNPACKConv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and min(conv.in_channels, conv.out_channels) >= min_channels
    )


class _NNPACKConv3x3(torch.autograd.Function):
    """3×3, stride-1, padding-1 convolution with NNPACK in the forward pass and for the input gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch._nnpack_spatial_convolution(x.contiguous(), weight.contiguous(), bias, [1, 1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # The transposed convolution of a stride-1, padding-1 3×3 convolution is itself one.
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            grad_x = torch._nnpack_spatial_convolution(grad, flipped, None, [1, 1])
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad, x.contiguous(), weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


class NNPACKConv2d(nn.Conv2d):
    """``nn.Conv2d`` (3×3, stride 1, padding 1) computed by NNPACK on CPU fp32 tensors.

    Same parameters, state-dict keys and function as ``nn.Conv2d``; only the algorithm differs.
    Falls back to ``F.conv2d`` on CUDA, for other dtypes, under autocast, while exporting or
    tracing, and where NNPACK is unavailable.

    Shape:
        (N, C_in, H, W) → (N, C_out, H, W), contiguous (NCHW) when NNPACK ran.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> NNPACKConv2d:
        """A :class:`NNPACKConv2d` sharing ``conv``'s weight and bias Parameters (not copies)."""
        if not nnpack_eligible(conv, min_channels=0):
            raise ValueError(f"NNPACKConv2d needs a 3×3, stride-1, padding-1, undilated, ungrouped conv; got {conv}")
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        return new.train(conv.training)

    def _nnpack_applies(self, x: torch.Tensor) -> bool:
        # Traceable checks only: under torch.compile this runs inside the graph.
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_exporting()  # export, ONNX and TorchScript record the plain conv
            and not torch.onnx.is_in_onnx_export()
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
        )

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._nnpack_applies(x):
            return self._conv(x)
        if torch.compiler.is_compiling():  # NNPACK has no fake-tensor kernel: run it between graphs
            return _nnpack_outside_graph(self, x)
        return _nnpack_conv(self, x)


def _nnpack_conv(conv: NNPACKConv2d, x: torch.Tensor) -> torch.Tensor:
    if not nnpack_available():
        return conv._conv(x)
    return _NNPACKConv3x3.apply(x, conv.weight, conv.bias)


_nnpack_outside_graph = torch.compiler.disable(_nnpack_conv)


def convert_to_nnpack(module: nn.Module, *, min_channels: int = DEFAULT_MIN_CHANNELS) -> nn.Module:
    """Swap, in place, every eligible ``nn.Conv2d`` of ``module`` for an :class:`NNPACKConv2d`.

    Eligible (:func:`nnpack_eligible`): 3×3, stride 1, padding 1, undilated, ungrouped, with at
    least ``min_channels`` input and output channels — in GALD-Net the head's ``conva``, ``convb``,
    bottleneck and aux 3×3 convolutions; the backbone's dilated convolutions keep oneDNN. Parameters
    are shared, so call it before building the optimiser or after, alike.

    Args:
        module: a model or sub-module; modified in place.
        min_channels: the smallest ``min(in_channels, out_channels)`` converted.

    Returns:
        ``module``, for chaining.
    """
    converted = _convert(module, min_channels)
    log.debug("convert_to_nnpack: %d convolutions", converted)
    if converted and not nnpack_available():
        log.warning("NNPACK is not available in this PyTorch build; NNPACKConv2d runs the ordinary convolution")
    return module


def _convert(module: nn.Module, min_channels: int) -> int:
    converted = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d and nnpack_eligible(child, min_channels=min_channels):
            setattr(module, name, NNPACKConv2d.from_conv(child))
            converted += 1
        else:
            converted += _convert(child, min_channels)
    return converted
