"""Write the embedded scene benchmark as Pascal VOC and COCO detection datasets.

    python data_scripts/make_synthetic_detection.py --out data/synthetic_detection
    python data_scripts/make_synthetic_detection.py --out /tmp/det --format coco --num-train 40 --num-val 10

Writes ``<out>/VOCdevkit/VOC2007`` (trainval = train scenes, test = val scenes) and/or
``<out>/coco/{annotations,train2017,val2017}``; the logic lives in :mod:`gald.data.detection`.
Then e.g. ``python -m gald.train --task detection --dataset voc --data-root <out>/VOCdevkit
--train-sets 2007/trainval``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gald.config import bounded
from gald.data.detection import check_layout_free, export_coco_layout, export_voc_layout
from gald.errors import HelpFormatter, add_debug_argument, command_errors


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["voc", "coco", "both"], default="both",
                        help="dataset layout(s) to write: voc, coco or both")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="benchmark seed")
    parser.add_argument("--num-train", type=bounded(int, 0), default=400, help="training scenes (VOC: trainval)")
    parser.add_argument("--num-val", type=bounded(int, 0), default=100, help="validation scenes (VOC: test)")
    parser.add_argument("--size", type=bounded(int, 32), nargs=2, default=[128, 256], metavar=("HEIGHT", "WIDTH"),
                        help="image size")
    parser.add_argument("--force", action="store_true", help="replace the files of an earlier export in --out")
    add_debug_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    voc, coco = os.path.join(args.out, "VOCdevkit", "VOC2007"), os.path.join(args.out, "coco")
    with command_errors(parser.prog, debug=args.debug):
        for folder, wanted in ((voc, ("voc", "both")), (coco, ("coco", "both"))):
            if args.format in wanted:  # both checked before either is written
                check_layout_free(folder, force=args.force)
        if args.format in ("voc", "both"):
            export_voc_layout(args.out, seed=args.seed, num_trainval=args.num_train, num_test=args.num_val,
                              size=tuple(args.size), force=args.force)
        if args.format in ("coco", "both"):
            export_coco_layout(coco, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                               size=tuple(args.size), force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
