"""Verify a folder dataset (classes.json, images/, masks/, optional splits/) for ``dataset: folder``.

    python data_scripts/prepare_folder.py --verify-only data/mydata [--max-paths 10]

Loads every image and mask, so unknown mask values or colours, wrong modes, missing masks and bad
split files are found before training. Exits 1 when it finds problems; 2 (one line) when ROOT is
missing. The format is in docs/data.md; the logic lives in ``gald.data.prepare.verify_folder``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gald.config import bounded
from gald.data.prepare import verify_folder
from gald.errors import HelpFormatter, MissingFileError, add_debug_argument, command_errors

log = logging.getLogger("prepare_folder")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--verify-only", metavar="ROOT", required=True, help="the folder dataset root")
    parser.add_argument("--max-paths", type=bounded(int, 1), default=10, help="offending paths listed per problem")
    add_debug_argument(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    if not Path(args.verify_only).is_dir():
        raise MissingFileError(f"dataset root {args.verify_only} does not exist (a folder dataset: docs/data.md, 'Your own data')")
    report = verify_folder(args.verify_only, max_paths=args.max_paths)
    (log.info if report.ok else log.error)("%s", report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    parser = get_args_parser()
    args = parser.parse_args()
    with command_errors(parser.prog, debug=args.debug):
        sys.exit(main(args))
