"""Mapillary Vistas v1.2 read as the 19 Cityscapes classes (the paper's pre-training data, appendix 6.1.2).

The paper (appendix 6.1.2): "Mapillary is another city scene data containing 65 different labels.
Here we only use 19 classes of 65 labels which are in cityscape category", then the model is
fine-tuned on Cityscapes fine data. v1.2 ships 66 classes (65 + ``void--unlabeled``).

Layout (the official ``mapillary-vistas-dataset_public_v1.2.zip``, unzipped)::

    root/config.json                                   (66 labels, official order; checked if present)
    root/{training,validation,testing}/images/{key}.jpg
    root/{training,validation}/labels/{key}.png        (mode "P" or "L": class index 0..65 per pixel)

The v2.0 download keeps the v1.2 labels under ``{split}/v1.2/labels/``; that folder is read too.
v2.0's own 124-class labels (``v2.0/labels``) are **not** supported: they need another table.

**Mapping to Cityscapes train ids** (:data:`MAPILLARY_TO_CITYSCAPES`). It starts from the
66→19 table that circulates in public Cityscapes/Vistas code and keeps one rule, the paper's "only
the 19 classes which are in the cityscape category": a Vistas class goes to a Cityscapes train id
only where Cityscapes annotates the same stuff with that class. So markings, bike lanes, service
lanes and plain crosswalks are *road* (Cityscapes' road includes markings and bike lanes); curbs,
curb cuts and pedestrian areas are *sidewalk*; utility poles are *pole*;
sand and snow are *terrain*; bicyclist/motorcyclist/other rider are *rider*; on-rails is *train*.
Where Cityscapes has its **own unevaluated labelId** — parking (9), rail track (10), guard rail
(14), bridge (15), tunnel (16), caravan (29), trailer (30) — the Vistas class maps to 255, so pre-training never
teaches a label Cityscapes would call void. Deviations from the common table: parking, rail track
(there: road), guard rail (there: fence), bridge, tunnel (there: building) and traffic-sign frames (there: traffic sign; a
Cityscapes sign excludes its mounting) are 255 here. Backs of signs, street lights, billboards,
mountains, water and the other ``object--*`` and ``void--*`` classes are 255 in both.

``resize_short`` (optional) rescales every image so its short side has that many pixels, bilinear
for the image and nearest for the label: Vistas images are large (several megapixels) in many aspect ratios, while
the paper's crops (769 px and larger) and scale range assume Cityscapes' 1024-pixel short side.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.config import check_choice
from gald.errors import MissingFileError

from .cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, _open_image
from .transforms import ToTensorNormalize

__all__ = [
    "MAPILLARY_CLASSES",
    "MAPILLARY_PALETTE",
    "MAPILLARY_SPLITS",
    "MAPILLARY_TO_CITYSCAPES",
    "MapillaryVistas",
    "mapillary_train_ids",
    "resize_short_side",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = 255

#: The 66 v1.2 labels in the official ``config.json`` order (index = pixel value) with their colours.
_V12 = (
    ("animal--bird", (165, 42, 42)),
    ("animal--ground-animal", (0, 192, 0)),
    ("construction--barrier--curb", (196, 196, 196)),
    ("construction--barrier--fence", (190, 153, 153)),
    ("construction--barrier--guard-rail", (180, 165, 180)),
    ("construction--barrier--other-barrier", (90, 120, 150)),
    ("construction--barrier--wall", (102, 102, 156)),
    ("construction--flat--bike-lane", (128, 64, 255)),
    ("construction--flat--crosswalk-plain", (140, 140, 200)),
    ("construction--flat--curb-cut", (170, 170, 170)),
    ("construction--flat--parking", (250, 170, 160)),
    ("construction--flat--pedestrian-area", (96, 96, 96)),
    ("construction--flat--rail-track", (230, 150, 140)),
    ("construction--flat--road", (128, 64, 128)),
    ("construction--flat--service-lane", (110, 110, 110)),
    ("construction--flat--sidewalk", (244, 35, 232)),
    ("construction--structure--bridge", (150, 100, 100)),
    ("construction--structure--building", (70, 70, 70)),
    ("construction--structure--tunnel", (150, 120, 90)),
    ("human--person", (220, 20, 60)),
    ("human--rider--bicyclist", (255, 0, 0)),
    ("human--rider--motorcyclist", (255, 0, 100)),
    ("human--rider--other-rider", (255, 0, 200)),
    ("marking--crosswalk-zebra", (200, 128, 128)),
    ("marking--general", (255, 255, 255)),
    ("nature--mountain", (64, 170, 64)),
    ("nature--sand", (230, 160, 50)),
    ("nature--sky", (70, 130, 180)),
    ("nature--snow", (190, 255, 255)),
    ("nature--terrain", (152, 251, 152)),
    ("nature--vegetation", (107, 142, 35)),
    ("nature--water", (0, 170, 30)),
    ("object--banner", (255, 255, 128)),
    ("object--bench", (250, 0, 30)),
    ("object--bike-rack", (100, 140, 180)),
    ("object--billboard", (220, 220, 220)),
    ("object--catch-basin", (220, 128, 128)),
    ("object--cctv-camera", (222, 40, 40)),
    ("object--fire-hydrant", (100, 170, 30)),
    ("object--junction-box", (40, 40, 40)),
    ("object--mailbox", (33, 33, 33)),
    ("object--manhole", (100, 128, 160)),
    ("object--phone-booth", (142, 0, 0)),
    ("object--pothole", (70, 100, 150)),
    ("object--street-light", (210, 170, 100)),
    ("object--support--pole", (153, 153, 153)),
    ("object--support--traffic-sign-frame", (128, 128, 128)),
    ("object--support--utility-pole", (0, 0, 80)),
    ("object--traffic-light", (250, 170, 30)),
    ("object--traffic-sign--back", (192, 192, 192)),
    ("object--traffic-sign--front", (220, 220, 0)),
    ("object--trash-can", (140, 140, 20)),
    ("object--vehicle--bicycle", (119, 11, 32)),
    ("object--vehicle--boat", (150, 0, 255)),
    ("object--vehicle--bus", (0, 60, 100)),
    ("object--vehicle--car", (0, 0, 142)),
    ("object--vehicle--caravan", (0, 0, 90)),
    ("object--vehicle--motorcycle", (0, 0, 230)),
    ("object--vehicle--on-rails", (0, 80, 100)),
    ("object--vehicle--other-vehicle", (128, 64, 64)),
    ("object--vehicle--trailer", (0, 0, 110)),
    ("object--vehicle--truck", (0, 0, 70)),
    ("object--vehicle--wheeled-slow", (0, 0, 192)),
    ("void--car-mount", (32, 32, 32)),
    ("void--ego-vehicle", (120, 10, 10)),
    ("void--unlabeled", (0, 0, 0)),
)
MAPILLARY_CLASSES: tuple[str, ...] = tuple(name for name, _ in _V12)
MAPILLARY_PALETTE: list[tuple[int, int, int]] = [colour for _, colour in _V12]

#: Vistas v1.2 label name → Cityscapes class name; every label not listed maps to 255 (module docstring).
MAPILLARY_TO_CITYSCAPES: dict[str, str] = {
    "construction--flat--road": "road",
    "construction--flat--bike-lane": "road",
    "construction--flat--service-lane": "road",
    "construction--flat--crosswalk-plain": "road",
    "marking--crosswalk-zebra": "road",
    "marking--general": "road",
    "construction--flat--sidewalk": "sidewalk",
    "construction--flat--pedestrian-area": "sidewalk",
    "construction--flat--curb-cut": "sidewalk",
    "construction--barrier--curb": "sidewalk",
    "construction--structure--building": "building",
    "construction--barrier--wall": "wall",
    "construction--barrier--fence": "fence",
    "object--support--pole": "pole",
    "object--support--utility-pole": "pole",
    "object--traffic-light": "traffic light",
    "object--traffic-sign--front": "traffic sign",
    "nature--vegetation": "vegetation",
    "nature--terrain": "terrain",
    "nature--sand": "terrain",
    "nature--snow": "terrain",
    "nature--sky": "sky",
    "human--person": "person",
    "human--rider--bicyclist": "rider",
    "human--rider--motorcyclist": "rider",
    "human--rider--other-rider": "rider",
    "object--vehicle--car": "car",
    "object--vehicle--truck": "truck",
    "object--vehicle--bus": "bus",
    "object--vehicle--on-rails": "train",
    "object--vehicle--motorcycle": "motorcycle",
    "object--vehicle--bicycle": "bicycle",
}

#: Split names: the official folder names, plus the Cityscapes-style aliases configs use.
MAPILLARY_SPLITS = {
    "training": "training", "validation": "validation", "testing": "testing",
    "train": "training", "val": "validation", "test": "testing",
}  # fmt: skip


def mapillary_train_ids() -> np.ndarray:
    """256-entry lookup table: Vistas v1.2 class index → Cityscapes train id (255 elsewhere)."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for index, name in enumerate(MAPILLARY_CLASSES):
        target = MAPILLARY_TO_CITYSCAPES.get(name)
        if target is not None:
            lut[index] = CITYSCAPES_CLASSES.index(target)
    return lut


