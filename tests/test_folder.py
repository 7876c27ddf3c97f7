"""The generic folder dataset: index and colour masks, splits, class files, and every error case."""

import json
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from gald.data import DATASETS
from gald.data.cityscapes import CorruptImageError
from gald.data.fixtures import FIXTURE_VERSION, make_folder_fixture
from gald.data.folder import FolderSegmentation, read_class_file
from gald.data.synthetic import CLASSES, PALETTE, make_scene

SIZE = (33, 47)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("folder")
    make_folder_fixture(base / "index", per_split=2, size=SIZE, seed=1)
    make_folder_fixture(base / "colour", per_split=2, size=SIZE, seed=1, colour_masks=True)
    return base


@pytest.fixture
def root(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built / "index", copy)
    return copy


def expected_label(i, split="train"):
    label = make_scene(1, i, split=split, size=SIZE, version=FIXTURE_VERSION).label.copy()
    label[0, :] = 255
    return label


def test_index_masks_and_splits(built):
    ds = FolderSegmentation(built / "index", split="train")
    assert DATASETS["folder"] is FolderSegmentation
    assert ds.classes == CLASSES and ds.num_classes == 9 and ds.palette == PALETTE and ds.ignore_index == 255
    assert len(ds) == 2 and ds.files[0][0].name == "scene_000.png"
    image, label = ds.load(1)
    assert image.shape == (*SIZE, 3) and label.dtype == np.uint8
    np.testing.assert_array_equal(label, expected_label(1))
    np.testing.assert_array_equal(image, make_scene(1, 1, split="train", size=SIZE, version=FIXTURE_VERSION).image)  # PNG: lossless
    assert len(FolderSegmentation(built / "index")) == 4 == len(FolderSegmentation(built / "index", split="all"))
    val = FolderSegmentation(built / "index", split="val")
    assert val.files[0][0].suffix == ".jpg"
    np.testing.assert_array_equal(val.load(0)[1], expected_label(0, "val"))


def test_colour_masks_read_like_index_masks(built):
    a = FolderSegmentation(built / "index", split="val")
    b = FolderSegmentation(built / "colour", split="val")
    assert Image.open(b.files[0][1]).mode == "RGB"
    for i in range(2):
        np.testing.assert_array_equal(a.load(i)[1], b.load(i)[1])


def test_mask_values_map_and_yaml_class_file(root):
    (root / "classes.json").unlink()
    spec = {"classes": [{"name": n} for n in CLASSES], "ignore_index": 255,
            "mask_values": {str(v * 10): v for v in range(9)} | {"255": 255}}
    (root / "classes.yaml").write_text(yaml.safe_dump(spec))
    for path in (root / "masks").rglob("*.png"):
        m = np.asarray(Image.open(path)).astype(np.int64)
        Image.fromarray(np.where(m == 255, 255, m * 10).astype(np.uint8)).save(path)
    ds = FolderSegmentation(root, split="train")
    assert ds.palette is None
    np.testing.assert_array_equal(ds.load(0)[1], expected_label(0))


def test_sixteen_bit_index_masks(root):
    path = FolderSegmentation(root, split="train").files[0][1]
    m = np.asarray(Image.open(path)).astype(np.uint16)
    Image.fromarray(m).save(path)
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(FolderSegmentation(root, split="train").load(0)[1], expected_label(0))


def test_missing_root_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        FolderSegmentation(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "images") in str(err.value) and "prepare_folder.py" in str(err.value)


def test_wrong_layout_names_the_first_offending_path(root):
    (root / "classes.json").rename(root / "labels.json")
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "classes.json"))):
        FolderSegmentation(root)
    (root / "labels.json").rename(root / "classes.json")
    stray = root / "images" / "train" / "readme.txt"
    stray.write_text("hi")
    with pytest.raises(ValueError, match=re.escape(str(stray))):
        FolderSegmentation(root)
    stray.unlink()
    shutil.rmtree(root / "masks")
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "masks"))):
        FolderSegmentation(root)


def test_image_without_mask_names_both(root):
    mask = root / "masks" / "val" / "scene_001.png"
    mask.unlink()
    with pytest.raises(FileNotFoundError) as err:
        FolderSegmentation(root, split="val")
    assert str(root / "images" / "val" / "scene_001.jpg") in str(err.value) and str(mask) in str(err.value)


def test_unknown_mask_values_name_file_and_values(root):
    ds = FolderSegmentation(root, split="train")
    path = ds.files[0][1]
    m = np.asarray(Image.open(path)).copy()
    m[5, :2] = [9, 200]
    Image.fromarray(m).save(path)
    with pytest.raises(ValueError, match=r"\[9, 200\]") as err:
        ds.load(0)
    assert str(path) in str(err.value)


def test_unknown_colours_name_file_and_colours(built, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(built / "colour", root)
    ds = FolderSegmentation(root, split="train")
    path = ds.files[1][1]
    m = np.asarray(Image.open(path)).copy()
    m[3, 3] = (1, 2, 3)
    Image.fromarray(m).save(path)
    with pytest.raises(ValueError, match=re.escape("(1, 2, 3)")) as err:
        ds.load(1)
    assert str(path) in str(err.value)


def test_wrong_mask_mode_names_file_and_mode(root):
    ds = FolderSegmentation(root, split="train")
    path = ds.files[0][1]
    Image.open(path).convert("LA").save(path)
    with pytest.raises(ValueError, match="mode 'LA'") as err:
        ds.load(0)
    assert str(path) in str(err.value)


def test_size_mismatch_and_corrupt_files(root):
    ds = FolderSegmentation(root, split="train")
    image_path, mask_path = ds.files[0]
    Image.open(mask_path).resize((10, 10)).save(mask_path)
    with pytest.raises(ValueError, match="10×10"):
        ds.load(0)
    image_path = ds.files[1][0]
    image_path.write_bytes(b"\x89PNG garbage")
    with pytest.raises(CorruptImageError, match=re.escape(str(image_path))):
        ds.load(1)


def test_split_file_errors(root):
    with pytest.raises(FileNotFoundError, match=r"splits/test\.txt.*\['train', 'val'\]"):
        FolderSegmentation(root, split="test")
    (root / "splits" / "train.txt").write_text("train/scene_000\n\n# comment\ntrain/scene_404\n")
    with pytest.raises(FileNotFoundError, match=r"train\.txt line 4: 'train/scene_404'"):
        FolderSegmentation(root, split="train")
    (root / "splits" / "train.txt").write_text("train/scene_001.png\n")  # an extension is tolerated
    assert len(FolderSegmentation(root, split="train")) == 1


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"classes": []}, "non-empty 'classes'"),
        ({"classes": [{"name": "a", "color": [1, 2]}]}, "colour of 'a'"),
        ({"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b"}]}, r"\['b'\] have no 'color'"),
        ({"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [1, 2, 3]}]}, "share a colour"),
        ({"classes": ["a", "b"], "ignore_index": 1}, "also a class id"),
        ({"classes": ["a"], "mask_values": {"3": 7}}, r"ids \[7\]"),
    ],
)
def test_class_file_errors_name_the_file(tmp_path, spec, match):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=match) as err:
        read_class_file(path)
    assert str(path) in str(err.value)
