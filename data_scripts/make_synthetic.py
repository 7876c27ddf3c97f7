"""Write the synthetic street-scene benchmark to disk in the Cityscapes layout.

    python data_scripts/make_synthetic.py --out data/synthetic [--seed 0] [--train 400 --val 100 --test 100]
        [--height 128 --width 256] [--version 1] [--force]

Read it back with ``CityscapesSegmentation(DIR, label_map=synthetic_label_map())``. The logic lives in
``gald.data.synthetic.export_cityscapes_layout``; see docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import logging

from gald.config import bounded
from gald.data.synthetic import GENERATOR_VERSION, GENERATOR_VERSIONS, export_cityscapes_layout
from gald.errors import HelpFormatter, add_debug_argument, command_errors


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to create or update")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="benchmark seed")
    parser.add_argument("--train", type=bounded(int, 0), default=400, help="training images")
    parser.add_argument("--val", type=bounded(int, 0), default=100, help="validation images")
    parser.add_argument("--test", type=bounded(int, 0), default=100, help="test images")
    parser.add_argument("--height", type=bounded(int, 32), default=128, help="image height")
    parser.add_argument("--width", type=bounded(int, 32), default=256, help="image width")
    parser.add_argument("--version", type=int, default=GENERATOR_VERSION, choices=GENERATOR_VERSIONS,
                        help=f"benchmark version, one of: {', '.join(map(str, GENERATOR_VERSIONS))} (docs/synthetic.md)")
    parser.add_argument("--force", action="store_true", help="overwrite files whose content differs")
    add_debug_argument(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, int]:
    return export_cityscapes_layout(
        args.out,
        seed=args.seed,
        counts={"train": args.train, "val": args.val, "test": args.test},
        size=(args.height, args.width),
        version=args.version,
        force=args.force,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args()
    with command_errors(parser.prog, debug=args.debug):
        main(args)
