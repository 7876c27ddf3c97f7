"""Extract the Mapillary Vistas v1.2 archives into the dataset layout, then verify it.

    python data_scripts/prepare_mapillary.py --archives DOWNLOADS --out data/mapillary [--strict] [--max-paths 10]
    python data_scripts/prepare_mapillary.py --verify-only data/mapillary

Archives (download by hand from https://www.mapillary.com/dataset/vistas): mapillary-vistas-dataset_public_v1.2.zip.
Re-running skips files already extracted. Verification checks that every image has its label, the
PNG modes, the label values, and the counts per split against the official ones (18000/2000/5000):
fewer is a warning, an error with --strict. Exits 1 when verification finds problems, naming the first
offending paths; 2 (one line) for a missing or damaged archive or root.
The logic lives in gald.data.prepare; see docs/data.md.
"""

from __future__ import annotations

import logging
import sys

from gald.data import prepare
from gald.errors import command_errors


def get_args_parser():
    return prepare.get_args_parser(__doc__.splitlines()[0])


def main(args) -> int:
    return prepare.main("mapillary", args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    parser = get_args_parser()
    args = parser.parse_args()
    with command_errors(parser.prog, debug=args.debug):
        sys.exit(main(args))
