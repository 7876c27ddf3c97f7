"""The on-disk fixtures follow each dataset's official format (names, modes, encodings, archives)."""

import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from gald.data.cityscapes import LABEL_TO_TRAIN, CityscapesSegmentation
from gald.data.fixtures import (
    CITYSCAPES_LABEL_COLORS,
    CITYSCAPES_LABEL_NAMES,
    FIXTURE_VERSION,
    MAPILLARY_ARCHIVE,
    make_cityscapes_archives,
    make_cityscapes_fixture,
    make_folder_fixture,
    make_mapillary_archive,
    make_mapillary_fixture,
)
from gald.data.folder import FolderSegmentation
from gald.data.mapillary import MAPILLARY_CLASSES, MAPILLARY_PALETTE
from gald.data.synthetic import LABEL_IDS, make_scene

SIZE = (40, 72)


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    assert make_cityscapes_fixture(root, per_split=2, size=SIZE, seed=2) == {"train": 2, "val": 2, "test": 2, "train_extra": 2}
    return root


def test_label_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    by_id = {l.id: l for l in labels if l.id >= 0}
    assert [by_id[i].name for i in range(34)] == list(CITYSCAPES_LABEL_NAMES)
    assert [tuple(by_id[i].color) for i in range(34)] == list(CITYSCAPES_LABEL_COLORS)


