"""A generic segmentation folder: images, masks and a class list, for your own data.

Layout::

    root/classes.json                      (or classes.yaml / classes.yml)
    root/images/**/NAME.{jpg,jpeg,png}
    root/masks/**/NAME.png                 (same relative path and stem as the image)
    root/splits/{train,val,...}.txt        (optional: one relative stem per line, e.g. ``city/0001``)

``classes.json``::

    {
      "classes": [{"name": "road", "color": [128, 64, 128]}, {"name": "car", "color": [0, 0, 142]}],
      "ignore_index": 255,
      "ignore_color": [0, 0, 0],
      "mask_values": {"0": 255, "7": 0, "26": 1}
    }

Masks are either **index** PNGs (mode ``L``, ``P``, ``I;16`` or ``I``) holding train ids 0..C-1 and
``ignore_index`` — or, with ``mask_values``, arbitrary values mapped to train ids (unlisted values
are errors) — or **colour** PNGs (``RGB``/``RGBA``) mapped through the class colours, with
``ignore_color`` (optional) meaning ignore. A mask value or colour outside the list raises an error
that names the file and the values, so a wrong class file never trains silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gald.errors import MissingFileError

from .cityscapes import _open_image
from .mapillary import resize_short_side
from .transforms import ToTensorNormalize

__all__ = ["FolderSegmentation", "read_class_file", "CLASS_FILES"]

log = logging.getLogger(__name__)

CLASS_FILES = ("classes.json", "classes.yaml", "classes.yml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_INDEX_MODES = ("L", "P", "I;16", "I")
_COLOUR_MODES = ("RGB", "RGBA")


def _hint() -> str:
    return (
        "A folder dataset needs ROOT/classes.json, ROOT/images/**/NAME.{jpg,png} and ROOT/masks/**/NAME.png "
        "(docs/data.md, 'Your own data'); `python data_scripts/prepare_folder.py --verify-only ROOT` checks one."
    )


def read_class_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a folder dataset's class file.

    Args:
        path: ``classes.json`` or ``classes.yaml``.

    Returns:
        ``{"names": [...], "colors": [(r, g, b), ...] or None, "ignore_index": int,
        "ignore_color": (r, g, b) or None, "mask_values": {value: train_id} or None}``.

    Raises:
        ValueError: naming the file and the offending entry.
    """
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot parse class file {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise ValueError(f"class file {path} needs a non-empty 'classes' list of {{name, color}} entries")
    names, colors = [], []
    for i, entry in enumerate(data["classes"]):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"class file {path}: entry {i} ({entry!r}) needs a 'name'")
        names.append(entry["name"])
        colors.append(entry.get("color"))
    if any(c is None for c in colors):
        colors = None if all(c is None for c in colors) else colors
        if colors is not None:
            missing = [names[i] for i, c in enumerate(colors) if c is None]
            raise ValueError(f"class file {path}: classes {missing} have no 'color' while others do")
    if colors is not None:
        for name, c in zip(names, colors):
            if not (isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)):
                raise ValueError(f"class file {path}: colour of {name!r} must be [r, g, b] in 0..255, got {c!r}")
        colors = [tuple(c) for c in colors]
        if len(set(colors)) != len(colors):
            raise ValueError(f"class file {path}: two classes share a colour, so colour masks would be ambiguous")
    ignore_index = int(data.get("ignore_index", 255))
    if not 0 <= ignore_index <= 255 or len(names) > 255:
        raise ValueError(f"class file {path}: labels are uint8, so at most 255 classes and ignore_index in 0..255")
    if 0 <= ignore_index < len(names):
        raise ValueError(f"class file {path}: ignore_index {ignore_index} is also a class id (0..{len(names) - 1})")
    ignore_color = data.get("ignore_color")
    ignore_color = None if ignore_color is None else tuple(int(v) for v in ignore_color)
    mask_values = data.get("mask_values")
    if mask_values is not None:
        try:
            mask_values = {int(k): int(v) for k, v in mask_values.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"class file {path}: mask_values must map integers to train ids ({exc})") from exc
        bad = {k: v for k, v in mask_values.items() if not (0 <= v < len(names) or v == ignore_index)}
        if bad:
            raise ValueError(f"class file {path}: mask_values map to ids {sorted(set(bad.values()))} that are no class")
    return {"names": names, "colors": colors, "ignore_index": ignore_index, "ignore_color": ignore_color, "mask_values": mask_values}


