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

from gald.data.detection import export_coco_layout, export_voc_layout
from gald.errors import add_debug_argument, command_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["voc", "coco", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=[128, 256], metavar=("HEIGHT", "WIDTH"))
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    with command_errors(parser.prog, debug=args.debug):
        if args.format in ("voc", "both"):
            export_voc_layout(args.out, seed=args.seed, num_trainval=args.num_train, num_test=args.num_val,
                              size=tuple(args.size))
        if args.format in ("coco", "both"):
            export_coco_layout(os.path.join(args.out, "coco"), seed=args.seed, num_train=args.num_train,
                               num_val=args.num_val, size=tuple(args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
