"""ONNX Runtime as a backend for inference: gald's own ONNX export, run by onnxruntime.

:func:`onnxruntime_model` exports a segmentation model (:func:`gald.deploy.export.export_onnx`,
dynamic batch, height and width) into a temporary file and returns an :class:`OnnxRuntimeModel`,
which answers ``model(images) -> {"out": logits}`` like the network itself, so the test protocols
of :func:`gald.engine.inference.infer` (whole image, sliding windows, scales, flips) run on it
unchanged. ``python -m gald.predict --backend onnxruntime`` and the app's ``--backend`` use it.
Only the logits are exported: LD masks, stages and attribution still use the PyTorch model.
Needs the ``export`` extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import torch
from torch import nn

from gald.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["OnnxRuntimeModel", "onnxruntime_model"]


class OnnxRuntimeModel(nn.Module):
    """An ONNX Runtime session that is called like a gald segmentor (logits only).

    Args:
        session: an ``onnxruntime.InferenceSession`` of a :func:`~gald.deploy.export.export_onnx` file.
        align_corners: the exported model's, for the protocol's resizes.

    Shape:
        images (N, 3, H, W) float32 -> {"out": (N, K, H, W) float32}
    """

    def __init__(self, session, *, align_corners: bool = False) -> None:
        super().__init__()
        self.session = session
        self.align_corners = align_corners

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return {"out": torch.from_numpy(self.session.run(["logits"], {"images": x})[0]).to(images.device)}


def onnxruntime_model(
    model: nn.Module, *, threads: int | None = None, example_size: tuple[int, int] = (128, 256)
) -> OnnxRuntimeModel:
    """Export ``model`` to ONNX with dynamic shapes and load it in onnxruntime (CPU).

    Args:
        model: a segmentation ``GALDNet`` (not modified).
        threads: onnxruntime's intra-op threads (default: torch's ``get_num_threads()``).
        example_size: the tracing input's ``(H, W)``.

    Raises:
        ConfigError: onnxruntime is not installed.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("--backend onnxruntime needs onnxruntime: pip install -e '.[export]'") from None
    from .export import export_onnx

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gald-onnx-") as folder:
        path = os.path.join(folder, "model.onnx")
        export_onnx(model.eval(), path, example_size=example_size)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])  # reads the file now
    log.info("exported the model to ONNX and loaded it in onnxruntime %s (%.1f s)", ort.__version__,
             time.perf_counter() - started)
    return OnnxRuntimeModel(session, align_corners=getattr(model, "align_corners", False))
