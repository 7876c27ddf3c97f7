"""Extract the Mapillary Vistas v1.2 archives into the dataset layout, then verify it.

    python data_scripts/prepare_mapillary.py --archives DOWNLOADS --out data/mapillary [--strict] [--max-paths 10]
    python data_scripts/prepare_mapillary.py --verify-only data/mapillary

Archives (download by hand from https://www.mapillary.com/dataset/vistas): mapillary-vistas-dataset_public_v1.2.zip.
Re-running skips files already extracted. Verification checks that every image has its label, the
PNG modes, the label values, and the counts per split against the official ones (18000/2000/5000):
fewer is a warning, an error with --strict. Exits 1 on any error, naming the first offending paths.
The logic lives in gald.data.prepare; see docs/data.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gald.data.prepare import prepare


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--archives", help="folder holding the downloaded zip archives (use with --out)")
    mode.add_argument("--verify-only", metavar="ROOT", help="only verify an extracted dataset root")
    parser.add_argument("--out", help="dataset root to create or complete")
    parser.add_argument("--strict", action="store_true", help="fewer images than the official counts is an error")
    parser.add_argument("--max-paths", type=int, default=10, help="offending paths listed per problem")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.archives is not None and args.out is None:
        raise SystemExit("error: --archives needs --out ROOT")
    root = args.verify_only if args.verify_only is not None else args.out
    return prepare("mapillary", archives=args.archives, out=root, strict=args.strict, max_paths=args.max_paths)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    sys.exit(main(get_args_parser().parse_args()))