def resize_short_side(image: np.ndarray, label: np.ndarray, short: int) -> tuple[np.ndarray, np.ndarray]:
    """Rescale so the shorter side is ``short`` pixels: bilinear image, nearest label.

    Args:
        image: ``(H, W, 3)`` uint8.
        label: ``(H, W)`` uint8.
        short: target length of the shorter side.

    Shape:
        (H, W, 3), (H, W) -> (h, w, 3), (h, w) with min(h, w) = short
    """
    h, w = label.shape
    scale = short / min(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) == (h, w):
        return image, label
    image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.Resampling.NEAREST))
    return image, label


def _not_found_hint() -> str:
    return (
        "Prepare it with `python data_scripts/prepare_mapillary.py --archives DIR_WITH_ZIP --out ROOT` "
        "(mapillary-vistas-dataset_public_v1.2.zip from https://www.mapillary.com/dataset/vistas), "
        "then pass root=ROOT (data_root in a config) or set MAPILLARY_DATASET=ROOT."
    )


def check_config(path: Path) -> None:
    """Raise ``ValueError`` unless the labels of ``config.json`` at ``path`` are the 66 shipped ones."""
    try:
        labels = json.loads(path.read_text())["labels"]
        names = [label["name"] for label in labels]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the label list of {path}: {exc!r}") from exc
    if tuple(names) != MAPILLARY_CLASSES:
        if len(names) != len(MAPILLARY_CLASSES):
            detail = f"it has {len(names)} labels, v1.2 has {len(MAPILLARY_CLASSES)} (v2.0 has 124: not supported)"
        else:
            i = next(i for i, (a, b) in enumerate(zip(names, MAPILLARY_CLASSES)) if a != b)
            detail = f"label {i} is {names[i]!r}, expected {MAPILLARY_CLASSES[i]!r}"
        raise ValueError(f"{path} is not the Mapillary Vistas v1.2 label list: {detail}")


