"""MS COCO detection and instance segmentation (paper Section 4.4, Table 3(b)).

Layout read: ``root/annotations/instances_<split>.json`` and ``root/<split>/<file_name>``. Masks
come from polygons or RLE through ``pycocotools`` (``COCO.annToMask``). Category ids map to
contiguous labels 1..K in id order (0 is the background); :attr:`COCODetection.label_to_category`
maps back for evaluation against the annotation file. Crowd annotations are left out of the
training targets (as torchvision's reference does) and kept by the evaluation, which reads the
file itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.data.images import check_pixels
from gald.errors import MissingFileError

from .detection import DetectionTransform

log = logging.getLogger(__name__)

__all__ = ["load_coco_json", "COCODetection"]


def load_coco_json(path: str | os.PathLike):
    """A ``pycocotools.coco.COCO`` from an instances file, with errors that name the file."""
    from pycocotools.coco import COCO

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(
            f"COCO annotation file not found: {path}; expected root/annotations/instances_<split>.json "
            "(python data_scripts/make_synthetic_detection.py writes a synthetic one)"
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed COCO JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a COCO annotation file holds a JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(f"{path}: COCO annotation file lacks {missing}")
    cat_ids = {c["id"] for c in data["categories"]}
    image_ids = {im["id"] for im in data["images"]}
    for ann in data["annotations"]:
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise ValueError(f"{path}: annotation {ann.get('id')!r} lacks {key!r}")
        if ann["category_id"] not in cat_ids:
            raise ValueError(
                f"{path}: annotation {ann.get('id')!r} has category_id {ann['category_id']} which is not in "
                f"the file's categories {sorted(cat_ids)}"
            )
        if ann["image_id"] not in image_ids:
            raise ValueError(f"{path}: annotation {ann.get('id')!r} refers to unknown image_id {ann['image_id']}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class COCODetection(torch.utils.data.Dataset):
    """COCO instances of one split.

    Args:
        root: folder holding ``annotations/`` and the image folders.
        split: ``"train2017"``, ``"val2017"``, ...
        ann_file: annotation file (default ``root/annotations/instances_<split>.json``).
        masks: include instance masks (Mask R-CNN).
        transform: ``(image, target) -> (image, target)``; default :class:`DetectionTransform`.

    Shape:
        ``ds[i]`` -> image (3, H, W) float32 in [0, 1], target ``{"boxes", "labels", "masks", "area",
        "iscrowd", "image_id"}`` (``image_id`` is the COCO id)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "val2017",
        ann_file: str | os.PathLike | None = None,
        masks: bool = True,
        transform=None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.ann_file = Path(ann_file) if ann_file else self.root / "annotations" / f"instances_{split}.json"
        self.coco = load_coco_json(self.ann_file)
        cats = sorted(self.coco.cats)
        self.label_to_category = {i + 1: c for i, c in enumerate(cats)}
        self.category_to_label = {c: i for i, c in self.label_to_category.items()}
        self.classes = tuple(self.coco.cats[c]["name"] for c in cats)
        self.ids = sorted(self.coco.imgs)
        self.masks = masks
        self.transform = transform or DetectionTransform()
        self.degenerate = 0

    def __len__(self) -> int:
        return len(self.ids)

    def target(self, i: int) -> dict:
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():
            n = int((~keep).sum())
            self.degenerate += n
            log.warning("%s image %s: dropped %d degenerate box(es) with zero width or height",
                        self.ann_file, image_id, n)
        anns = [a for a, k in zip(anns, keep.tolist()) if k]
        t = {
            "boxes": boxes[keep],
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
            "image_id": torch.tensor(image_id),
        }
        if self.masks:
            planes = [self.coco.annToMask(a) if "segmentation" in a else np.zeros((h, w), np.uint8) for a in anns]
            t["masks"] = torch.from_numpy(np.stack(planes)) if planes else torch.zeros((0, h, w), dtype=torch.uint8)
        return t

    def __getitem__(self, i: int):
        path = self.root / self.split / self.coco.imgs[self.ids[i]]["file_name"]
        try:
            with Image.open(path) as im:
                check_pixels(im, path)  # from the header, before decoding
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise OSError(f"cannot read COCO image {path}: {err}") from None
        return self.transform(image, self.target(i))

    def coco_gt(self):
        """``(COCO ground truth, label → category id)`` for :func:`gald.metrics.detection.coco_evaluate`."""
        return self.coco, self.label_to_category

    def __repr__(self) -> str:
        return f"COCODetection(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"
