"""Pascal VOC detection (paper Section 4.4, Table 3(a), Table 6): ``VOCdevkit/VOC<year>`` folders.

Layout read: ``VOC<year>/Annotations/<id>.xml``, ``VOC<year>/JPEGImages/<id>.jpg`` and
``VOC<year>/ImageSets/Main/<set>.txt``. The paper trains on 07+12 trainval and tests on 07 test.

Boxes: VOC's ``xmin..xmax`` are 1-based inclusive pixel indices; they become continuous
``[xmin - 1, ymin - 1, xmax, ymax]`` boxes, whose width ``xmax - xmin + 1`` is the devkit's, so
:func:`gald.metrics.detection.voc_evaluate` reproduces the devkit's IoU. ``difficult`` flags are
kept in the target for evaluation (and dropped with their boxes when ``keep_difficult=False``,
mmdetection's training choice).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.data.images import check_pixels
from gald.errors import MissingFileError

from .detection import DetectionTransform

log = logging.getLogger(__name__)

__all__ = ["VOC_CLASSES", "parse_voc_xml", "VOCDetection"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def parse_voc_xml(path: str | os.PathLike, classes: Sequence[str]) -> dict:
    """Read one VOC annotation file.

    Returns:
        ``{"boxes" (n, 4) float32, "labels" (n,) int64 in 1..len(classes), "difficult" (n,) bool,
        "size" (height, width), "degenerate": boxes dropped for zero width or height}``.

    Raises:
        ValueError: malformed XML, a missing field, or a class name not in ``classes`` — naming the file.
    """
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: malformed VOC annotation XML ({err})") from None
    index = {name: i + 1 for i, name in enumerate(classes)}
    boxes, labels, difficult = [], [], []
    degenerate = 0
    try:
        size = root.find("size")
        hw = (int(size.find("height").text), int(size.find("width").text)) if size is not None else None
        for obj in root.iter("object"):
            name = obj.find("name").text.strip()
            if name not in index:
                raise ValueError(f"{path}: class {name!r} is not in the dataset's class list {list(classes)}")
            bb = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
            box = [xmin - 1, ymin - 1, xmax, ymax]
            if box[2] <= box[0] or box[3] <= box[1]:
                degenerate += 1
                continue
            d = obj.find("difficult")
            boxes.append(box)
            labels.append(index[name])
            difficult.append(d is not None and d.text is not None and int(d.text) == 1)
    except (AttributeError, TypeError) as err:
        raise ValueError(f"{path}: VOC annotation is missing a field (name, bndbox/xmin..ymax or size): {err}") from None
    except ValueError as err:
        if str(err).startswith(path):
            raise
        raise ValueError(f"{path}: bad number in a VOC annotation ({err})") from None
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
        "size": hw,
        "degenerate": degenerate,
    }


class VOCDetection(torch.utils.data.Dataset):
    """Pascal VOC detection over one or more ``(year, image_set)`` pairs (07+12 trainval by default).

    Every annotation is parsed at construction, so a bad file fails early with its name.

    Args:
        root: the ``VOCdevkit`` folder.
        image_sets: ``(year, set)`` pairs, e.g. ``[("2007", "test")]``.
        classes: class names; label ``k`` is ``classes[k - 1]`` (0 is the background).
        keep_difficult: keep difficult boxes (flagged in ``target["difficult"]``) — for evaluation.
        transform: ``(image, target) -> (image, target)``; default :class:`DetectionTransform`.

    Shape:
        ``ds[i]`` -> image (3, H, W) float32 in [0, 1], target ``{"boxes", "labels", "difficult", "image_id"}``
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        image_sets: Sequence[tuple[str, str]] = (("2007", "trainval"), ("2012", "trainval")),
        classes: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = True,
        transform=None,
    ) -> None:
        self.root = Path(root)
        self.classes = tuple(classes)
        self.transform = transform or DetectionTransform()
        self.images: list[Path] = []
        self.targets: list[dict] = []
        degenerate = 0
        for year, image_set in image_sets:
            base = self.root / f"VOC{year}"
            listing = base / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.is_file():
                raise MissingFileError(
                    f"VOC image set not found: {listing}; root must be the VOCdevkit folder holding "
                    f"VOC{year}/ImageSets/Main/{image_set}.txt (python data_scripts/make_synthetic_detection.py "
                    "writes a synthetic one)"
                )
            for image_id in listing.read_text().split():
                xml = base / "Annotations" / f"{image_id}.xml"
                if not xml.is_file():
                    raise MissingFileError(f"{listing} lists {image_id!r} but {xml} does not exist")
                t = parse_voc_xml(xml, self.classes)
                degenerate += t.pop("degenerate")
                t.pop("size")
                if not keep_difficult:
                    keep = ~t["difficult"]
                    t = {k: v[keep] for k, v in t.items()}
                self.images.append(base / "JPEGImages" / f"{image_id}.jpg")
                self.targets.append(t)
        if degenerate:
            log.warning("%s: dropped %d degenerate box(es) with zero width or height", self.root, degenerate)
        self.degenerate = degenerate

    def __len__(self) -> int:
        return len(self.images)

    def target(self, i: int) -> dict:
        return {**self.targets[i], "image_id": torch.tensor(i)}

    def __getitem__(self, i: int):
        path = self.images[i]
        try:
            with Image.open(path) as im:
                check_pixels(im, path)  # from the header, before decoding
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise OSError(f"cannot read VOC image {path}: {err}") from None
        return self.transform(image, self.target(i))

    def __repr__(self) -> str:
        return f"VOCDetection(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)})"
