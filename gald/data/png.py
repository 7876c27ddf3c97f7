"""Re-encode a dataset's PNGs losslessly so that they decode about twice as fast.

A PNG stores each row after a *filter* (a prediction from neighbouring pixels) and zlib. Encoders
pick filters per row adaptively, mostly Paeth, whose undoing is the slowest part of decoding. The
"Up" filter (each row minus the row above) compresses photographs about as well and undoes in one
vectorised pass, so PIL decodes such files in about half the time (``benchmarks/input_pipeline.py``
measures both, with the size cost).

* :func:`write_png` — an 8-bit grayscale or RGB array as a PNG with the Up filter on every row.
* :func:`reencode_png` — one file, verified pixel-identical after writing.
* :func:`reencode_tree` — a dataset root into a new root: 8-bit RGB and grayscale PNGs re-encoded,
  every other file (16-bit instance maps, palette PNGs, JSON) copied unchanged.

``python data_scripts/reencode_png.py --src data/cityscapes --out data/cityscapes-up`` runs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gald.errors import ConfigError, InputFileError, OutputExistsError

log = logging.getLogger(__name__)

__all__ = ["UP_FILTER", "ReencodeStats", "write_png", "reencode_png", "reencode_tree"]

UP_FILTER = 2  # PNG filter type 2, "Up" (PNG specification, Sec. 9.2)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(array: np.ndarray, path: str | os.PathLike, *, level: int = 6) -> Path:
    """Write an 8-bit ``(H, W)`` grayscale or ``(H, W, 3)`` RGB array as a PNG whose every row uses
    the Up filter, atomically (a temporary file renamed into place). Returns the path.

    Shape:
        (H, W) | (H, W, 3) uint8 -> file
    """
    a = np.asarray(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or a.size == 0:
        raise ValueError(f"write_png takes a non-empty (H, W) or (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    h, w = a.shape[:2]
    rows = a.reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = UP_FILTER
    filtered[0, 1:] = rows[0]  # the row above the first is zero
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    colour_type = 0 if a.ndim == 2 else 2  # grayscale | truecolour
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    data = _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
    data += _chunk(b"IEND", b"")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


#: ancillary PNG chunks that change how pixels are shown: a file with any of them is copied, not re-encoded
_KEEP_INFO = ("transparency", "icc_profile", "gamma", "chromaticity", "srgb", "exif")


def _decoded(path: Path) -> np.ndarray | None:
    """The pixels of a plain 8-bit grayscale or RGB PNG, or ``None`` for any other file (16-bit
    samples, which PIL reads truncated, palettes, alpha, or chunks that affect display)."""
    try:
        with Image.open(path) as img:
            args = img.tile[0].args if img.tile else None  # the decoder's raw mode: "RGB", "RGB;16B", ...
            rawmode = args if isinstance(args, str) else (args[0] if args else None)
            plain = img.format == "PNG" and img.mode in ("L", "RGB") and rawmode == img.mode
            if not plain or any(key in img.info for key in _KEEP_INFO):
                return None
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputFileError(f"{path}: not a readable image ({err})") from None


def reencode_png(src: str | os.PathLike, dst: str | os.PathLike, *, level: int = 6) -> bool:
    """Re-encode ``src`` into ``dst`` with the Up filter and check that ``dst`` decodes to the same
    pixels; any other file (not a plain 8-bit grayscale or RGB PNG) is copied unchanged.

    Returns:
        Whether the file was re-encoded (``False``: copied).

    Raises:
        InputFileError: ``src`` is a PNG that cannot be decoded, or the check failed (``dst`` is
            then removed).
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    pixels = _decoded(src) if src.suffix.lower() == ".png" else None
    if pixels is None:
        shutil.copy2(src, dst)
        return False
    write_png(pixels, dst, level=level)
    with Image.open(dst) as img:
        same = img.mode == ("L" if pixels.ndim == 2 else "RGB") and np.array_equal(np.asarray(img), pixels)
    if not same:
        dst.unlink()
        raise InputFileError(f"{dst}: the re-encoded file does not decode to the pixels of {src}; nothing kept")
    return True


@dataclass
class ReencodeStats:
    """What :func:`reencode_tree` did: files re-encoded and copied, bytes before and after."""

    reencoded: int = 0
    copied: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def reencode_tree(src: str | os.PathLike, dst: str | os.PathLike, *, level: int = 6, force: bool = False,
                  progress: bool = True) -> ReencodeStats:
    """Copy the dataset root ``src`` to the new root ``dst``, re-encoding its 8-bit grayscale and
    RGB PNGs (:func:`reencode_png`) and copying every other file. ``src`` is only read.

    Raises:
        InputFileError: ``src`` is not a folder, or a PNG in it cannot be decoded.
        ConfigError: ``dst`` is ``src`` or lies inside it.
        OutputExistsError: ``dst`` exists and is not empty, unless ``force`` (files are then replaced).
    """
    from tqdm.auto import tqdm

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputFileError(f"--src {src}: no such folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"--out {dst} is inside --src {src}: write the re-encoded copy somewhere else")
    if dst.exists() and not dst.is_dir():
        raise OutputExistsError(f"--out {dst} is a file: give a folder for the re-encoded copy")
    if dst.exists() and any(dst.iterdir()) and not force:
        raise OutputExistsError(f"--out {dst} exists and is not empty; pass --force to write into it")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    stats = ReencodeStats()
    for path in tqdm(files, desc="re-encode", unit="file", disable=not progress):
        target = dst / path.relative_to(src)
        if reencode_png(path, target, level=level):
            stats.reencoded += 1
        else:
            stats.copied += 1
        stats.bytes_before += path.stat().st_size
        stats.bytes_after += target.stat().st_size
    log.info("%d PNGs re-encoded, %d files copied: %.1f MB -> %.1f MB", stats.reencoded, stats.copied,
             stats.bytes_before / 1e6, stats.bytes_after / 1e6)
    return stats
