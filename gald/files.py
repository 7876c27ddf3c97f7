"""Where commands may write: never onto one of their inputs, never over an existing output unless
asked (``--force``). Paths are compared resolved (symlinks followed) and by file identity. And how:
:func:`save_png` writes an image atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gald.errors import OutputExistsError

__all__ = ["check_output", "save_png"]


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (), force: bool = False,
                 what: str = "output") -> None:
    """Refuse to write ``out`` when it is one of ``inputs`` (always, ``force`` or not), or when it
    exists and ``force`` is false.

    Raises:
        OutputExistsError: naming the path and what to do.
    """
    path = Path(out)
    for given in inputs:
        if given is not None and _same(path, Path(given)):
            raise OutputExistsError(f"{what} {os.fspath(out)!r} is the input {os.fspath(given)!r}: "
                                    "write somewhere else (inputs are never overwritten)")
    if path.exists() and not force:
        raise OutputExistsError(f"{what} {os.fspath(out)!r} exists; pass --force to replace it")


def save_png(image, path: str | os.PathLike) -> Path:
    """Save a PIL image as a PNG atomically (a temporary file renamed into place, creating the
    folder): a reader never sees half a file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