class MapillaryVistas(torch.utils.data.Dataset):
    """Mapillary Vistas v1.2 images with labels mapped to the 19 Cityscapes train ids.

    Args:
        root: dataset root (module docstring); ``None`` reads ``MAPILLARY_DATASET``.
        split: ``"training"``, ``"validation"``, ``"testing"`` (or ``"train"``, ``"val"``,
            ``"test"``). The test split has no labels: every pixel is ``ignore_index``.
        transform: joint transform ``(image, label) -> (image, label)``; default
            :class:`~gald.data.transforms.ToTensorNormalize`.
        resize_short: rescale each image so its short side has this many pixels (``None``: keep).
        ignore_index: train id of unlabelled pixels.

    Shape:
        ``ds[i]`` -> image (3, H, W) float32, label (H, W) int64 (with the default transform)
    """

    classes = CITYSCAPES_CLASSES
    palette = list(CITYSCAPES_PALETTE)
    num_classes = len(CITYSCAPES_CLASSES)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "training",
        transform: Callable | None = None,
        resize_short: int | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        check_choice("split", split, tuple(MAPILLARY_SPLITS))
        if root is None:
            env = os.environ.get("MAPILLARY_DATASET")
            if not env:
                raise MissingFileError(
                    "no dataset root: root=None and the MAPILLARY_DATASET environment variable is unset. "
                    + _not_found_hint()
                )
            root = env
        if resize_short is not None and resize_short < 1:
            raise ValueError(f"resize_short must be a positive number of pixels, got {resize_short}")
        self.root = Path(root)
        self.split = MAPILLARY_SPLITS[split]
        self.resize_short = resize_short
        self.ignore_index = ignore_index
        self.transform = ToTensorNormalize() if transform is None else transform
        image_dir = self.root / self.split / "images"
        if not self.root.is_dir():
            raise MissingFileError(
                f"dataset root {self.root} does not exist (looked for images in {image_dir}). " + _not_found_hint()
            )
        for name in ("config.json", "config_v1.2.json"):
            if (self.root / name).is_file():
                check_config(self.root / name)
                break
        if not image_dir.is_dir():
            raise MissingFileError(f"no split folder {image_dir} (split={split!r}). " + _not_found_hint())
        images = sorted(p for p in image_dir.iterdir() if p.is_file())
        if not images:
            raise MissingFileError(f"no images in {image_dir}: expected {image_dir}/KEY.jpg")
        stray = next((p for p in images if p.suffix.lower() not in (".jpg", ".jpeg")), None)
        if stray is not None:
            raise ValueError(f"unexpected file {stray} in {image_dir}: Vistas images are KEY.jpg")
        label_dir = self._label_dir()
        self.files: list[tuple[Path, Path | None]] = []
        for image_path in images:
            label_path = None if label_dir is None else label_dir / f"{image_path.stem}.png"
            if label_path is not None and not label_path.is_file():
                raise MissingFileError(f"image {image_path} has no label: expected {label_path}")
            self.files.append((image_path, label_path))
        self._lut = mapillary_train_ids()
        if ignore_index != IGNORE_INDEX:
            self._lut[self._lut == IGNORE_INDEX] = ignore_index
        log.debug("MapillaryVistas: %d %s images under %s", len(self.files), self.split, image_dir)

    def _label_dir(self) -> Path | None:
        candidates = [self.root / self.split / "labels", self.root / self.split / "v1.2" / "labels"]
        found = next((d for d in candidates if d.is_dir()), None)
        if found is None and self.split != "testing":
            raise MissingFileError(
                f"no label folder for {self.split}: looked for {candidates[0]} and {candidates[1]}. " + _not_found_hint()
            )
        return found

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Untransformed ``(image (H, W, 3) uint8 RGB, label (H, W) uint8 Cityscapes train ids)`` of item ``i``.

        Raises:
            CorruptImageError: the image or label cannot be decoded.
            ValueError: sizes differ, the label is not an index PNG, or it holds indices above 65.
        """
        image_path, label_path = self.files[i]
        image = _open_image(image_path, "RGB")
        if label_path is None:
            label = np.full((image.size[1], image.size[0]), self.ignore_index, np.uint8)
        else:
            label = self._read_label(label_path, image_path, image.size)
        image_array = np.asarray(image)
        if self.resize_short is not None:
            image_array, label = resize_short_side(image_array, label, self.resize_short)
        return image_array, label

    def _read_label(self, label_path: Path, image_path: Path, size: tuple[int, int]) -> np.ndarray:
        label_img = _open_image(label_path, None)
        if label_img.mode not in ("P", "L"):
            raise ValueError(
                f"label {label_path} has mode {label_img.mode!r}; Vistas v1.2 labels are index PNGs "
                "(mode 'P' or 'L', one class index per pixel). Colour renderings cannot be read."
            )
        if label_img.size != size:
            raise ValueError(
                f"image {image_path} is {size[0]}×{size[1]} but its label {label_path} "
                f"is {label_img.size[0]}×{label_img.size[1]} (width×height)"
            )
        raw = np.asarray(label_img)
        if raw.size and int(raw.max()) >= len(MAPILLARY_CLASSES):
            bad = np.unique(raw[raw >= len(MAPILLARY_CLASSES)]).tolist()
            raise ValueError(
                f"label {label_path} holds class indices {bad[:10]} above the 66 Vistas v1.2 classes "
                "(0..65); a v2.0 label (124 classes) is not supported"
            )
        return self._lut[raw]

    def __getitem__(self, i: int):
        image, label = self.load(i)
        return self.transform(image, label)

    def __repr__(self) -> str:
        return f"MapillaryVistas(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
