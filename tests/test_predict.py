"""``gald.predict``: files, folders and globs in; overlays, label PNGs and LD masks out; bad images named."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from gald.config import TrainConfig
from gald.data.synthetic import LABEL_IDS, PALETTE, CLASSES, make_scene
from gald.engine.checkpoint import save_checkpoint
from gald.models import gald_tiny
from gald.images import to_rgb_uint8
from gald.predict import Predictor, find_images, main, read_rgb


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = gald_tiny(num_classes=9, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8)
    train = TrainConfig(crop_size=[33, 65]).to_dict()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint({"model": model.state_dict(), "config": {"model": model.config, "train": train},
                     "classes": list(CLASSES), "palette": [list(c) for c in PALETTE]}, path)  # fmt: skip
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    scene = make_scene(seed=0, index=0, split="val", size=(40, 70)).image
    Image.fromarray(scene).save(folder / "scene.png")
    Image.fromarray(np.dstack([scene, np.full(scene.shape[:2], 128, np.uint8)])).save(folder / "sub" / "rgba.png")
    Image.fromarray((scene[..., 0].astype(np.uint16) * 257)).save(folder / "sub" / "gray16.png")
    Image.fromarray(make_scene(seed=0, index=1, split="val", size=(101, 150)).image).save(folder / "large.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_folder_in_outputs_out_and_a_broken_image_is_named(ckpt, images, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="gald.predict"):
        code = main([str(images), "--checkpoint", str(ckpt), "--out", str(out), "--ld-masks", "--label-ids", "--no-progress"])
    assert code == 1 and "broken.png" in caplog.text
    for name in ("scene", "sub/rgba", "sub/gray16", "large"):
        for suffix in ("_overlay.png", "_label.png", "_labelIds.png", "_ld_mean.png", "_ld_max.png"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix}"
    large = Image.open(out / "large_label.png")
    assert large.mode == "P" and large.size == (150, 101)  # full resolution
    assert np.asarray(large).max() < 9
    assert set(np.unique(np.asarray(Image.open(out / "large_labelIds.png")))) <= set(LABEL_IDS)
    assert Image.open(out / "sub/rgba_overlay.png").mode == "RGB"
    assert not list(out.rglob("broken*"))
    # what the outputs mean, once: classes and colours, the LD masks' scale
    record = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in record["classes"]] == list(CLASSES) and record["classes"][2]["color"] == list(PALETTE[2])
    assert record["protocol"]["mode"] == "whole" and Image.open(out / "legend.png").size[1] > 100
    assert (out / "ld_scale.png").is_file()


def test_all_good_images_exit_zero_and_glob_inputs_work(ckpt, images, tmp_path):
    out = tmp_path / "out"
    assert main([str(images / "*.jpg"), str(images / "scene.png"), "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "large_label.png", "large_overlay.png", "legend.png",
                                                     "scene_label.png", "scene_overlay.png"]


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/\\*.png"):
        find_images([str(tmp_path / "nowhere" / "*.png")])


def test_same_stems_do_not_overwrite_each_other(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / d / "x.png")
    names = [str(n) for _, n in find_images([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")])]
    assert names == ["x", "x_1"]


def test_sliding_prediction_equals_whole_when_the_window_covers_the_image(ckpt):
    from gald.inference import TestProtocol

    image = make_scene(seed=1, index=0, split="val", size=(33, 65)).image
    whole = Predictor.from_checkpoint(str(ckpt)).predict(image)
    slide = Predictor.from_checkpoint(str(ckpt), protocol=TestProtocol(mode="auto", crop_size=(33, 65))).predict(image)
    np.testing.assert_array_equal(whole, slide)


def test_bgr_mean_normalisation_changes_the_input(ckpt):
    image = make_scene(seed=1, index=0, split="val", size=(33, 35)).image
    imagenet = Predictor.from_checkpoint(str(ckpt)).tensor(image)
    bgr = Predictor.from_checkpoint(str(ckpt), normalization="bgr_mean").tensor(image)
    torch.testing.assert_close(bgr[0, 0], torch.from_numpy(image[..., 2].astype(np.float32)) - 104.00698793)
    assert not torch.allclose(imagenet, bgr)


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 6), np.uint8), np.zeros((4, 6, 1), np.uint8), np.zeros((4, 6, 4), np.uint8),
     np.full((4, 6), 65535, np.uint16), np.full((4, 6, 3), 0.5, np.float32)],
)  # fmt: skip
def test_any_image_becomes_rgb_uint8(array):
    rgb, _ = to_rgb_uint8(array)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8


def test_read_rgb_scales_16_bit(tmp_path):
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").min() == 255


def test_without_a_checkpoint_the_shipped_model_segments_a_benchmark_scene(tmp_path):
    scene = make_scene(seed=0, index=3, split="val", size=(128, 256))
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    assert main([str(tmp_path / "scene.png"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    pred = np.asarray(Image.open(tmp_path / "out" / "scene_label.png"))
    valid = scene.label != 255
    assert (pred[valid] == scene.label[valid]).mean() > 0.85  # the shipped model: 95.7 % pixel accuracy on val


def test_label_ids_need_a_dataset_with_label_ids(tmp_path, capsys):
    torch.manual_seed(0)
    model = gald_tiny(num_classes=3, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8)
    train = TrainConfig(dataset="folder", data_root=str(tmp_path)).to_dict()
    save_checkpoint({"model": model.state_dict(), "config": {"model": model.config, "train": train}}, tmp_path / "m.pt")
    Image.fromarray(make_scene(seed=0, index=0, split="val", size=(40, 70)).image).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o"), "--label-ids"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--label-ids needs" in err[0]
    assert not (tmp_path / "o").exists()  # checked before any file is written


@pytest.fixture(scope="module")
def city_ckpt(tmp_path_factory):
    """A model trained (here: saved) on a real dataset: its test protocol slides windows of its crop."""
    torch.manual_seed(0)
    model = gald_tiny(num_classes=9, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8)
    train = TrainConfig(dataset="cityscapes", data_root="unused", crop_size=[33, 49]).to_dict()
    path = tmp_path_factory.mktemp("city") / "model.pt"
    save_checkpoint({"model": model.state_dict(), "config": {"model": model.config, "train": train},
                     "classes": list(CLASSES), "palette": [list(c) for c in PALETTE]}, path)  # fmt: skip
    return path


def test_predict_and_the_app_use_the_checkpoints_test_protocol(city_ckpt, tmp_path):
    from gald.viz.views import analyze

    image = make_scene(seed=0, index=2, split="val", size=(70, 101)).image
    Image.fromarray(image).save(tmp_path / "photo.png")
    predictor = Predictor.from_checkpoint(city_ckpt)
    assert (predictor.protocol.mode, predictor.protocol.crop_size, predictor.protocol.blend) == ("slide", (33, 49),
                                                                                                "gaussian")
    expected = predictor.predict(image)
    assert main([str(tmp_path / "photo.png"), "--checkpoint", str(city_ckpt), "--out", str(tmp_path / "cli"),
                 "--no-progress"]) == 0
    assert (np.asarray(Image.open(tmp_path / "cli" / "photo_label.png")) == expected).all()
    assert (analyze(predictor, image)["pred"] == expected).all()  # the app's prediction is predict's
    assert main([str(tmp_path / "photo.png"), "--checkpoint", str(city_ckpt), "--out", str(tmp_path / "whole"),
                 "--no-progress", "--mode", "whole"]) == 0
    whole = np.asarray(Image.open(tmp_path / "whole" / "photo_label.png"))
    assert not (whole == expected).all()  # the flag overrides the checkpoint's protocol


def test_a_synthetic_model_warns_once_and_the_ld_effect_is_reported_on_request(tmp_path, caplog):
    scene = make_scene(seed=0, index=3, split="val").image
    for i in range(2):
        Image.fromarray(scene).save(tmp_path / f"s{i}.png")
    with caplog.at_level(logging.INFO, logger="gald.predict"):
        assert main([str(tmp_path / "s0.png"), str(tmp_path / "s1.png"), "--out", str(tmp_path / "o"), "--no-progress",
                     "--ld-effect"]) == 0
    assert caplog.text.count("trained on the generated street scenes of the embedded benchmark only") == 1
    assert "LD effect" in caplog.text
