"""data_scripts/prepare_*.py on fixture archives: extract, verify, re-run, and fail naming the path."""

import importlib.util
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gald.data.fixtures import make_cityscapes_archives, make_folder_fixture, make_mapillary_archive
from gald.data.prepare import extract_archives, verify_cityscapes, verify_folder, verify_mapillary
from gald.errors import InputFileError, MissingFileError

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, *argv):
    module = script(name)
    return module.main(module.get_args_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def cs_archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cs_zips")
    make_cityscapes_archives(folder, per_split=2, size=(32, 48))
    return folder


@pytest.fixture(scope="module")
def mv_archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mv_zips")
    make_mapillary_archive(folder, per_split=2, size=(32, 40))
    return folder


def test_cityscapes_extract_verify_and_rerun(cs_archives, tmp_path, caplog):
    out = tmp_path / "cityscapes"
    with caplog.at_level(logging.INFO):
        assert run("prepare_cityscapes", "--archives", cs_archives, "--out", out) == 0
    assert "train: 2 images, fewer than the official 2975" in caplog.text
    assert "train_extra: 2 images, fewer than the official 19998" in caplog.text and "OK" in caplog.text
    report = verify_cityscapes(out)
    assert report.ok and report.counts == {"train": 2, "val": 2, "test": 2, "train_extra": 2}
    assert (out / "README").is_file() and (out / "gtCoarse" / "train_extra").is_dir()
    # idempotent: nothing rewritten on a second run
    stats = extract_archives(cs_archives, out, required=["leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"],
                             optional=["gtCoarse.zip", "leftImg8bit_trainextra.zip"])
    assert stats["written"] == 0 and stats["skipped"] > 0
    assert run("prepare_cityscapes", "--verify-only", out) == 0
    assert run("prepare_cityscapes", "--verify-only", out, "--strict") == 1


def test_cityscapes_damaged_files_are_named(cs_archives, tmp_path, caplog):
    out = tmp_path / "cs"
    assert run("prepare_cityscapes", "--archives", cs_archives, "--out", out) == 0
    image = next((out / "leftImg8bit" / "val").rglob("*.png"))
    image.write_bytes(image.read_bytes()[:120])
    label = next((out / "gtFine" / "train").rglob("*_labelIds.png"))
    label.unlink()
    ids = next((out / "gtFine" / "test").rglob("*_labelIds.png"))
    Image.fromarray(np.full((32, 48), 40, np.uint8)).save(ids)
    caplog.clear()
    assert run("prepare_cityscapes", "--verify-only", out) == 1
    for path in (image, label, ids):
        assert str(path) in caplog.text
    assert "unreadable image" in caplog.text and "without gtFine labelIds" in caplog.text and "outside 0..33" in caplog.text
    # re-extracting repairs all three (their sizes differ from the archive's), then verification passes
    assert run("prepare_cityscapes", "--archives", cs_archives, "--out", out) == 0
    assert image.stat().st_size > 120 and label.is_file() and np.asarray(Image.open(ids)).max() == 0


def test_missing_and_corrupt_archives(cs_archives, tmp_path, caplog):
    folder = tmp_path / "zips"
    folder.mkdir()
    (folder / "leftImg8bit_trainvaltest.zip").write_bytes((cs_archives / "leftImg8bit_trainvaltest.zip").read_bytes())
    with pytest.raises(MissingFileError, match="gtFine_trainvaltest.zip"):
        run("prepare_cityscapes", "--archives", folder, "--out", tmp_path / "o")
    broken = folder / "gtFine_trainvaltest.zip"
    broken.write_bytes((cs_archives / "gtFine_trainvaltest.zip").read_bytes()[:-400])
    with pytest.raises(InputFileError, match=re.escape(str(broken))):
        run("prepare_cityscapes", "--archives", folder, "--out", tmp_path / "o")
    with pytest.raises(MissingFileError, match="absent does not exist"):
        run("prepare_cityscapes", "--verify-only", tmp_path / "absent")


def test_unsafe_member_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="escape"):
        extract_archives(tmp_path, tmp_path / "out", required=["a.zip"])


def test_mapillary_extract_verify_and_errors(mv_archives, tmp_path, caplog):
    out = tmp_path / "vistas"
    with caplog.at_level(logging.INFO):
        assert run("prepare_mapillary", "--archives", mv_archives, "--out", out) == 0
    assert "training: 2 images, fewer than the official 18000" in caplog.text
    assert verify_mapillary(out).counts == {"training": 2, "validation": 2, "testing": 2}
    assert extract_archives(mv_archives, out, required=["mapillary-vistas-dataset_public_v1.2.zip"])["written"] == 0
    label = next((out / "validation" / "labels").glob("*.png"))
    Image.fromarray(np.full((32, 40), 99, np.uint8)).save(label)
    missing = next((out / "training" / "labels").glob("*.png"))
    missing.unlink()
    caplog.clear()
    assert run("prepare_mapillary", "--verify-only", out) == 1
    assert str(label) in caplog.text and str(missing) in caplog.text
    report = verify_mapillary(out)
    assert set(report.errors) == {"label indices outside 0..65", "image without label"}


def test_mapillary_archive_wrapped_in_a_folder(mv_archives, tmp_path):
    wrapped = tmp_path / "zips"
    wrapped.mkdir()
    src = zipfile.ZipFile(mv_archives / "mapillary-vistas-dataset_public_v1.2.zip")
    with zipfile.ZipFile(wrapped / "mapillary-vistas-dataset_public_v1.2.zip", "w") as zf:
        for name in src.namelist():
            zf.writestr(f"mapillary-vistas-dataset_public_v1.2/{name}", src.read(name))
    assert run("prepare_mapillary", "--archives", wrapped, "--out", tmp_path / "v") == 0
    assert (tmp_path / "v" / "config.json").is_file()


def test_verify_folder(tmp_path, caplog):
    make_folder_fixture(tmp_path / "f", per_split=2, size=(33, 35))
    assert run("prepare_folder", "--verify-only", tmp_path / "f") == 0
    report = verify_folder(tmp_path / "f")
    assert report.counts == {"all": 4, "train": 2, "val": 2}
    mask = tmp_path / "f" / "masks" / "val" / "scene_001.png"
    m = np.asarray(Image.open(mask)).copy()
    m[4, 4] = 77
    Image.fromarray(m).save(mask)
    caplog.clear()
    assert run("prepare_folder", "--verify-only", tmp_path / "f") == 1
    assert str(mask) in caplog.text and "[77]" in caplog.text
