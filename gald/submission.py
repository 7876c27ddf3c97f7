"""Deprecated alias of :mod:`gald.deploy.submission`, kept for one minor release (removed in 0.3.0)."""

from gald.deploy.submission import (  # noqa: F401
    submission_path,
    train_ids_to_label_ids,
    write_label_png,
)

__all__ = [
    "train_ids_to_label_ids",
    "write_label_png",
    "submission_path",
]
