"""``python -m gald.export`` — ONNX export of a trained segmentation model, checked in onnxruntime.

The exported graph maps ``images`` (N, 3, H, W) float32 to ``logits`` (N, K, H, W), with N, H and W
dynamic (torch's dynamo-based exporter). ``--check`` runs the file in onnxruntime on random inputs
of two sizes and reports the largest absolute difference from PyTorch. Needs the ``export`` extra
(onnx, onnxruntime, onnxscript). The work is :mod:`gald.deploy.export`; this module parses the flags.

    python -m gald.export --checkpoint runs/gald-cgnl_tiny-d2_synthetic-v2-128x256/model.pt --out gald.onnx --check
"""

from __future__ import annotations

import argparse
import logging
import sys

from gald.config import bounded
from gald.deploy.export import export_onnx, onnx_max_abs_diff
from gald.errors import HelpFormatter, add_debug_argument, command_errors
from gald.files import check_output
from gald.models import load_model

log = logging.getLogger("gald.export")

__all__ = ["export_onnx", "onnx_max_abs_diff", "get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.export", description="Export a gald segmentation checkpoint to ONNX.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model.pt written by gald.train")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--height", type=bounded(int, 1), default=128, help="example height for tracing")
    parser.add_argument("--width", type=bounded(int, 1), default=256, help="example width for tracing")
    parser.add_argument("--check", action="store_true", help="compare with PyTorch in onnxruntime")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    add_debug_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> float | None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        check_output(args.out, inputs=[args.checkpoint], force=args.force, what="--out")
        model = load_model(args.checkpoint, task="segmentation").eval()
        export_onnx(model, args.out, example_size=(args.height, args.width))
        if args.check:
            diff = onnx_max_abs_diff(model, args.out)
            log.info("onnxruntime vs PyTorch: max abs difference %.3g", diff)
            return diff
    return None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main()
