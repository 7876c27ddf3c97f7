"""Reader for the Cityscapes on-disk layout (real Cityscapes, or the synthetic benchmark written to disk).

Layout::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png      (mode="fine")
    root/gtCoarse/{split}/{city}/{city}_{seq}_{frame}_gtCoarse_labelIds.png  (mode="coarse")

Labels are read as Cityscapes labelIds and mapped to train ids through ``label_map`` (default: the
standard 19 classes, every other labelId → 255). Problems are reported naming the files involved:
a missing label at construction; on load, a corrupt image (:class:`CorruptImageError`, an
``OSError`` a training loop can catch, skip and count), an image/label size mismatch, or label
values outside ``label_map``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.config import check_choice
from gald.data.images import check_pixels
from gald.errors import InputFileError, MissingFileError

from .transforms import ToTensorNormalize

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "LABEL_TO_TRAIN",
    "TRAIN_TO_LABEL",
    "CityscapesSegmentation",
    "CorruptImageError",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = 255

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
#: train id → Cityscapes labelId for the 19 evaluated classes.
TRAIN_TO_LABEL = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
#: Cityscapes labelId (0..33) → train id; the 15 unevaluated ids map to 255.
LABEL_TO_TRAIN = {label_id: IGNORE_INDEX for label_id in range(34)} | {
    label_id: train_id for train_id, label_id in enumerate(TRAIN_TO_LABEL)
}

_MODES = {"fine": "gtFine", "coarse": "gtCoarse"}
_IMAGE_SUFFIX = "_leftImg8bit.png"


class CorruptImageError(InputFileError):
    """An image or label file that exists but cannot be decoded.

    Args:
        message: what went wrong; names the file.
        path: the file, also kept as ``.path`` (``None`` when re-raised from a DataLoader worker,
            which rebuilds the exception from its message alone).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


def _not_found_hint() -> str:
    return (
        "Prepare real Cityscapes with `python data_scripts/prepare_cityscapes.py --archives DIR_WITH_ZIPS --out DIR` "
        "(leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip; see docs/data.md), or write the synthetic "
        "benchmark in this layout with `python data_scripts/make_synthetic.py --out DIR`. "
        "Pass root=DIR or set CITYSCAPES_DATASET=DIR."
    )


def _open_image(path: Path, mode: str | None) -> Image.Image:
    """Open and fully decode ``path``; undecodable files, and files of more than
    :data:`~gald.data.images.MAX_PIXELS` pixels (read from the header), raise :class:`CorruptImageError`."""
    try:
        with Image.open(path) as img:
            check_pixels(img, path)
            img.load()
            return img.convert(mode) if mode is not None and img.mode != mode else img.copy()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:  # PIL's, and ours
        raise CorruptImageError(f"corrupt or unreadable image {path}: {exc}", path) from exc


def _read_array(path: Path, mode: str | None) -> np.ndarray:
    """Decode ``path`` straight into one numpy array (converted to ``mode`` if it differs), with
    :func:`_open_image`'s checks and errors.

    PIL decodes: ``torchvision.io.decode_png`` is faster on Cityscapes' PNGs, but deprecated since
    torchvision 0.29 (docs/speed.md has both). ``data_scripts/reencode_png.py`` halves PIL's time.
    """
    try:
        with Image.open(path) as img:
            check_pixels(img, path)
            return np.asarray(img.convert(mode) if mode is not None and img.mode != mode else img)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:  # PIL's, and ours
        raise CorruptImageError(f"corrupt or unreadable image {path}: {exc}", path) from exc


