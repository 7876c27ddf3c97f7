"""ONNX export of a segmentation model, checked in onnxruntime (``python -m gald.export``).

The exported graph maps ``images`` (N, 3, H, W) float32 to ``logits`` (N, K, H, W), with N, H and W
dynamic (torch's dynamo-based exporter). :func:`onnx_max_abs_diff` runs the file in onnxruntime on
random inputs of two sizes and reports the largest absolute difference from PyTorch. Needs the
``export`` extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import logging
import itertools
import os

import torch
from torch import nn

from gald.errors import ConfigError

# the name of the command's log (``python -m gald.export``), kept when this moved here
log = logging.getLogger("gald.export")

__all__ = ["export_onnx", "onnx_max_abs_diff"]


class _Logits(nn.Module):
    """The model with a plain tensor output (ONNX graphs have named outputs, not dicts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


def export_onnx(model: nn.Module, path: str | os.PathLike, *, example_size: tuple[int, int] = (128, 256)) -> str:
    """Export ``model`` (eval mode) to ONNX with dynamic batch, height and width.

    Args:
        model: a ``GALDNet``.
        path: output ``.onnx`` file.
        example_size: ``(H, W)`` of the example input used for tracing.

    Shape:
        images (N, 3, H, W) -> logits (N, K, H, W)
    """
    wrapper = _Logits(model).eval()
    n_bytes = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
    if n_bytes >= 2**31 - 2**26:  # protobuf's 2 GB limit, with room for the graph
        raise ConfigError(f"the model's weights take {n_bytes / 2**30:.2f} GiB: too large for one self-contained ONNX file")
    example = torch.randn(2, 3, *example_size)
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=33, max=8192),
        3: torch.export.Dim("width", min=33, max=8192),
    }
    torch.onnx.export(
        wrapper, (example,), os.fspath(path), dynamo=True, dynamic_shapes={"images": dims},
        input_names=["images"], output_names=["logits"], external_data=False,  # one self-contained file
    )
    log.info("wrote %s", path)
    return os.fspath(path)


def onnx_max_abs_diff(model: nn.Module, path: str | os.PathLike, sizes=((1, 97, 131), (2, 128, 256))) -> float:
    """Largest |onnxruntime − PyTorch| over random inputs of the given (N, H, W) sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    model = model.eval()
    worst = 0.0
    for n, h, w in sizes:
        x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(h * w))
        with torch.no_grad():
            ref = model(x)["out"]
        out = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
        if out.shape != ref.shape:
            raise RuntimeError(f"ONNX output {tuple(out.shape)} differs from PyTorch's {tuple(ref.shape)}")
        worst = max(worst, float((out - ref).abs().max()))
    return worst
