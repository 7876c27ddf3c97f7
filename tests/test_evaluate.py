"""``gald.evaluate``: the test protocol on a Cityscapes-format fixture, test-server export checked by
cityscapesscripts' own evaluator, the Table 4-style row, and checkpoints without a training config."""

import json
import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gald.config import TrainConfig
from gald.data.cityscapes import TRAIN_TO_LABEL
from gald.data.fixtures import make_cityscapes_fixture
from gald.engine.checkpoint import save_checkpoint
from gald.evaluate import checkpoint_normalization, evaluate_checkpoint, main
from gald.inference import TestProtocol
from gald.metrics import format_class_row
from gald.models import gald_tiny
from gald.submission import submission_path, train_ids_to_label_ids

SIZE = (48, 96)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    """Official layout and ids, including unevaluated labelIds (unlabeled, ego vehicle, static) and a test split."""
    root = tmp_path_factory.mktemp("cityscapes_fixture")
    make_cityscapes_fixture(root, splits=("train", "val", "test"), per_split=3, size=SIZE, coarse=False, seed=3)
    return root


def write_checkpoint(path, num_classes, train: dict | None, seed=0, **extra):
    torch.manual_seed(seed)
    model = gald_tiny(num_classes=num_classes, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8, stage_classifiers=True)
    config = {"model": model.config}
    if train is not None:
        config["train"] = train
    save_checkpoint({"model": model.state_dict(), "config": config, **extra}, path)
    return path


@pytest.fixture(scope="module")
def cityscapes_ckpt(fixture_root, tmp_path_factory):
    """A 19-class model briefly trained by ``gald.train`` on the fixture (≈4 s; mIoU ≈ 20, not chance)."""
    from gald.train import main as train

    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        name="fixture", output_dir=str(out), dataset="cityscapes", data_root=str(fixture_root), crop_size=[48, 96],
        iterations=60, batch_size=2, lr=0.05, ohem=False, widths=[8, 8, 16, 16], head_channels=16, aux_channels=8,
        stage_iterations=5, eval_interval=1000, checkpoint_interval=1000, log_interval=1000,
    )  # fmt: skip
    train(cfg)
    return out / "fixture" / "model.pt"