class FolderSegmentation(torch.utils.data.Dataset):
    """Images and masks from a plain folder with a class list (module docstring).

    Args:
        root: dataset root.
        split: name of a ``splits/{split}.txt`` stem list; ``None`` or ``"all"`` takes every image.
        transform: joint transform ``(image, label) -> (image, label)``; default
            :class:`~gald.data.transforms.ToTensorNormalize`.
        resize_short: rescale each image so its short side has this many pixels (``None``: keep).

    Shape:
        ``ds[i]`` -> image (3, H, W) float32, label (H, W) int64 (with the default transform)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str | None = None,
        transform: Callable | None = None,
        resize_short: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = None if split in (None, "all") else split
        self.resize_short = resize_short
        self.transform = ToTensorNormalize() if transform is None else transform
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        if not self.root.is_dir():
            raise MissingFileError(f"dataset root {self.root} does not exist (looked for {image_dir}). " + _hint())
        class_file = next((self.root / n for n in CLASS_FILES if (self.root / n).is_file()), None)
        if class_file is None:
            raise MissingFileError(f"no class file in {self.root}: expected {self.root / CLASS_FILES[0]}. " + _hint())
        spec = read_class_file(class_file)
        self.class_file = class_file
        self.classes = tuple(spec["names"])
        self.num_classes = len(self.classes)
        self.palette = spec["colors"]
        self.ignore_index = spec["ignore_index"]
        self._ignore_color = spec["ignore_color"]
        self._mask_values = spec["mask_values"]
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise MissingFileError(f"no folder {folder} in the dataset root. " + _hint())

        images: dict[str, Path] = {}
        for path in sorted(image_dir.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"unexpected file {path} in {image_dir}: images are .jpg, .jpeg or .png")
            stem = path.relative_to(image_dir).with_suffix("").as_posix()
            if stem in images:
                raise ValueError(f"two images share the stem {stem!r}: {images[stem]} and {path}")
            images[stem] = path
        if not images:
            raise MissingFileError(f"no images in {image_dir}: expected {image_dir}/NAME.jpg or .png. " + _hint())
        stems = sorted(images)
        if self.split is not None:
            stems = self._read_split(images)
        self.files: list[tuple[Path, Path]] = []
        for stem in stems:
            mask = mask_dir / f"{stem}.png"
            if not mask.is_file():
                raise MissingFileError(f"image {images[stem]} has no mask: expected {mask}")
            self.files.append((images[stem], mask))
        if self.split is None:
            orphans = sorted(
                p for p in mask_dir.rglob("*.png") if p.relative_to(mask_dir).with_suffix("").as_posix() not in images
            )
            if orphans:
                log.warning("%d masks in %s have no image (first: %s)", len(orphans), mask_dir, orphans[0])
        self._build_lookups()
        log.debug("FolderSegmentation: %d images (split=%s) under %s", len(self.files), self.split, self.root)

    def _read_split(self, images: dict[str, Path]) -> list[str]:
        split_file = self.root / "splits" / f"{self.split}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
            raise MissingFileError(
                f"no split file {split_file} (split={self.split!r}; split files found: {have}). Write one stem per "
                "line (the image path under images/ without extension), or use split 'all' for every image."
            )
        stems = []
        for number, line in enumerate(split_file.read_text().splitlines(), start=1):
            stem = line.strip()
            if not stem or stem.startswith("#"):
                continue
            stem = str(Path(stem).with_suffix("").as_posix()) if Path(stem).suffix.lower() in IMAGE_SUFFIXES else stem
            if stem not in images:
                raise MissingFileError(
                    f"{split_file} line {number}: {stem!r} matches no image under {self.root / 'images'}"
                )
            stems.append(stem)
        if not stems:
            raise ValueError(f"split file {split_file} lists no images")
        return stems

    def _build_lookups(self) -> None:
        # mask value → train id, and which values are allowed (index masks up to 16 bit)
        self._lut = np.full(65536, self.ignore_index, np.int64)
        self._known = np.zeros(65536, bool)
        if self._mask_values is None:
            self._lut[: self.num_classes] = np.arange(self.num_classes)
            self._known[: self.num_classes] = True
        else:
            for value, train_id in self._mask_values.items():
                if 0 <= value < 65536:
                    self._lut[value] = train_id
                    self._known[value] = True
        if 0 <= self.ignore_index < 65536:
            self._known[self.ignore_index] = True
            self._lut[self.ignore_index] = self.ignore_index

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Untransformed ``(image (H, W, 3) uint8 RGB, label (H, W) uint8 train ids)`` of item ``i``.

        Raises:
            CorruptImageError: the image or mask cannot be decoded.
            ValueError: sizes differ, the mask mode is unsupported, or it holds unknown values/colours.
        """
        image_path, mask_path = self.files[i]
        image = _open_image(image_path, "RGB")
        mask = _open_image(mask_path, None)
        if image.size != mask.size:
            raise ValueError(
                f"image {image_path} is {image.size[0]}×{image.size[1]} but its mask {mask_path} "
                f"is {mask.size[0]}×{mask.size[1]} (width×height)"
            )
        if mask.mode in _COLOUR_MODES:
            label = self._from_colours(np.asarray(mask.convert("RGB")), mask_path)
        elif mask.mode in _INDEX_MODES:
            label = self._from_indices(np.asarray(mask), mask_path)
        else:
            raise ValueError(
                f"mask {mask_path} has mode {mask.mode!r}; expected an index PNG ({', '.join(_INDEX_MODES)}) "
                f"or a colour PNG ({', '.join(_COLOUR_MODES)})"
            )
        image_array = np.asarray(image)
        if self.resize_short is not None:
            image_array, label = resize_short_side(image_array, label, self.resize_short)
        return image_array, label

    def _from_indices(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raw = raw.astype(np.int64)
        outside = (raw < 0) | (raw >= 65536)
        if outside.any():
            raise ValueError(f"mask {path} holds values {np.unique(raw[outside])[:10].tolist()} outside 0..65535")
        unknown = ~self._known[raw]
        if unknown.any():
            bad = np.unique(raw[unknown]).tolist()
            known = sorted(self._mask_values) if self._mask_values is not None else f"0..{self.num_classes - 1}"
            raise ValueError(
                f"mask {path} holds values {bad[:20]} that are no class of {self.class_file} "
                f"(known: {known}, ignore: {self.ignore_index})"
            )
        return self._lut[raw].astype(np.uint8)

    def _from_colours(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        if self.palette is None:
            raise ValueError(f"mask {path} is a colour PNG but {self.class_file} gives no class colours")
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        colours = {(r << 16) | (g << 8) | b: t for t, (r, g, b) in enumerate(self.palette)}
        if self._ignore_color is not None:
            r, g, b = self._ignore_color
            colours[(r << 16) | (g << 8) | b] = self.ignore_index
        keys = np.array(sorted(colours), np.int64)
        values = np.array([colours[k] for k in keys], np.int64)
        pos = np.clip(np.searchsorted(keys, code), 0, len(keys) - 1)
        unknown = keys[pos] != code
        if unknown.any():
            bad = [tuple(int(v) for v in c) for c in np.unique(rgb[unknown], axis=0)[:10]]
            raise ValueError(
                f"mask {path} holds colours {bad} that are no class colour of {self.class_file}"
                + ("" if self._ignore_color is not None else " (set 'ignore_color' for unlabelled pixels)")
            )
        return values[pos].astype(np.uint8)

    def __getitem__(self, i: int):
        image, label = self.load(i)
        return self.transform(image, label)

    def __repr__(self) -> str:
        return f"FolderSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
