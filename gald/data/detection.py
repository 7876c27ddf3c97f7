"""Detection targets of the embedded scene benchmark, and its export as Pascal VOC and COCO.

The scenes of :mod:`gald.data.synthetic` carry an instance map (``Scene.instances``) for the four
thing classes — pole, traffic sign, person, car. :func:`scene_targets` turns it into torchvision's
detection target (``boxes`` in ``xyxy`` pixels with exclusive right/bottom edges, ``labels``
1..4 with 0 the background, one binary ``masks`` plane per instance).
:class:`SyntheticDetection` serves them; :func:`export_voc_layout` and :func:`export_coco_layout`
write the same scenes in the exact on-disk formats of the two datasets the paper reports on
(Section 4.4), so :mod:`gald.data.voc` and :mod:`gald.data.coco` read them like the real thing.

Also here, shared by every detection dataset: :class:`DetectionTransform` (to tensor + random
horizontal flip), :func:`drop_degenerate` (zero-area boxes are dropped with a warning) and
:func:`collate`.
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gald.config import check_choice
from gald.errors import OutputExistsError

from .synthetic import CLASSES, SPLITS, THING_CLASSES, Scene, make_scene

log = logging.getLogger(__name__)

__all__ = [
    "DETECTION_CLASSES",
    "DETECTION_VERSION",
    "DetectionTransform",
    "SyntheticDetection",
    "collate",
    "drop_degenerate",
    "check_layout_free",
    "export_coco_layout",
    "export_voc_layout",
    "scene_targets",
]

#: The scene benchmark version detection draws: v1, on which the detection benchmark
#: (``benchmarks/detection.py``) and the notebooks' detector were measured.
DETECTION_VERSION = 1

#: detection classes of the scene benchmark; label ``k`` (1-based) is ``DETECTION_CLASSES[k - 1]``.
DETECTION_CLASSES = tuple(CLASSES[t] for t in THING_CLASSES)
_TRAIN_ID_TO_LABEL = {t: i + 1 for i, t in enumerate(THING_CLASSES)}


def scene_targets(scene: Scene) -> dict[str, torch.Tensor]:
    """``{"boxes", "labels", "masks", "area", "iscrowd"}`` of a scene's thing instances.

    Boxes are tight around each instance's visible pixels, ``[x0, y0, x1 + 1, y1 + 1]``.

    Shape:
        boxes (K, 4) float32, labels (K,) int64, masks (K, H, W) uint8, area (K,), iscrowd (K,)
    """
    ids = sorted(scene.instance_classes)
    h, w = scene.instances.shape
    masks = np.zeros((len(ids), h, w), np.uint8)
    boxes = np.zeros((len(ids), 4), np.float32)
    for k, iid in enumerate(ids):
        m = scene.instances == iid
        masks[k] = m
        ys, xs = np.nonzero(m)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    labels = [_TRAIN_ID_TO_LABEL[scene.instance_classes[i]] for i in ids]
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(masks),
        "area": torch.from_numpy(masks.reshape(len(ids), -1).sum(1).astype(np.float32)),
        "iscrowd": torch.zeros(len(ids), dtype=torch.int64),
    }


def drop_degenerate(target: dict[str, torch.Tensor], *, source: str) -> tuple[dict[str, torch.Tensor], int]:
    """Remove boxes with zero (or negative) width or height from every per-box field.

    Returns the filtered target and how many boxes were dropped; logs a warning naming ``source``.
    """
    boxes = target["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%s: dropped %d degenerate box(es) with zero width or height", source, dropped)
        n = len(boxes)
        target = {k: (v[keep] if isinstance(v, torch.Tensor) and v.dim() and len(v) == n else v)
                  for k, v in target.items()}
    return target, dropped


class DetectionTransform:
    """``(image (H, W, 3) uint8, target) -> (image (3, H, W) float in [0, 1], target)``, with a
    horizontal flip of image, boxes and masks with probability ``flip``.

    Detection models normalise inside (torchvision's ``GeneralizedRCNNTransform``), so no mean/std
    here. The flip draws from torch's global RNG, which the training stream seeds per sample
    (:func:`gald.data.build.detection_batches`).

    Args:
        flip: flip probability (0.5 for training, 0 for evaluation).
    """

    def __init__(self, flip: float = 0.0) -> None:
        self.flip = flip

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        img = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)
        if self.flip > 0 and torch.rand(()) < self.flip:
            w = img.shape[-1]
            img = img.flip(-1)
            target = dict(target)
            b = target["boxes"].clone()
            b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
            target["boxes"] = b
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        return img, target

    def __repr__(self) -> str:
        return f"DetectionTransform(flip={self.flip})"


def collate(batch):
    """Detection batches are lists: ``(images, targets)`` tuples of per-image entries."""
    return tuple(zip(*batch))


class SyntheticDetection(torch.utils.data.Dataset):
    """The scene benchmark as a detection / instance-segmentation dataset, generated on the fly.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_images: images in the split.
        seed: benchmark seed.
        size: ``(height, width)``.
        transform: ``(image, target) -> (image, target)``; default :class:`DetectionTransform` (no flip).
        masks: include instance masks (Mask R-CNN) in the targets.

    Shape:
        ``ds[i]`` -> image (3, H, W) float32 in [0, 1], target dict (see :func:`scene_targets`) with
        ``image_id``
    """

    classes = DETECTION_CLASSES

    def __init__(
        self,
        *,
        split: str = "train",
        num_images: int = 400,
        seed: int = 0,
        size: tuple[int, int] = (128, 256),
        transform=None,
        masks: bool = True,
    ) -> None:
        check_choice("split", split, tuple(SPLITS))
        self.split, self.num_images, self.seed = split, int(num_images), int(seed)
        self.size = (int(size[0]), int(size[1]))
        self.transform = transform or DetectionTransform()
        self.masks = masks

    def __len__(self) -> int:
        return self.num_images

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """The untransformed target of image ``i`` (what evaluation compares against)."""
        t = scene_targets(make_scene(self.seed, i, split=self.split, size=self.size, version=DETECTION_VERSION))
        if not self.masks:
            t.pop("masks")
        t["image_id"] = torch.tensor(i)
        return t

    def __getitem__(self, i: int):
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {i} out of range for {self.num_images} synthetic {self.split} images")
        scene = make_scene(self.seed, i, split=self.split, size=self.size, version=DETECTION_VERSION)
        t = scene_targets(scene)
        if not self.masks:
            t.pop("masks")
        t["image_id"] = torch.tensor(i)
        return self.transform(scene.image, t)


# ----------------------------------------------------------------------------------------------
# Export


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def _voc_xml(filename: str, image: np.ndarray, target: dict[str, torch.Tensor], classes) -> bytes:
    h, w = image.shape[:2]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, v in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "0"
    for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[label - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        # VOC boxes are 1-based and inclusive: pixel columns x0..x1-1 become xmin=x0+1, xmax=x1
        for tag, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bb, tag).text = str(v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def check_layout_free(folder: str | os.PathLike, *, force: bool = False) -> None:
    """Refuse to write a dataset layout into a folder that already holds files, unless ``force``.

    Raises:
        OutputExistsError: naming the folder.
    """
    folder = Path(folder)
    if not force and folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
        raise OutputExistsError(f"{folder} already holds files; pass --force to replace them, or choose another --out")


def export_voc_layout(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    num_trainval: int = 400,
    num_test: int = 100,
    size: tuple[int, int] = (128, 256),
    year: str = "2007",
    force: bool = False,
) -> Path:
    """Write the scene benchmark as ``root/VOCdevkit/VOC<year>`` (Annotations, JPEGImages, ImageSets/Main).

    ``trainval`` holds the benchmark's train split, ``test`` its val split; images are
    ``synth_<split>_<index>.jpg``. Returns the ``VOCdevkit`` folder.

    Raises:
        OutputExistsError: the folder already holds files, unless ``force`` (then they are replaced).
    """
    devkit = Path(root) / "VOCdevkit"
    base = devkit / f"VOC{year}"
    check_layout_free(base, force=force)
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_set, split, n in (("trainval", "train", num_trainval), ("test", "val", num_test)):
        ids = []
        for i in range(n):
            scene = make_scene(seed, i, split=split, size=size, version=DETECTION_VERSION)
            name = f"synth_{split}_{i:06d}"
            _save_jpeg(base / "JPEGImages" / f"{name}.jpg", scene.image)
            xml = _voc_xml(f"{name}.jpg", scene.image, scene_targets(scene), DETECTION_CLASSES)
            (base / "Annotations" / f"{name}.xml").write_bytes(xml)
            ids.append(name)
        (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))
    log.info("wrote VOC layout of %d + %d scenes to %s", num_trainval, num_test, base)
    return devkit


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def export_coco_layout(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    num_train: int = 400,
    num_val: int = 100,
    size: tuple[int, int] = (128, 256),
    force: bool = False,
) -> Path:
    """Write the scene benchmark as COCO: ``root/{train,val}2017/*.jpg`` and
    ``root/annotations/instances_{train,val}2017.json`` (masks as compressed RLE).

    Category ids are 1..4 in :data:`DETECTION_CLASSES` order. Returns ``root``.

    Raises:
        OutputExistsError: ``root`` already holds files, unless ``force`` (then they are replaced).
    """
    root = Path(root)
    check_layout_free(root, force=force)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "scene"} for i, n in enumerate(DETECTION_CLASSES)]
    for folder, split, n in (("train2017", "train", num_train), ("val2017", "val", num_val)):
        images, annotations = [], []
        for i in range(n):
            scene = make_scene(seed, i, split=split, size=size, version=DETECTION_VERSION)
            name = f"synth_{split}_{i:06d}.jpg"
            _save_jpeg(root / folder / name, scene.image)
            h, w = scene.image.shape[:2]
            images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
            t = scene_targets(scene)
            for box, label, mask in zip(t["boxes"].tolist(), t["labels"].tolist(), t["masks"].numpy()):
                x0, y0, x1, y1 = box
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(mask.sum()), "iscrowd": 0,
                    "segmentation": _rle(mask),
                })
        payload = {"info": {"description": f"gald synthetic scenes, seed {seed}"}, "images": images,
                   "annotations": annotations, "categories": categories}
        with open(root / "annotations" / f"instances_{folder}.json", "w") as f:
            json.dump(payload, f)
    log.info("wrote COCO layout of %d + %d scenes to %s", num_train, num_val, root)
    return root
