"""Detection training engine (gald.train_detection): loss falls, exact resume, NaN stop, configs, CLI."""

from __future__ import annotations

import glob
import logging
import os

import pytest
import torch

from gald import train as seg_train
from gald import train_detection as td
from gald.engine import checkpoint as ckpt
from gald.engine import detection
from gald.models.detector import build_detector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train=8, num_val=3, image_size=[65, 97], depths=[1, 1, 1, 1], widths=[4, 8, 8, 16],
            fpn_channels=16, batch_size=2, warmup_iters=2, lr=0.02, device="cpu", log_interval=2,
            eval_batch_size=3)


def _cfg(tmp_path, **kw):
    return td.load_detection_config(None, output_dir=str(tmp_path), **{**TINY, **kw})


def test_short_training_run_loss_falls_and_writes_the_run_folder(tmp_path):
    cfg = _cfg(tmp_path, iterations=24, lr_steps=[20], name="falls")
    summary = td.main(cfg)
    history = ckpt.load_checkpoint(tmp_path / "falls" / "last.pt")["history"]["train"]
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.8 * losses[0], losses
    for name in ("config.yaml", "train.log", "metrics.json", "last.pt", "model.pt"):
        assert (tmp_path / "falls" / name).is_file()
    final = summary["final"]
    assert set(final) >= {"voc07_mAP", "voc_area_mAP", "box", "mask", "voc07_ap"}
    assert 0.0 <= final["box"]["AP"] <= 100.0 and list(final["voc07_ap"]) == summary["classes"]
    # model.pt rebuilds the same detector
    state = ckpt.load_checkpoint(tmp_path / "falls" / "model.pt")
    assert state["classes"] == ["pole", "traffic sign", "person", "car"]
    model = build_detector(state["config"]["model"])
    model.load_state_dict(state["model"])


def test_resume_continues_exactly(tmp_path):
    full = _cfg(tmp_path, iterations=6, lr_steps=[4], name="full", checkpoint_interval=100)
    td.main(full)
    first = _cfg(tmp_path, iterations=6, lr_steps=[4], name="split", checkpoint_interval=100, stop_at=3)
    assert td.main(first)["stopped_at"] == 3
    assert ckpt.load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 3
    td.main(_cfg(tmp_path, iterations=6, lr_steps=[4], name="split", checkpoint_interval=100, resume="auto"))
    a = ckpt.load_checkpoint(tmp_path / "full" / "model.pt")["model"]
    b = ckpt.load_checkpoint(tmp_path / "split" / "model.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_non_finite_loss_stops_without_touching_the_last_checkpoint(tmp_path, monkeypatch):
    real = td.train_step
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FloatingPointError("non-finite loss: loss=nan")
        return real(*args, **kwargs)

    monkeypatch.setattr(detection, "train_step", flaky)
    cfg = _cfg(tmp_path, iterations=6, lr_steps=[], name="nan", checkpoint_interval=2)
    with pytest.raises(FloatingPointError, match="stopping at step 3.*left untouched"):
        td.main(cfg)
    assert ckpt.load_checkpoint(tmp_path / "nan" / "last.pt")["step"] == 2
    assert not (tmp_path / "nan" / "model.pt").exists()
    gald_log = logging.getLogger("gald")
    assert not [h for h in gald_log.handlers if isinstance(h, logging.FileHandler)]  # the run's log is closed


def test_gald_train_delegates_the_detection_task(tmp_path):
    summary = seg_train.cli(["--task", "detection", "--output-dir", str(tmp_path), "--name", "cli",
                             "--iterations", "2", "--num-train", "4", "--num-val", "2", "--image-size", "65", "97",
                             "--depths", "1", "1", "1", "1", "--widths", "4", "8", "8", "16", "--fpn-channels", "16",
                             "--batch-size", "2", "--lr-steps", "--warmup-iters", "1", "--device", "cpu",
                             "--arch", "faster_rcnn_tiny_fpn_gald", "--context", "nl"])
    assert summary["iterations"] == 2 and "mask" not in summary["final"]
    assert (tmp_path / "cli" / "model.pt").is_file()
    with pytest.raises(SystemExit):
        seg_train.cli(["--task", "pose"])


def test_epochs_schedule_and_config_errors(tmp_path):
    cfg = _cfg(tmp_path, epochs=14, lr_steps=[10, 13], warmup_iters=0)
    total, factor = td._schedule(cfg, per_epoch=100)
    assert total == 1400 and factor(999) == 1.0 and factor(1000) == pytest.approx(0.1)
    assert factor(1300) == pytest.approx(0.01)
    with pytest.raises(KeyError, match="valid keys"):
        td.load_detection_config(None, crop_size=[1, 2])
    with pytest.raises(ValueError, match="dataset"):
        td.load_detection_config(None, dataset="kitti")
    with pytest.raises(ValueError, match="--data-root"):
        td.build_detection_data(td.load_detection_config(None, dataset="voc"))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*_rcnn-*.yaml"))))
def test_shipped_detection_configs_load_and_build(path):
    cfg = td.load_detection_config(path)
    assert os.path.basename(path) == cfg.name + ".yaml"
    model_cfg = td.detector_config(cfg, 5)
    assert model_cfg["arch"] in __import__("gald.models.detector", fromlist=["DETECTORS"]).DETECTORS


def test_voc_training_through_the_exported_layout(tmp_path):
    from gald.data.detection import DETECTION_CLASSES, export_voc_layout

    devkit = export_voc_layout(tmp_path / "data", seed=0, num_trainval=4, num_test=2, size=(65, 97))
    summary = td.main(_cfg(tmp_path, dataset="voc", data_root=str(devkit), train_sets=["2007/trainval"],
                           test_sets=["2007/test"], classes=list(DETECTION_CLASSES), arch="faster_rcnn_tiny_fpn_gald",
                           iterations=2, lr_steps=[], name="voc"))
    assert summary["final"]["images"] == 2 and summary["classes"] == list(DETECTION_CLASSES)
    with pytest.raises(ValueError, match="'pole' is not in the dataset's class list"):
        td.main(_cfg(tmp_path, dataset="voc", data_root=str(devkit), train_sets=["2007/trainval"], name="voc2"))