def test_cityscapes_file_names_and_modes(cityscapes):
    names = sorted(p.relative_to(cityscapes).as_posix() for p in cityscapes.rglob("*") if p.is_file())
    pattern = re.compile(
        r"^(leftImg8bit/(train|val|test|train_extra)/[a-z]+/[a-z]+_\d{6}_\d{6}_leftImg8bit\.png"
        r"|gtFine/(train|val|test)/[a-z]+/[a-z]+_\d{6}_\d{6}_gtFine_(labelIds|instanceIds|color)\.png"
        r"|gtFine/(train|val|test)/[a-z]+/[a-z]+_\d{6}_\d{6}_gtFine_polygons\.json"
        r"|gtCoarse/(train|val|train_extra)/[a-z]+/[a-z]+_\d{6}_\d{6}_gtCoarse_(labelIds|instanceIds|color)\.png"
        r"|gtCoarse/(train|val|train_extra)/[a-z]+/[a-z]+_\d{6}_\d{6}_gtCoarse_polygons\.json)$"
    )
    assert all(pattern.match(n) for n in names), [n for n in names if not pattern.match(n)]
    assert len(names) == 8 + 3 * 2 * 4 + 3 * 2 * 4  # images, fine (3 splits), coarse (3 splits)
    stem = cityscapes / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine"
    assert Image.open(cityscapes / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png").mode == "RGB"
    assert Image.open(f"{stem}_labelIds.png").mode == "L"
    assert Image.open(f"{stem}_instanceIds.png").mode in ("I;16", "I")
    assert Image.open(f"{stem}_color.png").mode == "RGBA"
    poly = json.loads(open(f"{stem}_polygons.json").read())
    assert poly["imgHeight"] == SIZE[0] and poly["imgWidth"] == SIZE[1]
    assert {o["label"] for o in poly["objects"]} >= {"unlabeled", "ego vehicle", "static"}


def test_cityscapes_label_encodings(cityscapes):
    stem = cityscapes / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000019_gtFine"
    ids = np.asarray(Image.open(f"{stem}_labelIds.png"))
    inst = np.asarray(Image.open(f"{stem}_instanceIds.png")).astype(np.int64)
    colour = np.asarray(Image.open(f"{stem}_color.png"))
    scene = make_scene(2, 0, split="val", size=SIZE, version=FIXTURE_VERSION)
    assert {0, 1, 4} <= set(np.unique(ids).tolist()) <= set(range(34))
    inner = np.zeros(SIZE, bool)
    inner[: SIZE[0] - 6, 1:] = True
    np.testing.assert_array_equal(ids[inner], np.array(LABEL_IDS)[scene.label][inner])
    things = inst >= 1000
    assert things.any() and (inst[things] // 1000 == ids[things]).all() and (inst[~things] == ids[~things]).all()
    np.testing.assert_array_equal(colour[..., :3], np.array(CITYSCAPES_LABEL_COLORS, np.uint8)[ids])
    test_ids = np.asarray(Image.open(cityscapes / "gtFine" / "test" / "berlin" / "berlin_000000_000019_gtFine_labelIds.png"))
    assert (test_ids == 0).all()  # the real test set ships no labels


def test_coarse_labels_blank_boundaries(cityscapes):
    fine = np.asarray(Image.open(cityscapes / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"))
    coarse = np.asarray(Image.open(cityscapes / "gtCoarse/train/aachen/aachen_000000_000019_gtCoarse_labelIds.png"))
    kept = coarse != 0
    assert (coarse[kept] == fine[kept]).all() and (coarse == 0).sum() > (fine == 0).sum()
    ds = CityscapesSegmentation(cityscapes, split="train_extra", mode="coarse")
    assert len(ds) == 2 and set(np.unique(ds.load(1)[1]).tolist()) <= set(LABEL_TO_TRAIN.values())


def test_mapillary_fixture_format(tmp_path):
    make_mapillary_fixture(tmp_path, per_split=2, size=(32, 40))
    config = json.loads((tmp_path / "config.json").read_text())
    assert [l["name"] for l in config["labels"]] == list(MAPILLARY_CLASSES)
    assert [tuple(l["color"]) for l in config["labels"]] == MAPILLARY_PALETTE
    images = sorted((tmp_path / "training" / "images").iterdir())
    assert [p.suffix for p in images] == [".jpg", ".jpg"] and all(len(p.stem) == 22 for p in images)
    label = Image.open(tmp_path / "training" / "labels" / f"{images[1].stem}.png")
    assert label.mode == "P" and label.size == (48, 32)
    assert tuple(label.getpalette()[13 * 3 : 14 * 3]) == (128, 64, 128)
    inst = np.asarray(Image.open(tmp_path / "training" / "instances" / f"{images[1].stem}.png")).astype(np.int64)
    np.testing.assert_array_equal(inst // 256, np.asarray(label))
    assert not (tmp_path / "testing" / "labels").exists()


def test_folder_fixture_format(tmp_path):
    make_folder_fixture(tmp_path, per_split=1, size=(33, 35), splits=False)
    assert not (tmp_path / "splits").exists()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        "classes.json", "images/train/scene_000.png", "images/val/scene_000.jpg",
        "masks/train/scene_000.png", "masks/val/scene_000.png",
    ]  # fmt: skip
    assert len(FolderSegmentation(tmp_path)) == 2


def test_archives_use_official_names_and_paths(tmp_path):
    paths = make_cityscapes_archives(tmp_path, per_split=1, size=(32, 48))
    assert [p.name for p in paths] == [
        "leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip", "gtCoarse.zip", "leftImg8bit_trainextra.zip"
    ]  # fmt: skip
    tops = {}
    for p in paths:
        names = zipfile.ZipFile(p).namelist()
        assert "README" in names and "license.txt" in names
        tops[p.name] = sorted({"/".join(n.split("/")[:2]) for n in names if "/" in n})
    assert tops["leftImg8bit_trainvaltest.zip"] == ["leftImg8bit/test", "leftImg8bit/train", "leftImg8bit/val"]
    assert tops["gtFine_trainvaltest.zip"] == ["gtFine/test", "gtFine/train", "gtFine/val"]
    assert tops["gtCoarse.zip"] == ["gtCoarse/train", "gtCoarse/train_extra", "gtCoarse/val"]
    assert tops["leftImg8bit_trainextra.zip"] == ["leftImg8bit/train_extra"]
    vistas = make_mapillary_archive(tmp_path, per_split=1, size=(32, 40))
    assert vistas.name == MAPILLARY_ARCHIVE
    names = zipfile.ZipFile(vistas).namelist()
    assert "config.json" in names and any(re.match(r"^training/labels/\w{22}\.png$", n) for n in names)
    assert any(n.startswith("testing/images/") for n in names) and not any(n.startswith("testing/labels") for n in names)
