"""Mapillary Vistas v1.2 → 19 Cityscapes classes: the table, the reader, and its errors."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gald.data import DATASETS
from gald.data.cityscapes import CITYSCAPES_CLASSES, CorruptImageError
from gald.data.fixtures import FIXTURE_VERSION, make_mapillary_fixture
from gald.data.mapillary import (
    MAPILLARY_CLASSES,
    MAPILLARY_PALETTE,
    MAPILLARY_TO_CITYSCAPES,
    MapillaryVistas,
    mapillary_train_ids,
    resize_short_side,
)
from gald.data.synthetic import make_scene

SIZE = (48, 72)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("vistas")
    make_mapillary_fixture(root, per_split=2, size=SIZE, seed=3)
    return root


@pytest.fixture
def root(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    return copy


def train_id(name):
    return int(mapillary_train_ids()[MAPILLARY_CLASSES.index(name)])


def test_class_list_and_table():
    assert len(MAPILLARY_CLASSES) == len(set(MAPILLARY_CLASSES)) == len(MAPILLARY_PALETTE) == 66
    assert MAPILLARY_CLASSES[0] == "animal--bird" and MAPILLARY_CLASSES[-1] == "void--unlabeled"
    assert MAPILLARY_CLASSES[13] == "construction--flat--road" and MAPILLARY_PALETTE[13] == (128, 64, 128)
    assert set(MAPILLARY_TO_CITYSCAPES) <= set(MAPILLARY_CLASSES)
    assert set(MAPILLARY_TO_CITYSCAPES.values()) == set(CITYSCAPES_CLASSES)  # every Cityscapes class has a source


@pytest.mark.parametrize(
    "name, expected",
    [
        ("construction--flat--road", "road"),
        ("marking--crosswalk-zebra", "road"),
        ("construction--flat--bike-lane", "road"),
        ("construction--flat--sidewalk", "sidewalk"),
        ("construction--barrier--curb", "sidewalk"),
        ("human--rider--bicyclist", "rider"),
        ("human--rider--motorcyclist", "rider"),
        ("human--rider--other-rider", "rider"),
        ("object--support--utility-pole", "pole"),
        ("object--traffic-sign--front", "traffic sign"),
        ("object--vehicle--on-rails", "train"),
        ("void--unlabeled", None),
        ("void--ego-vehicle", None),
        ("object--traffic-sign--back", None),
        ("construction--flat--parking", None),  # Cityscapes' own unevaluated "parking"
        ("construction--structure--bridge", None),
        ("object--vehicle--caravan", None),
        ("construction--barrier--guard-rail", None),  # Cityscapes' own "guard rail"
        ("construction--barrier--fence", "fence"),
    ],
)
def test_mapping_spot_checks(name, expected):
    assert train_id(name) == (255 if expected is None else CITYSCAPES_CLASSES.index(expected))


def test_lut_covers_every_byte():
    lut = mapillary_train_ids()
    assert lut.shape == (256,) and (lut[66:] == 255).all()
    assert sorted(set(lut[:66].tolist()) - {255}) == list(range(19))


def test_reads_the_fixture(built):
    ds = MapillaryVistas(built, split="val")
    assert DATASETS["mapillary"] is MapillaryVistas
    assert len(ds) == 2 and ds.num_classes == 19 and ds.classes == CITYSCAPES_CLASSES and len(ds.palette) == 19
    assert Image.open(ds.files[0][1]).mode == "P"
    sizes = set()
    for i in range(2):
        image, label = ds.load(i)
        scene = make_scene(3, i, split="val", size=(SIZE[0], SIZE[1] + 8 * i), version=FIXTURE_VERSION)
        assert image.shape == scene.image.shape and image.dtype == np.uint8 and label.dtype == np.uint8
        assert np.abs(image.astype(int) - scene.image).mean() < 8  # JPEG
        h = label.shape[0]
        body = label[: h - 8]  # above the markings/curb/ego-vehicle rows the fixture adds
        synth_to_cs = np.array([CITYSCAPES_CLASSES.index(n) for n in
                                ("road", "terrain", "building", "vegetation", "sky", "pole", "traffic sign", "person", "car")])
        np.testing.assert_array_equal(body, synth_to_cs[scene.label[: h - 8]])
        assert (label[h - 2 :] == 255).all()  # ego vehicle
        assert (label[h - 4 : h - 2] == CITYSCAPES_CLASSES.index("sidewalk")).all()  # curb
        sizes.add(label.shape)
    assert len(sizes) == 2  # Vistas images differ in size
    x, y = ds[0]
    assert x.shape == (3, *SIZE) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_test_split_has_no_labels(built):
    ds = MapillaryVistas(built, split="testing")
    image, label = ds.load(1)
    assert label.shape == image.shape[:2] and (label == 255).all()


def test_resize_short(built):
    ds = MapillaryVistas(built, split="training", resize_short=31)
    for i in range(2):
        image, label = ds.load(i)
        assert min(label.shape) == 31 and image.shape[:2] == label.shape
        assert set(np.unique(label).tolist()) <= set(range(19)) | {255}
    img, lab = resize_short_side(np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20), np.uint8), 5)
    assert img.shape == (5, 10, 3) and lab.shape == (5, 10)
    with pytest.raises(ValueError, match="resize_short"):
        MapillaryVistas(built, resize_short=0)


def test_v20_download_keeps_v12_labels_in_a_subfolder(root):
    labels = root / "validation" / "labels"
    (root / "validation" / "v1.2").mkdir()
    shutil.move(labels, root / "validation" / "v1.2" / "labels")
    assert len(MapillaryVistas(root, split="validation")) == 2


def test_config_json_is_checked(root):
    config = json.loads((root / "config.json").read_text())
    config["labels"][3]["name"] = "construction--barrier--hedge"
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"label 3 is 'construction--barrier--hedge'") as err:
        MapillaryVistas(root)
    assert str(root / "config.json") in str(err.value)
    config["labels"] = config["labels"] * 2
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="132 labels"):
        MapillaryVistas(root)


def test_missing_root_says_where_and_how(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        MapillaryVistas(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "prepare_mapillary.py" in str(err.value)
    monkeypatch.delenv("MAPILLARY_DATASET", raising=False)
    with pytest.raises(FileNotFoundError, match="MAPILLARY_DATASET"):
        MapillaryVistas()


def test_environment_variable_root(built, monkeypatch):
    monkeypatch.setenv("MAPILLARY_DATASET", str(built))
    assert len(MapillaryVistas(split="validation")) == 2


def test_wrong_layout_names_the_path(root):
    shutil.rmtree(root / "validation" / "labels")
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "validation" / "labels"))):
        MapillaryVistas(root, split="validation")
    stray = root / "training" / "images" / "notes.txt"
    stray.write_text("x")
    with pytest.raises(ValueError, match=re.escape(str(stray))):
        MapillaryVistas(root, split="training")
    with pytest.raises(KeyError, match="validation"):
        MapillaryVistas(root, split="dev")


def test_image_without_label_names_both(root):
    ds = MapillaryVistas(root, split="training")
    image, label = ds.files[1]
    label.unlink()
    with pytest.raises(FileNotFoundError) as err:
        MapillaryVistas(root, split="training")
    assert str(image) in str(err.value) and str(label) in str(err.value)


def test_label_errors_name_file_mode_and_ids(root):
    ds = MapillaryVistas(root, split="training")
    label_path = ds.files[0][1]
    raw = np.asarray(Image.open(label_path)).copy()
    Image.fromarray(np.stack([raw] * 3, -1)).save(label_path)
    with pytest.raises(ValueError, match="mode 'RGB'") as err:
        ds.load(0)
    assert str(label_path) in str(err.value)
    raw[0, :2] = [70, 123]
    Image.fromarray(raw).save(label_path)  # mode L is accepted, but 70 and 123 are no v1.2 class
    with pytest.raises(ValueError, match=r"\[70, 123\]") as err:
        ds.load(0)
    assert str(label_path) in str(err.value)


def test_corrupt_image_is_a_corrupt_image_error(root):
    ds = MapillaryVistas(root, split="training")
    path = ds.files[1][0]
    path.write_bytes(path.read_bytes()[:150])
    ds.load(0)
    with pytest.raises(CorruptImageError) as err:
        ds.load(1)
    assert err.value.path == str(path)