def test_export_is_accepted_by_cityscapesscripts_and_agrees_with_gald(fixture_root, cityscapes_ckpt, tmp_path, monkeypatch):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    export = tmp_path / "results"
    res = evaluate_checkpoint(str(cityscapes_ckpt), export_dir=str(export), stages=False)
    files = sorted(export.rglob("*.png"))
    assert res["exported"] == len(files) == 3
    for f in files:
        img = Image.open(f)
        assert img.mode == "L" and img.size == (SIZE[1], SIZE[0])
        assert set(np.unique(np.asarray(img))) <= set(TRAIN_TO_LABEL)
    assert len({int(v) for f in files for v in np.unique(np.asarray(Image.open(f)))}) >= 3, "degenerate predictions"

    gt = sorted(str(p) for p in (fixture_root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    monkeypatch.setattr(cs.args, "predictionPath", str(export))
    monkeypatch.setattr(cs.args, "predictionWalk", None)
    monkeypatch.setattr(cs.args, "quiet", True)
    monkeypatch.setattr(cs.args, "JSONOutput", False)
    # the instance-level score (iIoU) calls np.in1d, gone in NumPy 2.4; the class IoU does not need it
    monkeypatch.setattr(cs.args, "evalInstLevelScore", False)
    predictions = [cs.getPrediction(cs.args, g) for g in gt]
    scores = cs.evaluateImgLists(predictions, gt, cs.args)
    assert res["out"]["mIoU"] > 5  # a trained model: a confusion matrix worth comparing
    assert scores["averageScoreClasses"] * 100 == pytest.approx(res["out"]["mIoU"], abs=1e-6)
    for name, iou in res["out"]["per_class_iou"].items():
        theirs = scores["classScores"][name]
        assert (iou is None and math.isnan(theirs)) or iou == pytest.approx(theirs * 100, abs=1e-6), name


def test_slide_multiscale_flip_runs_and_is_recorded(cityscapes_ckpt, tmp_path, caplog):
    out = tmp_path / "res.json"
    with caplog.at_level(logging.INFO, logger="gald.evaluate"):
        res = main(["--checkpoint", str(cityscapes_ckpt), "--mode", "slide", "--crop-size", "33", "45", "--scales", "0.75", "1.25",
                    "--flip", "--tile-batch", "3", "--out", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["protocol"] == {"mode": "slide", "crop_size": [33, 45], "stride": None, "scales": [0.75, 1.25],
                                 "flip": True, "tile_batch": 3, "average": "logits", "blend": "mean"}  # fmt: skip
    assert set(saved) >= {"out", "images", "normalization"} and "logits_fcn" not in saved  # stages: whole image only
    assert 0 <= res["out"]["mIoU"] <= 100
    assert "| Method | road | swalk | build |" in caplog.text  # the Table 4-style row


def test_whole_image_protocol_matches_a_direct_forward(fixture_root, cityscapes_ckpt):
    res = evaluate_checkpoint(str(cityscapes_ckpt), protocol=TestProtocol(), stages=True)
    assert {"out", "logits_fcn", "logits_ga"} <= set(res)
    same = evaluate_checkpoint(str(cityscapes_ckpt), protocol=TestProtocol(mode="slide", crop_size=SIZE), stages=False)
    assert same["out"]["mIoU"] == pytest.approx(res["out"]["mIoU"], abs=1e-9)  # one window = the whole image


def test_table4_row_uses_the_papers_column_names():
    result = {"per_class_iou": {"road": 98.1, "sidewalk": None, "traffic light": 50.0}, "mIoU": 74.04}
    row = format_class_row(result, "GALD")
    assert row.splitlines()[0] == "| Method | road | swalk | tlight | mIoU |"
    assert row.splitlines()[2] == "| GALD | 98.1 | n/a | 50.0 | 74.0 |"


def test_checkpoint_without_training_config_needs_a_dataset(fixture_root, tmp_path):
    path = write_checkpoint(tmp_path / "converted.pt", 19, None, normalization="bgr_mean")
    with pytest.raises(ValueError, match="records no training config.*--dataset"):
        evaluate_checkpoint(str(path))
    res = evaluate_checkpoint(str(path), dataset="cityscapes", data_root=str(fixture_root), stages=False)
    assert res["normalization"] == "bgr_mean" and res["images"] == 3


def test_class_count_mismatch_is_an_error(fixture_root, tmp_path):
    cfg = TrainConfig(dataset="cityscapes", data_root=str(fixture_root))
    path = write_checkpoint(tmp_path / "m.pt", 7, cfg.to_dict())
    with pytest.raises(ValueError, match="predicts 7 classes but dataset 'cityscapes' has 19"):
        evaluate_checkpoint(str(path))


def test_normalization_precedence():
    assert checkpoint_normalization({}) == "imagenet"
    assert checkpoint_normalization({"normalization": "bgr_mean"}) == "bgr_mean"
    assert checkpoint_normalization({"config": {"train": {"normalization": "bgr_mean"}}}) == "bgr_mean"
    assert checkpoint_normalization({"normalization": "bgr_mean"}, "imagenet") == "imagenet"


def test_submission_names_and_label_ids(tmp_path):
    p = submission_path("/data/leftImg8bit/test/berlin/berlin_000123_000019_leftImg8bit.png", tmp_path)
    assert p == tmp_path / "berlin" / "berlin_000123_000019_leftImg8bit.png"
    ids = train_ids_to_label_ids(np.array([[0, 18, 255], [10, 11, 13]]))
    assert ids.tolist() == [[7, 33, 0], [23, 24, 26]] and ids.dtype == np.uint8


def test_test_split_export_has_nothing_to_score(cityscapes_ckpt, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="gald.evaluate"):
        res = main(["--checkpoint", str(cityscapes_ckpt), "--split", "test", "--export-dir", str(tmp_path / "test")])
    assert res["split"] == "test" and res["exported"] == 3 and math.isnan(res["out"]["mIoU"])
    assert "no labelled pixels" in caplog.text
    assert len(list((tmp_path / "test").rglob("*_leftImg8bit.png"))) == 3


def _synthetic_ckpt(tmp_path, block):
    train = TrainConfig(num_val=4, crop_size=[48, 96], d=2, block=block).to_dict()
    torch.manual_seed(0)
    model = gald_tiny(num_classes=9, block=block, d=2, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8)
    for m in model.modules():  # a strongly spatial mask, so the effect is not zero by accident
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            m.weight.data.mul_(30)
    return _save(tmp_path, block, model, train)


def _save(tmp_path, block, model, train):
    path = tmp_path / f"{block}.pt"
    save_checkpoint({"model": model.state_dict(), "config": {"model": model.config, "train": train}}, path)
    return path


def test_ld_effect_is_reported_with_intervals(tmp_path, caplog):
    ckpt = _synthetic_ckpt(tmp_path, "gald")
    with caplog.at_level(logging.INFO, logger="gald.evaluate"):
        results = main(["--checkpoint", str(ckpt), "--ld-effect", "--out", str(tmp_path / "r.json")])
    eff = results["ld_effect"]
    assert eff["images"] == 4 and eff["kind"] == "spatial_mean"
    for name in ("mIoU", "small_mIoU", "large_mIoU", "boundary_mIoU"):
        e = eff["metrics"][name]
        assert e["effect"] == pytest.approx(e["as_trained"] - e["intervened"])
        assert e["as_trained"] == pytest.approx(results["out"][name])  # same model, same images
    assert set(eff["per_class"]) == {"road", "terrain", "building", "vegetation", "sky", "pole", "traffic sign", "person", "car"}
    assert "ci95" in results["mask_contrast"]
    assert "LD effect" in caplog.text and "mask contrast" in caplog.text
    assert json.loads((tmp_path / "r.json").read_text())["ld_effect"]["images"] == 4


def test_ld_effect_on_a_model_without_ld_is_one_clear_line(tmp_path, capsys):
    ckpt = _synthetic_ckpt(tmp_path, "ga")
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(ckpt), "--ld-effect"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a model with LD" in err and "'ga'" in err
