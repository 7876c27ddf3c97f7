"""Pascal VOC reader (gald.data.voc) on fixtures written by the synthetic VOC export."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from gald.data.detection import DETECTION_CLASSES, DETECTION_VERSION, export_voc_layout, scene_targets
from gald.data.synthetic import make_scene
from gald.data.voc import VOC_CLASSES, VOCDetection, parse_voc_xml

SIZE = (67, 101)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    return export_voc_layout(tmp_path_factory.mktemp("voc"), seed=3, num_trainval=3, num_test=2, size=SIZE)


def test_export_writes_the_exact_voc_layout(devkit):
    base = devkit / "VOC2007"
    assert (base / "ImageSets" / "Main" / "trainval.txt").read_text().split() == [
        f"synth_train_{i:06d}" for i in range(3)]
    assert len((base / "ImageSets" / "Main" / "test.txt").read_text().split()) == 2
    root = ET.parse(base / "Annotations" / "synth_train_000000.xml").getroot()
    assert root.find("size/width").text == str(SIZE[1]) and root.find("size/height").text == str(SIZE[0])
    t = scene_targets(make_scene(3, 0, split="train", size=SIZE, version=DETECTION_VERSION))
    first = root.find("object")
    x0, y0, x1, y1 = t["boxes"][0].tolist()
    assert first.find("name").text == DETECTION_CLASSES[int(t["labels"][0]) - 1]
    # VOC is 1-based and inclusive
    assert [int(first.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")] == [
        x0 + 1, y0 + 1, x1, y1]
    assert (base / "JPEGImages" / "synth_val_000001.jpg").is_file()


def test_reader_round_trips_boxes_and_labels(devkit):
    ds = VOCDetection(devkit, image_sets=[("2007", "trainval")], classes=DETECTION_CLASSES)
    assert len(ds) == 3
    for i in range(3):
        image, target = ds[i]
        expected = scene_targets(make_scene(3, i, split="train", size=SIZE, version=DETECTION_VERSION))
        assert image.shape == (3, *SIZE) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
        torch.testing.assert_close(target["boxes"], expected["boxes"])
        torch.testing.assert_close(target["labels"], expected["labels"])
        assert not target["difficult"].any()
    assert len(VOCDetection(devkit, image_sets=[("2007", "test")], classes=DETECTION_CLASSES)) == 2


def _write_xml(path, objects, size=(50, 60)):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objects)
    path.write_text(f"<annotation><size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"
                    f"{objs}</annotation>")


def test_difficult_kept_for_eval_dropped_for_training_and_degenerate_boxes_dropped(tmp_path, caplog):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    _write_xml(base / "Annotations" / "a.xml", [("dog", 0, (1, 1, 10, 20)), ("cat", 1, (5, 5, 30, 30)),
                                                ("dog", 0, (12, 3, 11, 9)), ("car", 0, (4, 8, 9, 7))])
    _write_xml(base / "Annotations" / "empty.xml", [])
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("a\nempty\n")
    with caplog.at_level(logging.WARNING, logger="gald.data.voc"):
        ds = VOCDetection(tmp_path / "VOCdevkit", image_sets=[("2012", "trainval")])
    assert "dropped 2 degenerate" in caplog.text
    t = ds.target(0)
    assert t["boxes"].tolist() == [[0.0, 0.0, 10.0, 20.0], [4.0, 4.0, 30.0, 30.0]]
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("cat") + 1]
    assert t["difficult"].tolist() == [False, True]
    assert ds.target(1)["boxes"].shape == (0, 4)  # an image without objects is a negative
    train = VOCDetection(tmp_path / "VOCdevkit", image_sets=[("2012", "trainval")], keep_difficult=False)
    assert train.target(0)["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]


def test_bad_annotations_name_the_file(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object><name>dog</name>")
    with pytest.raises(ValueError, match=r"bad\.xml.*malformed"):
        parse_voc_xml(bad, VOC_CLASSES)
    unknown = tmp_path / "unknown.xml"
    _write_xml(unknown, [("unicorn", 0, (1, 1, 5, 5))])
    with pytest.raises(ValueError, match=r"unknown\.xml.*'unicorn' is not in"):
        parse_voc_xml(unknown, VOC_CLASSES)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text("<annotation><object><name>dog</name></object></annotation>")
    with pytest.raises(ValueError, match=r"nobox\.xml.*missing a field"):
        parse_voc_xml(nobox, VOC_CLASSES)
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/trainval.txt"):
        VOCDetection(tmp_path, image_sets=[("2007", "trainval")])


def test_unreadable_image_is_named(devkit, tmp_path):
    ds = VOCDetection(devkit, image_sets=[("2007", "test")], classes=DETECTION_CLASSES)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    ds.images[0] = broken
    with pytest.raises(OSError, match="broken.jpg"):
        ds[0]
    assert np.isfinite(ds[1][0].numpy()).all()
