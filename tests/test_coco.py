"""COCO reader (gald.data.coco) on fixtures written by the synthetic COCO export and by hand."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from gald.data.coco import COCODetection, load_coco_json
from gald.data.detection import DETECTION_CLASSES, DETECTION_VERSION, export_coco_layout, scene_targets
from gald.data.synthetic import make_scene

SIZE = (67, 101)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return export_coco_layout(tmp_path_factory.mktemp("coco"), seed=5, num_train=2, num_val=3, size=SIZE)


def test_export_writes_the_exact_coco_layout(coco_root):
    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(DETECTION_CLASSES)
    assert [im["file_name"] for im in data["images"]] == [f"synth_val_{i:06d}.jpg" for i in range(3)]
    ann = data["annotations"][0]
    assert set(ann) >= {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"}
    assert isinstance(ann["segmentation"]["counts"], str) and ann["segmentation"]["size"] == list(SIZE)
    assert (coco_root / "train2017" / "synth_train_000001.jpg").is_file()


def test_reader_round_trips_boxes_labels_and_masks(coco_root):
    ds = COCODetection(coco_root, split="val2017")
    assert ds.classes == DETECTION_CLASSES and len(ds) == 3
    for i in range(3):
        image, t = ds[i]
        expected = scene_targets(make_scene(5, i, split="val", size=SIZE, version=DETECTION_VERSION))
        assert image.shape == (3, *SIZE)
        torch.testing.assert_close(t["boxes"], expected["boxes"])
        torch.testing.assert_close(t["labels"], expected["labels"])
        assert torch.equal(t["masks"], expected["masks"])  # RLE is lossless
    coco, label_to_cat = ds.coco_gt()
    assert label_to_cat == {1: 1, 2: 2, 3: 3, 4: 4} and len(coco.imgs) == 3


def _hand_made(tmp_path, annotations, categories=None):
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "val2017").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((21, 31, 3), np.uint8)).save(tmp_path / "val2017" / "a.jpg")
    Image.fromarray(np.zeros((21, 31, 3), np.uint8)).save(tmp_path / "val2017" / "b.jpg")
    data = {"images": [{"id": 7, "file_name": "a.jpg", "height": 21, "width": 31},
                       {"id": 9, "file_name": "b.jpg", "height": 21, "width": 31}],
            "annotations": annotations,
            "categories": categories or [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]}
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_polygons_crowd_degenerate_and_empty_images(tmp_path, caplog):
    _hand_made(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [2, 3, 10, 8], "iscrowd": 0, "area": 80,
         "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 31, 21], "iscrowd": 1, "area": 651,
         "segmentation": {"counts": [0, 651], "size": [21, 31]}},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 4], "iscrowd": 0, "area": 0,
         "segmentation": [[5, 5, 5, 9, 5, 9]]},
    ])
    ds = COCODetection(tmp_path, split="val2017")
    assert ds.classes == ("car", "dog")  # category ids sorted: 3 -> label 1, 18 -> label 2
    with caplog.at_level(logging.WARNING, logger="gald.data.coco"):
        _, t = ds[0]
    assert "dropped 1 degenerate" in caplog.text
    assert t["boxes"].tolist() == [[2.0, 3.0, 12.0, 11.0]] and t["labels"].tolist() == [2]
    mask = t["masks"][0]
    assert mask.shape == (21, 31) and mask[5:10, 4:11].all() and mask.sum() < 21 * 31 / 2
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 21, 31)
    assert int(empty["image_id"]) == 9


def test_bad_json_names_the_file(tmp_path):
    path = _hand_made(tmp_path, [])
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"instances_val2017\.json.*malformed"):
        load_coco_json(path)
    path = _hand_made(tmp_path, [{"id": 1, "image_id": 7, "category_id": 99, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(ValueError, match=r"instances_val2017\.json.*category_id 99"):
        COCODetection(tmp_path)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="lacks"):
        load_coco_json(path)
    with pytest.raises(FileNotFoundError, match="instances_train2017"):
        COCODetection(tmp_path, split="train2017")


def test_synthetic_detection_flip_keeps_boxes_on_masks_and_drop_degenerate(caplog):
    from gald.data.detection import DetectionTransform, SyntheticDetection, drop_degenerate

    ds = SyntheticDetection(split="val", num_images=2, seed=2, size=(65, 97), transform=DetectionTransform(flip=1.0))
    image, t = ds[1]
    plain = SyntheticDetection(split="val", num_images=2, seed=2, size=(65, 97))
    image0, t0 = plain[1]
    torch.testing.assert_close(image, image0.flip(-1))
    assert torch.equal(t["masks"], t0["masks"].flip(-1))
    for box, mask in zip(t["boxes"], t["masks"]):  # boxes stay tight around the flipped masks
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    assert set(t0["labels"].tolist()) <= {1, 2, 3, 4} and len(t0["boxes"]) == len(t0["masks"]) > 0
    with pytest.raises(IndexError):
        plain[2]
    target = {"boxes": torch.tensor([[0.0, 0, 5, 5], [3, 3, 3, 9], [1, 1, 4, 0]]), "labels": torch.tensor([1, 2, 3]),
              "image_id": torch.tensor(4)}
    with caplog.at_level(logging.WARNING, logger="gald.data.detection"):
        kept, n = drop_degenerate(target, source="img4")
    assert n == 2 and kept["labels"].tolist() == [1] and "img4: dropped 2 degenerate" in caplog.text
