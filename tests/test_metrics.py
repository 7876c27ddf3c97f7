import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from gald.metrics import SegmentationMetrics, boundary_band, confusion_matrix, format_table


def test_miou_matches_torchmetrics():
    k = 5
    pred = torch.randint(0, k, (3, 17, 23))
    target = torch.randint(0, k, (3, 17, 23))
    target[0, :4] = 255
    m = SegmentationMetrics(k)
    m.update(pred[:2], target[:2])
    m.update(pred[2:], target[2:])
    res = m.compute()
    jac = MulticlassJaccardIndex(num_classes=k, ignore_index=255, average="macro")
    acc = MulticlassAccuracy(num_classes=k, ignore_index=255, average="micro")
    assert res["mIoU"] == pytest.approx(float(jac(pred, target)) * 100, abs=1e-4)
    assert res["pixel_acc"] == pytest.approx(float(acc(pred, target)) * 100, abs=1e-4)


def test_brute_force_per_class_iou_and_absent_classes():
    target = torch.tensor([[[0, 0, 1, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1, 2]]])
    m = SegmentationMetrics(4, class_names=["a", "b", "c", "d"])
    m.update(pred, target)
    res = m.compute()
    assert res["per_class_iou"]["a"] == pytest.approx(50.0)
    assert res["per_class_iou"]["b"] == pytest.approx(100 * 2 / 3)
    assert res["per_class_iou"]["c"] is None and res["per_class_iou"]["d"] is None  # ignored pixel's pred
    assert res["mIoU"] == pytest.approx((50 + 200 / 3) / 2)


def test_size_split():
    target = torch.tensor([[[0, 0, 1, 2]]])
    pred = torch.tensor([[[0, 0, 0, 2]]])
    m = SegmentationMetrics(3, small_classes=[1, 2], large_classes=[0])
    m.update(pred, target)
    res = m.compute()
    assert res["large_mIoU"] == pytest.approx(100 * 2 / 3)
    assert res["small_mIoU"] == pytest.approx(50.0)


def test_boundary_band():
    target = torch.zeros(1, 6, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    band1 = boundary_band(target, 1)
    assert band1.sum() == 12 and band1[0, :, 3:5].all()
    band2 = boundary_band(target, 2)
    assert band2[0, :, 2:6].all() and band2.sum() == 24
    target[0, 0, 0] = 255
    assert not boundary_band(target, 2)[0, 0, 0]


def test_boundary_miou_only_counts_band_pixels():
    target = torch.zeros(1, 6, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    pred = target.clone()
    pred[0, 0, 0] = 1  # an error far from the edge
    m = SegmentationMetrics(2, boundary_width=1)
    m.update(pred, target)
    res = m.compute()
    assert res["boundary_mIoU"] == pytest.approx(100.0)
    assert res["mIoU"] < 100


def test_instance_recall_by_area():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    inst = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, :2] = 1
    inst[0, 0, :2] = 1  # 2 px instance, half found
    target[0, 5:, :] = 1
    inst[0, 5:, :] = 2  # 50 px instance, all found
    pred = target.clone()
    pred[0, 0, 0] = 0
    m = SegmentationMetrics(2, size_bins=(10,))
    m.update(pred, target, inst)
    res = m.compute()["instance_recall_by_area"]
    assert res["<10"] == {"recall": pytest.approx(50.0), "instances": 1}
    assert res[">=10"] == {"recall": pytest.approx(100.0), "instances": 1}


def test_bad_targets_are_named():
    with pytest.raises(ValueError, match=r"\[7\]"):
        confusion_matrix(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 7), 3)
    with pytest.raises(ValueError, match="differ in shape"):
        SegmentationMetrics(3).update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))


def test_format_table_lists_every_class():
    m = SegmentationMetrics(2, class_names=["road", "sky"], small_classes=[1])
    m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    text = format_table(m.compute(), title="t")
    assert "road" in text and "sky" in text and "small_mIoU" in text
    assert not math.isnan(m.compute()["mIoU"])


def test_a_prediction_of_no_class_at_a_labelled_pixel_is_a_false_negative_as_in_cityscapesscripts(tmp_path, monkeypatch):
    """Predictions with a void id (an external result) at labelled pixels: cityscapesscripts counts
    them as false negatives of the true class and false positives of none; so does gald."""
    cs = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    from cityscapesscripts.helpers.labels import labels

    rng = np.random.default_rng(0)
    evaluated = [lb for lb in labels if not lb.ignoreInEval and lb.id >= 0]
    void = [lb.id for lb in labels if lb.ignoreInEval and lb.id >= 0][:5]
    to_train = np.full(256, 255, np.int64)
    for lb in evaluated:
        to_train[lb.id] = lb.trainId
    ids = np.array([lb.id for lb in evaluated] + void)
    gt_paths, metrics = [], SegmentationMetrics(19, class_names=[lb.name for lb in sorted(evaluated, key=lambda x: x.trainId)])
    (tmp_path / "gt" / "city").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    for i in range(2):
        gt = rng.choice(ids, size=(24, 40))
        pred = np.where(rng.random(gt.shape) < 0.3, rng.choice(ids[:19], size=gt.shape), gt)
        pred = np.where(rng.random(gt.shape) < 0.15, rng.choice(void, size=gt.shape), pred)  # no class
        name = f"city_000000_{i:06d}"
        Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "gt" / "city" / f"{name}_gtFine_labelIds.png")
        Image.fromarray(pred.astype(np.uint8)).save(tmp_path / "pred" / f"{name}_pred.png")
        gt_paths.append(str(tmp_path / "gt" / "city" / f"{name}_gtFine_labelIds.png"))
        metrics.update(torch.from_numpy(to_train[pred])[None], torch.from_numpy(to_train[gt])[None])
    assert int(metrics.missed.sum()) > 0
    monkeypatch.setattr(cs.args, "predictionPath", str(tmp_path / "pred"))
    monkeypatch.setattr(cs.args, "predictionWalk", None)
    monkeypatch.setattr(cs.args, "quiet", True)
    monkeypatch.setattr(cs.args, "JSONOutput", False)
    monkeypatch.setattr(cs.args, "evalInstLevelScore", False)
    scores = cs.evaluateImgLists([cs.getPrediction(cs.args, g) for g in gt_paths], gt_paths, cs.args)
    ours = metrics.compute()
    for name, iou in ours["per_class_iou"].items():
        theirs = scores["classScores"][name]
        assert (iou is None and math.isnan(theirs)) or iou == pytest.approx(theirs * 100, abs=1e-9), name
    assert ours["mIoU"] == pytest.approx(scores["averageScoreClasses"] * 100, abs=1e-9)
