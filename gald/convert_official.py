"""Convert the authors' GALD-Net weights (github.com/lxtGH/GALD-Net) to ``gald`` official mode, and back.

The authors' ``libs/models/GALDNet.py`` and ``gald`` in ``mode="official"`` are the same network;
only the names of the head's modules differ (the backbone keys are identical up to a ``backbone.``
prefix). The mapping is one table of key prefixes, read in one direction or the other.

Command line::

    python -m gald.convert_official GALD_res101_city.pth gald_r101_official.pt --arch gald_resnet101

The output is a ``gald`` checkpoint (``{"model", "config", "classes", ...}``) that
``gald.models.load_model`` and ``python -m gald.evaluate`` read; the input is never overwritten.
The conversion is :mod:`gald.deploy.official`; this module parses the flags.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gald.deploy.official import OFFICIAL_ARCHS, convert
from gald.errors import HelpFormatter, add_debug_argument, command_errors

# Deprecated aliases (moved to gald.deploy.official in 0.2.0), kept for one minor release.
from gald.deploy.official import PREFIXES, gald_to_official, load_official, official_to_gald  # noqa: F401

__all__ = ["official_to_gald", "gald_to_official", "load_official", "convert", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gald.convert_official", description="Convert the authors' GALD-Net weights to a gald checkpoint.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("src", help="the authors' .pth state dict")
    parser.add_argument("dst", help="gald checkpoint to write")
    parser.add_argument("--arch", default="gald_resnet101", choices=OFFICIAL_ARCHS,
                        help=f"the network the weights belong to, one of: {', '.join(OFFICIAL_ARCHS)}")
    parser.add_argument("--force", action="store_true", help="replace an existing output file (never the input)")
    add_debug_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with command_errors(parser.prog, debug=args.debug):
        convert(args.src, args.dst, arch=args.arch, force=args.force)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    sys.exit(main())
