"""Deprecated alias of :mod:`gald.data.images`, kept for one minor release (removed in 0.3.0)."""

from gald.data.images import (  # noqa: F401
    IMAGE_FORMATS,
    ImageError,
    read_image,
    to_rgb_uint8,
)

__all__ = [
    "IMAGE_FORMATS",
    "ImageError",
    "read_image",
    "to_rgb_uint8",
]
