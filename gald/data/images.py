"""Reading and converting user images: any file or array in, 8-bit RGB out, with notices.

Used by ``gald.predict`` and the demo app, so both treat grayscale, transparent, palette, 16-bit and
float images the same way and name the file when one cannot be decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gald.errors import GaldError

__all__ = ["IMAGE_FORMATS", "MAX_PIXELS", "WHOLE_MAX_PIXELS", "ImageError", "check_pixels", "image_size", "read_image",
           "to_rgb_uint8"]

#: The default pixel limit of user images (predict, predict_detection, the app), checked from the
#: header before decoding: decompression bombs are refused and memory stays bounded.
MAX_PIXELS = 40_000_000
#: pixels one whole-image pass may take (``--mode whole``): its memory grows with the pixels (the
#: shipped model peaked at 5.6 GiB on 40 MP, benchmarks/results/predict_memory.json); windows do not
WHOLE_MAX_PIXELS = 16_000_000

#: Formats decoded by default (what cameras and datasets use; nothing exotic).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


class ImageError(GaldError, ValueError):
    """An input that cannot be used as an image; the message says why and what to do."""


def to_rgb_uint8(image: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Turn any image array into 8-bit RGB.

    Grayscale (H, W) or (H, W, 1) is replicated to RGB; gray+alpha and RGBA are composited over
    white; 16-bit integers are scaled to 8 bits; floats are read as [0, 1] if their maximum is at
    most 1, else as [0, 255].

    Returns:
        The image and a list of notices for the user (one per conversion applied).

    Raises:
        ImageError: no image, an unsupported shape or dtype, or non-finite values.

    Shape:
        (H, W) | (H, W, 1|2|3|4) any dtype -> (H, W, 3) uint8
    """
    if image is None:
        raise ImageError("no image")
    a = np.asarray(image)
    notes: list[str] = []
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageError(f"unsupported image shape {a.shape}: expected (H, W) grayscale or (H, W, 3|4) colour")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image contains NaN or infinite values")
        if float(a.max(initial=0.0)) <= 1.0:
            a = a * 255.0
            notes.append("float image read as values in [0, 1]")
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        hi = int(a.max(initial=0))
        if int(a.min(initial=0)) < 0 or hi > 65535:
            raise ImageError(f"unsupported {a.dtype} image with values in [{a.min()}, {hi}]: expected 8- or 16-bit")
        if a.dtype.itemsize > 1 and hi > 255:
            a = np.rint(a.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 → 255
            notes.append("16-bit image scaled to 8 bits")
        else:
            a = a.astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"unsupported image dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
        notes.append("grayscale image: replicated to three channels (the model was trained on colour images)")
    elif a.shape[2] in (2, 4):
        color = np.repeat(a[..., :1], 3, axis=2) if a.shape[2] == 2 else a[..., :3]
        if a.shape[2] == 2:
            notes.append("grayscale image: replicated to three channels (the model was trained on colour images)")
        if int(a[..., -1].min(initial=255)) == 255:  # an alpha channel that hides nothing: there is nothing to remove
            a = color
        else:
            alpha = a[..., -1:].astype(np.float32) / 255.0
            a = np.rint(color * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
            notes.append("transparency removed: the image was composited over white")
    return np.ascontiguousarray(a), notes


def check_pixels(image: Image.Image, name: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> None:
    """Refuse an opened (not yet decoded) image of more than ``max_pixels``: the dataset loaders'
    check, from the header, before the pixels are decoded.

    Raises:
        ImageError: naming the file and its size.
    """
    w, h = image.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(f"{os.fspath(name)}: {h}×{w} pixels is more than {max_pixels:,}; downscale it first")


def image_size(path: str | os.PathLike, formats: Sequence[str] = IMAGE_FORMATS) -> tuple[int, int] | None:
    """``(height, width)`` from an image file's header (nothing decoded), or ``None`` if unreadable."""
    try:
        with Image.open(path, formats=list(formats)) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                h, w = w, h  # EXIF-rotated by a quarter turn when decoded
            return h, w
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def read_image(
    path: str | os.PathLike,
    *,
    formats: Sequence[str] = IMAGE_FORMATS,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Decode an image file safely and convert it with :func:`to_rgb_uint8`.

    Only ``formats`` are decoded, the pixel count is checked against ``max_pixels`` before
    decoding, and EXIF orientation is applied.

    Raises:
        ImageError: naming the file: not an image in a supported format, too many pixels, or broken.

    Shape:
        -> (H, W, 3) uint8
    """
    name = os.fspath(path)
    try:
        with Image.open(path, formats=list(formats)) as im:
            check_pixels(im, name, max_pixels)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif im.mode.startswith("I;16"):
                im = im.convert("I")  # native-endian 32-bit; values stay 0..65535
            array = np.array(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: too many pixels to decode safely ({err})") from None
    except UnidentifiedImageError as err:
        raise ImageError(f"{name} is not an image in a supported format ({', '.join(formats)}): {err}") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{name} could not be decoded (truncated or corrupt?): {err}") from None
    if array.dtype == np.int32 and array.size and int(array.max()) <= 65535 and int(array.min()) >= 0:
        array = array.astype(np.uint16)
    try:
        return to_rgb_uint8(array)
    except ImageError as err:
        raise ImageError(f"{name}: {err}") from None
