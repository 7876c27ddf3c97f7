"""Drawing detections on user images (gald.predict_detection): function and CLI."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from gald.engine.checkpoint import save_checkpoint
from gald.models.detector import build_detector
from gald.predict_detection import draw_detections, expand_inputs, load_detector, main

CONFIG = {"arch": "mask_rcnn_tiny_fpn_gald", "num_classes": 3, "depths": [1, 1, 1, 1], "widths": [4, 8, 8, 16],
          "fpn_channels": 16, "min_size": 64, "max_size": 128, "d": 2}


@pytest.fixture
def checkpoint(tmp_path):
    model = build_detector(CONFIG)
    path = tmp_path / "model.pt"
    save_checkpoint({"model": model.state_dict(), "config": {"model": model.config}, "classes": ["cat", "dog"]}, path)
    return path


def test_draw_detections_boxes_masks_and_threshold():
    image = np.full((41, 57, 3), 128, np.uint8)
    masks = torch.zeros(2, 1, 41, 57)
    masks[0, 0, 10:20, 10:30] = 0.9
    pred = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 20.0], [35.0, 5.0, 50.0, 35.0]]),
            "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.3]), "masks": masks}
    out = draw_detections(image, pred, ["cat", "dog"], score_threshold=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[14, 20] != 128).any()  # inside the mask: tinted
    assert (out[10, 15] != 128).any()  # on the box edge
    assert (out[25, 42] == 128).all() and (out[5, 42] == 128).all()  # the 0.3 detection is not drawn
    everything = draw_detections(image, pred, ["cat", "dog"], score_threshold=0.0)
    assert (everything[5, 42] != 128).any()
    none = draw_detections(image, {k: v[:0] for k, v in pred.items()}, ["cat", "dog"])
    assert np.array_equal(none, image)


def test_cli_writes_pngs_names_unreadable_images_and_fails_at_the_end(tmp_path, checkpoint, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 67, 3), np.uint8)).save(folder / "a.jpg")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (53, 71, 3), np.uint8)).save(folder / "c.png")
    (folder / "b.jpg").write_bytes(b"definitely not a jpeg")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="gald.predict_detection"):
        code = main(["--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(out),
                     "--score-threshold", "0"])
    assert code == 1
    assert "b.jpg" in caplog.text and "cannot read" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]  # the one after the bad image too
    assert Image.open(out / "c.png").size == (71, 53)
    ok = main(["--checkpoint", str(checkpoint), "--input", str(folder / "*.png"), "--output", str(tmp_path / "o2")])
    assert ok == 0 and (tmp_path / "o2" / "c.png").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "nothing*.jpg"), "--output", str(tmp_path / "o3")])
    assert exc.value.code == 2


def test_load_detector_and_bad_checkpoint(tmp_path, checkpoint):
    model, classes = load_detector(checkpoint)
    assert classes == ["cat", "dog"] and not model.training
    bad = tmp_path / "seg.pt"
    save_checkpoint({"model": {}}, bad)
    with pytest.raises(ValueError, match="not a detection model.pt"):
        load_detector(bad)


def test_expand_inputs_deduplicates(tmp_path):
    for name in ("x.jpg", "y.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    paths = expand_inputs([str(tmp_path), str(tmp_path / "x.jpg"), str(tmp_path / "*.png")])
    assert [p.name for p in paths] == ["x.jpg", "y.png"]


def test_inputs_with_one_stem_get_their_own_outputs(tmp_path, checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    for suffix, seed in ((".jpg", 0), (".png", 1)):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (45, 67, 3), np.uint8)).save(folder / f"x{suffix}")
    assert main(["--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "x_1.png"]
