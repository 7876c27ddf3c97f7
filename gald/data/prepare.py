"""Unpack the official Cityscapes / Mapillary Vistas archives and verify the resulting trees.

``data_scripts/prepare_cityscapes.py`` and ``prepare_mapillary.py`` are thin wrappers over
:func:`extract_archives`, :func:`verify_cityscapes` and :func:`verify_mapillary`.

Extraction is idempotent: a member whose file already exists with the archive's size is skipped;
others are written to a temporary name and renamed, so an interrupted run never leaves a
half-written file that a re-run would take for complete. Verification decodes every label (and
checks every image's PNG/JPEG structure), and reports counts per split against the official ones
(fewer is a warning, an error with ``strict``), plus the first offending paths of each problem.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from gald.config import bounded
from gald.errors import ConfigError, HelpFormatter, InputFileError, MissingFileError, add_debug_argument

from .mapillary import MAPILLARY_CLASSES, check_config

__all__ = [
    "CITYSCAPES_COUNTS",
    "MAPILLARY_COUNTS",
    "VerifyReport",
    "extract_archives",
    "verify_cityscapes",
    "verify_folder",
    "verify_mapillary",
]

log = logging.getLogger(__name__)

#: Official image counts: fine splits, and coarse ``train_extra``.
CITYSCAPES_COUNTS = {"train": 2975, "val": 500, "test": 1525, "train_extra": 19998}
MAPILLARY_COUNTS = {"training": 18000, "validation": 2000, "testing": 5000}


@dataclass
class VerifyReport:
    """What :func:`verify_cityscapes` / :func:`verify_mapillary` found.

    Attributes:
        root: the dataset root.
        counts: images per split found.
        errors: problem → offending paths (first ``max_paths``) and total count.
        warnings: messages that do not fail verification (without ``strict``).
    """

    root: Path
    max_paths: int = 10
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, tuple[list[str], int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, problem: str, path: os.PathLike | str) -> None:
        paths, n = self.errors.get(problem, ([], 0))
        if len(paths) < self.max_paths:
            paths.append(str(path))
        self.errors[problem] = (paths, n + 1)

    def format(self) -> str:
        lines = [f"dataset root {self.root}"]
        lines += [f"  {split}: {n} images" for split, n in self.counts.items()]
        lines += [f"WARNING: {w}" for w in self.warnings]
        for problem, (paths, n) in self.errors.items():
            lines.append(f"ERROR: {problem}: {n} file(s)" + (f", first {len(paths)}:" if n > len(paths) else ":"))
            lines += [f"    {p}" for p in paths]
        lines.append("OK" if self.ok else f"FAILED: {sum(n for _, n in self.errors.values())} problem file(s)")
        return "\n".join(lines)


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"archive member {name!r} would escape the output folder")
    return path


def extract_archives(
    archives_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    strip_prefix: str | None = None,
) -> dict[str, int]:
    """Extract the named zip archives from ``archives_dir`` into ``out_root``.

    Args:
        archives_dir: folder holding the downloaded archives.
        out_root: dataset root to create or complete.
        required: archive names that must be present (``FileNotFoundError`` lists the missing ones).
        optional: archive names extracted when present.
        strip_prefix: a leading folder to drop from member paths when every member has it
            (some re-packed archives wrap the tree in one folder).

    Returns:
        ``{"written": n, "skipped": n}`` member counts.

    Raises:
        FileNotFoundError: a required archive is missing.
        zipfile.BadZipFile: an archive is damaged (the message names it and the member).
    """
    archives_dir, out_root = Path(archives_dir), Path(out_root)
    missing = [name for name in required if not (archives_dir / name).is_file()]
    if missing:
        raise MissingFileError(
            f"missing archive(s) {missing} in {archives_dir}; found: {sorted(p.name for p in archives_dir.glob('*.zip'))}"
        )
    stats = {"written": 0, "skipped": 0}
    for name in list(required) + [n for n in optional if (archives_dir / n).is_file()]:
        archive = archives_dir / name
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                prefix = strip_prefix
                if prefix is not None and not all(m.filename.startswith(prefix + "/") for m in members):
                    prefix = None
                for info in members:
                    rel = _safe_member(info.filename[len(prefix) + 1 :] if prefix else info.filename)
                    target = out_root.joinpath(*rel.parts)
                    if target.is_file() and target.stat().st_size == info.file_size:
                        stats["skipped"] += 1
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(target.name + ".part")
                    try:
                        with zf.open(info) as src, open(tmp, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                    except (zipfile.BadZipFile, OSError, EOFError) as exc:
                        tmp.unlink(missing_ok=True)
                        raise zipfile.BadZipFile(f"archive {archive} is damaged at member {info.filename}: {exc}") from exc
                    os.replace(tmp, target)
                    stats["written"] += 1
        except zipfile.BadZipFile as exc:
            if str(archive) in str(exc):
                raise
            raise zipfile.BadZipFile(f"archive {archive} is not a readable zip file ({exc}); download it again") from exc
        log.info("extracted %s", archive)
    log.info("%s: %d files written, %d already complete", out_root, stats["written"], stats["skipped"])
    return stats


def _check_image(report: VerifyReport, path: Path, modes: Iterable[str]) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
            img.verify()  # structure and checksums, without decoding pixels
    except Exception:  # noqa: BLE001 - PIL raises many types for broken files
        report.error("unreadable image", path)
        return None
    if mode not in modes:
        report.error(f"image mode not in {sorted(modes)}", path)
    return size


def _read_label(report: VerifyReport, path: Path, modes: Iterable[str], size: tuple[int, int] | None) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            img.load()
            mode, label_size, array = img.mode, img.size, np.asarray(img)
    except Exception:  # noqa: BLE001
        report.error("unreadable label", path)
        return None
    if mode not in modes:
        report.error(f"label mode not in {sorted(modes)}", path)
        return None
    if size is not None and label_size != size:
        report.error("label size differs from its image", path)
        return None
    return array


def _compare_counts(report: VerifyReport, official: dict[str, int], strict: bool) -> None:
    for split, n in report.counts.items():
        expected = official[split]
        if n < expected:
            message = f"{split}: {n} images, fewer than the official {expected}"
            if strict:
                report.error(f"fewer images than official (--strict): {message}", report.root)
            else:
                report.warnings.append(message)
        elif n > expected:
            report.warnings.append(f"{split}: {n} images, more than the official {expected}")


def verify_cityscapes(
    root: str | os.PathLike, *, strict: bool = False, max_paths: int = 10, splits: Sequence[str] | None = None
) -> VerifyReport:
    """Check a Cityscapes tree: every image has its labelIds, modes, ids 0..33, sizes, counts.

    Args:
        root: dataset root (``leftImg8bit/``, ``gtFine/``, optionally ``gtCoarse/``).
        strict: fewer images than the official counts is an error, not a warning.
        max_paths: offending paths listed per problem.
        splits: splits to check; default ``train``, ``val``, ``test`` and, when
            ``leftImg8bit/train_extra`` exists, ``train_extra`` (coarse).

    Returns:
        The :class:`VerifyReport`.
    """
    root = Path(root)
    report = VerifyReport(root, max_paths=max_paths)
    if not (root / "leftImg8bit").is_dir():
        report.error("no leftImg8bit/ folder (is this the dataset root?)", root / "leftImg8bit")
        return report
    if splits is None:
        splits = ["train", "val", "test"] + (["train_extra"] if (root / "leftImg8bit" / "train_extra").is_dir() else [])
    for split in splits:
        image_dir = root / "leftImg8bit" / split
        gt = "gtCoarse" if split == "train_extra" else "gtFine"
        if not image_dir.is_dir():
            report.error(f"missing split folder (split {split})", image_dir)
            continue
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        stray = [p for p in image_dir.rglob("*") if p.is_file() and not p.name.endswith("_leftImg8bit.png")]
        for p in stray:
            report.error("unexpected file in leftImg8bit (not *_leftImg8bit.png)", p)
        report.counts[split] = len(images)
        for image_path in images:
            stem = image_path.name[: -len("_leftImg8bit.png")]
            label_path = root / gt / split / image_path.parent.name / f"{stem}_{gt}_labelIds.png"
            size = _check_image(report, image_path, ("RGB",))
            if not label_path.is_file():
                report.error(f"image without {gt} labelIds", label_path)
                continue
            label = _read_label(report, label_path, ("L",), size)
            if label is not None and label.size and int(label.max()) > 33:
                report.error("labelIds outside 0..33", label_path)
        log.info("verified %s: %d images", image_dir, len(images))
    _compare_counts(report, CITYSCAPES_COUNTS, strict)
    return report


def verify_mapillary(root: str | os.PathLike, *, strict: bool = False, max_paths: int = 10) -> VerifyReport:
    """Check a Mapillary Vistas v1.2 tree: config.json, every image has its label, modes, indices 0..65, counts.

    Args:
        root: dataset root (``config.json``, ``training/``, ``validation/``, ``testing/``).
        strict: fewer images than the official counts is an error, not a warning.
        max_paths: offending paths listed per problem.

    Returns:
        The :class:`VerifyReport`.
    """
    root = Path(root)
    report = VerifyReport(root, max_paths=max_paths)
    config = next((root / n for n in ("config.json", "config_v1.2.json") if (root / n).is_file()), None)
    if config is None:
        report.error("no config.json (is this the dataset root?)", root / "config.json")
    else:
        try:
            check_config(config)
        except ValueError as exc:
            report.error(str(exc), config)
    for split in MAPILLARY_COUNTS:
        image_dir = root / split / "images"
        if not image_dir.is_dir():
            report.error(f"missing split folder (split {split})", image_dir)
            continue
        images = sorted(p for p in image_dir.iterdir() if p.is_file())
        for p in images:
            if p.suffix.lower() != ".jpg":
                report.error("unexpected file in images/ (not .jpg)", p)
        images = [p for p in images if p.suffix.lower() == ".jpg"]
        report.counts[split] = len(images)
        label_dir = next((d for d in (root / split / "labels", root / split / "v1.2" / "labels") if d.is_dir()), None)
        if split != "testing" and label_dir is None:
            report.error(f"missing label folder (split {split})", root / split / "labels")
        for image_path in images:
            size = _check_image(report, image_path, ("RGB",))
            if split == "testing" or label_dir is None:
                continue
            label_path = label_dir / f"{image_path.stem}.png"
            if not label_path.is_file():
                report.error("image without label", label_path)
                continue
            label = _read_label(report, label_path, ("P", "L"), size)
            if label is not None and label.size and int(label.max()) >= len(MAPILLARY_CLASSES):
                report.error(f"label indices outside 0..{len(MAPILLARY_CLASSES) - 1}", label_path)
        log.info("verified %s: %d images", image_dir, len(images))
    _compare_counts(report, MAPILLARY_COUNTS, strict)
    return report


def verify_folder(root: str | os.PathLike, *, max_paths: int = 10) -> VerifyReport:
    """Load every item of a :class:`~gald.data.folder.FolderSegmentation` (and each split file's items).

    Args:
        root: the folder dataset root.
        max_paths: offending paths listed per problem.

    Returns:
        The :class:`VerifyReport` (counts per split file, ``all`` for every image).
    """
    from .cityscapes import CorruptImageError
    from .folder import FolderSegmentation

    root = Path(root)
    report = VerifyReport(root, max_paths=max_paths)
    splits = [None] + sorted(p.stem for p in (root / "splits").glob("*.txt"))
    for split in splits:
        try:
            ds = FolderSegmentation(root, split=split)
        except (FileNotFoundError, ValueError) as exc:
            report.error(f"layout ({split or 'all'}): {exc}", root)
            continue
        report.counts[split or "all"] = len(ds)
        if split is not None:
            continue  # items were loaded with the whole set
        for i, (image_path, _) in enumerate(ds.files):
            try:
                ds.load(i)
            except CorruptImageError as exc:
                report.error("unreadable image or mask", exc.path or image_path)
            except ValueError as exc:  # the message names the file and the offending values
                report.error("bad mask", exc)
    return report


#: Per dataset: required archives, optional archives, verifier, and the folder some re-packs wrap the tree in.
PREPARE = {
    "cityscapes": {
        "required": ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"),
        "optional": ("gtCoarse.zip", "leftImg8bit_trainextra.zip"),
        "verify": verify_cityscapes,
        "strip_prefix": None,
    },
    "mapillary": {
        "required": ("mapillary-vistas-dataset_public_v1.2.zip",),
        "optional": (),
        "verify": verify_mapillary,
        "strip_prefix": "mapillary-vistas-dataset_public_v1.2",
    },
}


def prepare(
    dataset: str,
    *,
    archives: str | os.PathLike | None,
    out: str | os.PathLike,
    strict: bool = False,
    max_paths: int = 10,
) -> int:
    """Extract (unless ``archives`` is ``None``) and verify; log the report; return an exit status.

    Args:
        dataset: a key of :data:`PREPARE`.
        archives: folder with the downloaded archives, or ``None`` to verify ``out`` only.
        out: dataset root.
        strict: fewer images than official is an error.
        max_paths: offending paths listed per problem.

    Returns:
        0 when verification passed, 1 when it found problems (the report names them).

    Raises:
        MissingFileError: a required archive, or the root to verify, is missing.
        InputFileError: an archive is damaged or holds a path outside the root.
    """
    spec = PREPARE[dataset]
    if archives is not None:
        try:
            extract_archives(
                archives, out, required=spec["required"], optional=spec["optional"], strip_prefix=spec["strip_prefix"]
            )
        except (zipfile.BadZipFile, ValueError) as exc:
            raise InputFileError(str(exc)) from None
    elif not Path(out).is_dir():
        raise MissingFileError(f"dataset root {out} does not exist; extract the archives first (--archives DIR --out {out})")
    report = spec["verify"](out, strict=strict, max_paths=max_paths)
    (log.info if report.ok else log.error)("%s", report.format())
    return 0 if report.ok else 1


def get_args_parser(description: str) -> argparse.ArgumentParser:
    """The command line of ``data_scripts/prepare_{cityscapes,mapillary}.py``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--archives", help="folder holding the downloaded zip archives (use with --out)")
    mode.add_argument("--verify-only", metavar="ROOT", help="only verify an extracted dataset root")
    parser.add_argument("--out", help="dataset root to create or complete (with --archives; default: none)")
    parser.add_argument("--strict", action="store_true", help="fewer images than the official counts is an error")
    parser.add_argument("--max-paths", type=bounded(int, 1), default=10, help="offending paths listed per problem")
    add_debug_argument(parser)
    return parser


def main(dataset: str, args: argparse.Namespace) -> int:
    """Run :func:`prepare` for ``dataset`` from parsed :func:`get_args_parser` arguments."""
    if args.archives is not None and args.out is None:
        raise ConfigError("--archives needs --out ROOT")
    root = args.verify_only if args.verify_only is not None else args.out
    return prepare(dataset, archives=args.archives, out=root, strict=args.strict, max_paths=args.max_paths)