class CityscapesSegmentation(torch.utils.data.Dataset):
    """Images and train-id labels from a Cityscapes-layout directory.

    Args:
        root: dataset root holding ``leftImg8bit/`` and ``gtFine/`` (or ``gtCoarse/``); ``None``
            reads the ``CITYSCAPES_DATASET`` environment variable.
        split: split folder name (``"train"``, ``"val"``, ``"test"``, ``"train_extra"``).
        label_map: labelId → train id. Default: :data:`LABEL_TO_TRAIN`. Label values that are
            neither keys nor ``ignore_index`` raise ``ValueError`` on load.
        transform: joint transform ``(image, label) -> (image, label)``; default
            :class:`~gald.data.transforms.ToTensorNormalize`.
        mode: ``"fine"`` (gtFine) or ``"coarse"`` (gtCoarse).
        classes: class names, indexed by train id. Default: the 19 Cityscapes names with the
            default map, else ``class0, class1, …`` up to the map's largest train id.
        palette: RGB colours per train id. Default: :data:`CITYSCAPES_PALETTE` with the default
            map, else ``None``.
        ignore_index: train id of unlabelled pixels.

    Shape:
        ``ds[i]`` -> image (3, H, W) float32, label (H, W) int64 (with the default transform)
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        label_map: Mapping[int, int] | None = None,
        transform: Callable | None = None,
        mode: str = "fine",
        classes: Sequence[str] | None = None,
        palette: Sequence[tuple[int, int, int]] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        check_choice("mode", mode, tuple(_MODES))
        if root is None:
            env = os.environ.get("CITYSCAPES_DATASET")
            if not env:
                raise MissingFileError(
                    "no dataset root: root=None and the CITYSCAPES_DATASET environment variable is unset. "
                    + _not_found_hint()
                )
            root = env
        self.root = Path(root)
        self.split = split
        self.mode = mode
        self.ignore_index = ignore_index
        self.transform = ToTensorNormalize() if transform is None else transform
        image_dir = self.root / "leftImg8bit" / split
        if not self.root.is_dir():
            raise MissingFileError(
                f"dataset root {self.root} does not exist (looked for images in {image_dir}). " + _not_found_hint()
            )
        if not image_dir.is_dir():
            raise MissingFileError(f"no split folder {image_dir} (split={split!r}). " + _not_found_hint())
        gt = _MODES[mode]
        self.files: list[tuple[Path, Path]] = []
        for image_path in sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}")):
            stem = image_path.name[: -len(_IMAGE_SUFFIX)]
            label_path = self.root / gt / split / image_path.parent.name / f"{stem}_{gt}_labelIds.png"
            if not label_path.is_file():
                raise MissingFileError(f"image {image_path} has no label: expected {label_path}")
            self.files.append((image_path, label_path))
        if not self.files:
            raise MissingFileError(
                f"no images in {image_dir}: expected {image_dir}/CITY/CITY_SEQ_FRAME{_IMAGE_SUFFIX}"
            )

        self.label_map = dict(LABEL_TO_TRAIN if label_map is None else label_map)
        self._lut = np.full(256, ignore_index, np.uint8)
        self._known = np.zeros(256, bool)
        for label_id, train_id in self.label_map.items():
            if 0 <= label_id < 256:
                self._lut[label_id] = train_id
                self._known[label_id] = True
        if 0 <= ignore_index < 256:
            self._known[ignore_index] = True
        self._checked: set = set()  # label files whose values load() has checked
        train_ids = sorted({t for t in self.label_map.values() if t != ignore_index})
        self.num_classes = len(CITYSCAPES_CLASSES) if label_map is None else (max(train_ids) + 1 if train_ids else 0)
        if classes is None:
            classes = CITYSCAPES_CLASSES if label_map is None else tuple(f"class{i}" for i in range(self.num_classes))
        if palette is None and label_map is None:
            palette = CITYSCAPES_PALETTE
        self.classes = tuple(classes)
        self.palette = None if palette is None else [tuple(c) for c in palette]
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.num_classes} train ids in the label map")
        log.debug("%s: %d %s images under %s", type(self).__name__, len(self.files), split, image_dir)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Untransformed ``(image (H, W, 3) uint8 RGB, label (H, W) uint8 train ids)`` of item ``i``.

        Raises:
            CorruptImageError: the image or label cannot be decoded.
            ValueError: sizes differ, the label is not single-channel, or it holds unknown labelIds.
        """
        image, raw = self.decode(i)
        path = self.files[i][1]
        label = self.map_labels(raw, path, check=path not in self._checked)
        self._checked.add(path)  # each file's values are checked once (per worker process)
        return image, label

    def decode(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i``'s image (H, W, 3) uint8 RGB and its label file as stored (H, W), each
        decoded straight into one array.

        Raises:
            CorruptImageError: the image or label cannot be decoded.
            ValueError: sizes differ, or the label is not single-channel.
        """
        image_path, label_path = self.files[i]
        image = _read_array(image_path, "RGB")
        raw = _read_array(label_path, None)
        if image.shape[:2] != raw.shape[:2]:
            raise ValueError(
                f"image {image_path} is {image.shape[1]}×{image.shape[0]} but its label {label_path} "
                f"is {raw.shape[1]}×{raw.shape[0]} (width×height)"
            )
        if raw.ndim != 2:
            raise ValueError(f"label {label_path} has {raw.shape[2]} channels; expected labelIds")
        return image, raw

    def map_labels(self, raw: np.ndarray, path: str | os.PathLike = "label", *, check: bool = True) -> np.ndarray:
        """labelIds → train ids through the lookup table; with ``check``, every value the file
        holds is first checked against the label map (one counting pass). :meth:`load` checks each
        file the first time it reads it.

        Raises:
            ValueError: ``raw`` holds values outside the label map (and not ignore).

        Shape:
            (H, W) int -> (H, W) uint8
        """
        if raw.dtype != np.uint8:
            if raw.size and (raw.min() < 0 or raw.max() > 255):
                bad = np.unique(raw[(raw < 0) | (raw > 255)])[:10].tolist()
                raise ValueError(f"label {path} holds values {bad} outside every label map key")
            raw = raw.astype(np.uint8)
        if not check:
            return np.take(self._lut, raw)
        present = np.bincount(raw.ravel(), minlength=256) > 0  # every value the file holds, in one pass
        unknown = present & ~self._known
        if unknown.any():
            raise ValueError(
                f"label {path} holds labelIds {np.flatnonzero(unknown).tolist()} that are not in the label map "
                f"(known: {sorted(self.label_map)}) and not ignore ({self.ignore_index})"
            )
        return np.take(self._lut, raw)

    def __getitem__(self, i: int):
        image, label = self.load(i)
        return self.transform(image, label)

    def __repr__(self) -> str:
        root = str(self.root)
        return f"CityscapesSegmentation(root={root!r}, split={self.split!r}, mode={self.mode!r}, n={len(self)})"
