"""Cityscapes layout: export the synthetic benchmark, read it back, and fail clearly on bad input."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gald.data import DATASETS
from gald.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LABEL_TO_TRAIN,
    TRAIN_TO_LABEL,
    CityscapesSegmentation,
    CorruptImageError,
)
from gald.data.synthetic import CLASSES, LABEL_IDS, PALETTE, export_cityscapes_layout, make_scene, synthetic_label_map

SIZE = (64, 128)
COUNTS = {"train": 3, "val": 2}
STEM = "synth_{:06d}_000019"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    stats = export_cityscapes_layout(root, seed=5, counts=COUNTS, size=SIZE)
    assert stats == {"written": 4 * 5 + 1, "skipped": 0, "removed": 0}
    return root


@pytest.fixture
def root(exported, tmp_path):
    """A private copy to break."""
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    return copy


def read(root, split="train"):
    return CityscapesSegmentation(root, split=split, label_map=synthetic_label_map(), classes=CLASSES, palette=PALETTE)


def image_path(root, index, split="train"):
    return root / "leftImg8bit" / split / "synth" / f"{STEM.format(index)}_leftImg8bit.png"


def label_path(root, index, split="train"):
    return root / "gtFine" / split / "synth" / f"{STEM.format(index)}_gtFine_labelIds.png"


def test_the_19_class_tables():
    assert len(CITYSCAPES_CLASSES) == len(CITYSCAPES_PALETTE) == len(TRAIN_TO_LABEL) == 19
    assert sorted(LABEL_TO_TRAIN) == list(range(34))
    assert sorted(t for t in LABEL_TO_TRAIN.values() if t != 255) == list(range(19))
    for train_id, label_id in enumerate(TRAIN_TO_LABEL):
        assert LABEL_TO_TRAIN[label_id] == train_id


def test_tables_match_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    evaluated = sorted((l for l in labels.labels if 0 <= l.trainId < 255), key=lambda l: l.trainId)
    assert [l.name for l in evaluated] == list(CITYSCAPES_CLASSES)
    assert [l.id for l in evaluated] == list(TRAIN_TO_LABEL)
    assert [tuple(l.color) for l in evaluated] == CITYSCAPES_PALETTE
    for l in labels.labels:
        if l.id >= 0:
            assert LABEL_TO_TRAIN[l.id] == (l.trainId if 0 <= l.trainId < 255 else 255)
    by_name = {l.name: l for l in labels.labels}
    for name, colour, label_id in zip(CLASSES, PALETTE, LABEL_IDS):
        assert by_name[name].id == label_id and tuple(by_name[name].color) == colour


def test_file_names_and_png_modes(exported):
    names = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.png"))
    assert len(names) == 4 * 5
    pattern = re.compile(
        r"^(leftImg8bit/(train|val)/synth/synth_\d{6}_000019_leftImg8bit"
        r"|gtFine/(train|val)/synth/synth_\d{6}_000019_gtFine_(labelIds|instanceIds|color))\.png$"
    )
    assert all(pattern.match(n) for n in names), names
    stem = exported / "gtFine" / "val" / "synth" / STEM.format(1)
    assert Image.open(image_path(exported, 1, "val")).mode == "RGB"
    assert Image.open(f"{stem}_gtFine_labelIds.png").mode == "L"
    assert Image.open(f"{stem}_gtFine_instanceIds.png").mode == "I;16"
    assert Image.open(f"{stem}_gtFine_color.png").mode == "RGBA"
    meta = json.loads((exported / "synthetic.json").read_text())
    assert meta["seed"] == 5 and meta["size"] == list(SIZE) and meta["counts"] == COUNTS
    assert [c["name"] for c in meta["classes"]] == list(CLASSES)
    assert meta["cues"]["val"] == [make_scene(5, i, split="val", size=SIZE).cue for i in range(2)]


def test_instance_ids_follow_the_cityscapes_convention(exported):
    scene = make_scene(5, 0, split="train", size=SIZE)
    ids = np.asarray(Image.open(exported / "gtFine" / "train" / "synth" / f"{STEM.format(0)}_gtFine_instanceIds.png"))
    label_ids = np.array(LABEL_IDS)[scene.label]
    stuff = scene.instances == 0
    np.testing.assert_array_equal(ids[stuff], label_ids[stuff])
    np.testing.assert_array_equal(ids[~stuff] // 1000, label_ids[~stuff])
    assert len(np.unique(ids[~stuff])) == len(scene.instance_classes)


def test_read_back_equals_the_generator(exported):
    for split, n in COUNTS.items():
        ds = read(exported, split)
        assert len(ds) == n and ds.num_classes == 9 and ds.classes == CLASSES
        for i in range(n):
            scene = make_scene(5, i, split=split, size=SIZE)
            image, label = ds.load(i)
            np.testing.assert_array_equal(image, scene.image)
            np.testing.assert_array_equal(label, scene.label)
    x, y = read(exported)[0]
    assert x.shape == (3, *SIZE) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_default_map_reads_cityscapes_train_ids(exported):
    ds = CityscapesSegmentation(exported, split="val")
    assert ds.num_classes == 19 and ds.classes == CITYSCAPES_CLASSES
    assert DATASETS["cityscapes"] is CityscapesSegmentation
    _, label = ds.load(0)
    scene = make_scene(5, 0, split="val", size=SIZE)
    expected = np.array([LABEL_TO_TRAIN[i] for i in LABEL_IDS])[scene.label]
    np.testing.assert_array_equal(label, expected)


def test_environment_variable_root(exported, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(exported))
    assert len(CityscapesSegmentation(split="val")) == 2
    monkeypatch.delenv("CITYSCAPES_DATASET")
    with pytest.raises(FileNotFoundError, match="CITYSCAPES_DATASET"):
        CityscapesSegmentation()


def test_export_is_idempotent_and_guards_other_settings(root):
    stats = export_cityscapes_layout(root, seed=5, counts=COUNTS, size=SIZE)
    assert stats == {"written": 0, "skipped": 21, "removed": 0}
    with pytest.raises(FileExistsError, match="--force"):
        export_cityscapes_layout(root, seed=6, counts=COUNTS, size=SIZE)
    stats = export_cityscapes_layout(root, seed=5, counts={"train": 1, "val": 2}, size=SIZE, force=True)
    assert stats["removed"] == 2 * 4 and len(read(root)) == 1


def test_missing_root_says_where_and_how(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        CityscapesSegmentation(missing)
    assert str(missing) in str(err.value) and "make_synthetic.py --out" in str(err.value) and "prepare_cityscapes.py --archives" in str(err.value)


def test_split_without_images_names_the_path(root):
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "leftImg8bit" / "test"))):
        read(root, "test")
    (root / "leftImg8bit" / "test" / "synth").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images in .*test"):
        read(root, "test")


def test_image_without_label_names_both(root):
    label_path(root, 1).unlink()
    with pytest.raises(FileNotFoundError) as err:
        read(root)
    assert str(image_path(root, 1)) in str(err.value) and str(label_path(root, 1)) in str(err.value)


def test_truncated_image_is_a_corrupt_image_error(root):
    path = image_path(root, 2)
    path.write_bytes(path.read_bytes()[:200])
    ds = read(root)
    ds.load(0)  # other items still load
    with pytest.raises(CorruptImageError) as err:
        ds.load(2)
    assert isinstance(err.value, OSError) and err.value.path == str(path) and str(path) in str(err.value)


def test_garbage_label_is_a_corrupt_image_error(root):
    label_path(root, 0).write_bytes(b"not a png at all")
    with pytest.raises(CorruptImageError, match=re.escape(label_path(root, 0).name)):
        read(root).load(0)


def test_foreign_label_id_names_file_and_values(root):
    path = label_path(root, 0)
    ids = np.asarray(Image.open(path)).copy()
    ids[0, :3] = 99
    ids[1, 0] = 40
    Image.fromarray(ids).save(path)
    with pytest.raises(ValueError, match=r"\[40, 99\]") as err:
        read(root).load(0)
    assert str(path) in str(err.value)
    ids[0, :3] = 255  # the ignore value is always allowed
    ids[1, 0] = 0  # an unevaluated Cityscapes id maps to ignore
    Image.fromarray(ids).save(path)
    _, label = read(root).load(0)
    assert (label[0, :3] == 255).all() and label[1, 0] == 255


def test_size_mismatch_names_both_files_and_sizes(root):
    path = label_path(root, 1)
    Image.open(path).resize((SIZE[1] // 2, SIZE[0] // 2), Image.Resampling.NEAREST).save(path)
    with pytest.raises(ValueError) as err:
        read(root).load(1)
    msg = str(err.value)
    assert str(path) in msg and str(image_path(root, 1)) in msg
    assert f"{SIZE[1]}×{SIZE[0]}" in msg and f"{SIZE[1] // 2}×{SIZE[0] // 2}" in msg


def test_colour_label_is_rejected(root):
    path = label_path(root, 0)
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(ValueError, match="channels"):
        read(root).load(0)


def test_coarse_mode_reads_gtcoarse(root):
    for fine in (root / "gtFine" / "val" / "synth").glob("*_gtFine_labelIds.png"):
        coarse = root / "gtCoarse" / "val" / "synth" / fine.name.replace("gtFine", "gtCoarse")
        coarse.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fine, coarse)
    ds = CityscapesSegmentation(root, split="val", mode="coarse", label_map=synthetic_label_map(), classes=CLASSES)
    assert len(ds) == 2 and ds.files[0][1].name.endswith("_gtCoarse_labelIds.png")
    with pytest.raises(KeyError, match="coarse"):
        CityscapesSegmentation(root, mode="extra")


def test_make_synthetic_script(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "data_scripts" / "make_synthetic.py"
    spec = importlib.util.spec_from_file_location("make_synthetic", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.get_args_parser().parse_args(
        ["--out", str(tmp_path / "d"), "--train", "1", "--val", "1", "--test", "0", "--height", "32", "--width", "64"]
    )
    assert module.main(args) == {"written": 9, "skipped": 0, "removed": 0}
    assert read(tmp_path / "d", "val").load(0)[1].shape == (32, 64)
