"""VOC AP on hand-made cases with known answers, COCO AP through pycocotools end to end, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gald.data.detection import DETECTION_CLASSES, DETECTION_VERSION, scene_targets
from gald.data.synthetic import make_scene
from gald.detection_metrics import (
    coco_evaluate,
    coco_from_targets,
    coco_results,
    format_table3,
    format_table6,
    voc_ap,
    voc_evaluate,
)


def test_voc_ap_known_curves():
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec) == pytest.approx(0.75)  # area under the envelope: .5·1 + .5·.5
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    # a curve that stops at recall 0.4 scores only the thresholds 0, .1, .2, .3, .4 of the 11
    assert voc_ap(np.array([0.4]), np.array([1.0]), use_07_metric=True) == pytest.approx(5 / 11)
    assert voc_ap(np.array([0.4]), np.array([1.0])) == pytest.approx(0.4)


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def test_voc_evaluate_difficult_duplicates_and_misses():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]]),
           "labels": torch.tensor([1, 1, 2]), "difficult": torch.tensor([False, True, False])}]
    det = [_det([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [60, 60, 70, 70], [40, 0, 50, 10]],
                [0.9, 0.8, 0.7, 0.95, 0.5], [1, 1, 1, 2, 2])]
    for use_07 in (True, False):
        res = voc_evaluate(det, gt, 3, use_07_metric=use_07)
        # class 1: TP, (difficult: ignored), duplicate FP -> AP 1; class 2: FP then TP -> AP 0.5; class 3: no gt
        assert res["ap"][0] == pytest.approx(100.0)
        assert res["ap"][1] == pytest.approx(50.0)
        assert math.isnan(res["ap"][2])
        assert res["num_gts"] == [1, 1, 0]
        assert res["mAP"] == pytest.approx(75.0)
    # without the difficult flag the second box is a positive that the 0.8 detection finds: still 1.0,
    # but a model that misses it loses recall
    no_flag = [{"boxes": gt[0]["boxes"], "labels": gt[0]["labels"]}]
    missing = [_det([[0, 0, 10, 10]], [0.9], [1])]
    assert voc_evaluate(missing, no_flag, 2)["ap"][0] == pytest.approx(100 * 6 / 11)  # recall .5, 11-point
    assert voc_evaluate(missing, gt, 2)["ap"][0] == pytest.approx(100.0)  # difficult: not needed


def test_voc_iou_must_exceed_one_half():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    assert voc_evaluate([_det([[0, 0, 10, 5]], [1.0], [1])], gt, 1)["mAP"] == 0.0  # IoU exactly 0.5
    assert voc_evaluate([_det([[0, 0, 10, 5.1]], [1.0], [1])], gt, 1)["mAP"] == pytest.approx(100.0)
    assert voc_evaluate([_det([], [], [])], gt, 1)["mAP"] == 0.0
    with pytest.raises(ValueError, match="detection entries"):
        voc_evaluate([], gt, 1)


def _scenes(n=3, size=(67, 101)):
    targets = []
    for i in range(n):
        t = scene_targets(make_scene(1, i, split="val", size=size, version=DETECTION_VERSION))
        t["image_id"] = torch.tensor(i)
        targets.append(t)
    return targets, [size] * n


def test_coco_perfect_predictions_score_one_and_shifted_ones_less():
    targets, sizes = _scenes()
    coco = coco_from_targets(targets, DETECTION_CLASSES, sizes)
    perfect = [{"boxes": t["boxes"], "scores": torch.linspace(1, 0.5, len(t["boxes"])), "labels": t["labels"],
                "masks": t["masks"][:, None].float()} for t in targets]
    ids = [int(t["image_id"]) for t in targets]
    box = coco_evaluate(coco, coco_results(perfect, ids), iou_type="bbox")
    mask = coco_evaluate(coco, coco_results(perfect, ids, masks=True), iou_type="segm")
    assert box["AP"] == pytest.approx(100.0) and mask["AP"] == pytest.approx(100.0)
    shifted = [{**p, "boxes": p["boxes"] + torch.tensor([2.0, 1.0, 2.0, 1.0]),
                "masks": torch.roll(p["masks"], shifts=2, dims=-1)} for p in perfect]
    box_s = coco_evaluate(coco, coco_results(shifted, ids), iou_type="bbox")
    mask_s = coco_evaluate(coco, coco_results(shifted, ids, masks=True), iou_type="segm")
    assert box_s["AP"] < 90 and mask_s["AP"] < 90
    wrong_class = [{**p, "labels": p["labels"] % 4 + 1} for p in perfect]
    assert coco_evaluate(coco, coco_results(wrong_class, ids), iou_type="bbox")["AP"] < 5
    assert coco_evaluate(coco, [], iou_type="bbox")["AP"] == 0.0
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(coco, [], iou_type="keypoints")


def test_coco_results_map_labels_back_to_category_ids():
    pred = [_det([[1, 2, 5, 8]], [0.5], [2])]
    (r,) = coco_results(pred, [42], label_to_category={1: 3, 2: 18})
    assert r == {"image_id": 42, "category_id": 18, "bbox": [1.0, 2.0, 4.0, 6.0], "score": 0.5}


def test_table_layouts():
    rows = [{"backbone": "ResNet50", "detector": "Faster-RCNN", "mAP": 80.6},
            {"backbone": "ResNet50", "detector": "+ GALD", "mAP": 81.5},
            {"backbone": "ResNet101", "detector": "Faster-RCNN", "mAP": (80.7, 0.2)},
            {"backbone": "ResNet101", "detector": "+ NL", "mAP": (80.1, 0.3)}]
    text = format_table3(rows)
    assert "| ResNet50 | + GALD | 81.5 (0.9 ↑) |" in text
    assert "| ResNet101 | + NL | 80.1 ± 0.3 (0.6 ↓) |" in text
    assert "| ResNet101 | Faster-RCNN | 80.7 ± 0.2 |" in text
    t6 = format_table6([{"method": "Ours", "ap": [86.7, math.nan], "mAP": 86.7}], ["aero", "bike"])
    assert t6.splitlines()[0] == "| Method | aero | bike | mAP(%) |" and "| Ours | 86.7 | – | 86.7 |" in t6
