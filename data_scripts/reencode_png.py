"""Copy a dataset with its PNGs re-encoded for fast decoding (lossless, verified pixel by pixel).

    python data_scripts/reencode_png.py --src data/cityscapes --out data/cityscapes-up [--level 6] [--force]

8-bit RGB and grayscale PNGs (Cityscapes' leftImg8bit and labelIds files) are rewritten with the
"Up" row filter, which PIL decodes in about half the time, at about the same size; every other file
is copied unchanged. Point ``data_root`` at the new folder. The logic lives in ``gald.data.png``;
docs/speed.md has the measurement.
"""

from __future__ import annotations

import argparse
import logging

from gald.config import bounded
from gald.data.png import reencode_tree
from gald.errors import HelpFormatter, add_debug_argument, command_errors


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--src", required=True, help="dataset root to read (never modified)")
    parser.add_argument("--out", required=True, help="new dataset root to write (must not exist or be empty)")
    parser.add_argument("--level", type=bounded(int, 0, 9), default=6, help="zlib compression level")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing its files")
    add_debug_argument(parser)
    return parser


def main(args: argparse.Namespace):
    return reencode_tree(args.src, args.out, level=args.level, force=args.force)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args()
    with command_errors(parser.prog, debug=args.debug):
        main(args)
