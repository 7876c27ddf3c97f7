"""The training data stream: deterministic by step, sharded by rank, robust to corrupt files."""

import pytest
import torch

from gald import evaluate, train
from gald.config import TrainConfig
from gald.data import export_cityscapes_layout
from gald.data.build import StepBatchSampler, build_segmentation_data


def test_stream_is_a_function_of_the_step():
    a = StepBatchSampler(10, 4, rank=0, world_size=1, seed=3)
    b = StepBatchSampler(10, 4, rank=0, world_size=1, seed=3, start_step=5)
    assert [a.batch_at(s) for s in range(5, 9)] == [next(iter(b)) if i == 0 else b.batch_at(5 + i) for i in range(4)]
    epoch0 = [i for s in range(0, 5) for i, _ in StepBatchSampler(20, 4, rank=0, world_size=1, seed=0).batch_at(s)]
    assert sorted(epoch0) == list(range(20))  # one epoch covers every image once


def test_ranks_split_the_global_batch():
    whole = StepBatchSampler(16, 4, rank=0, world_size=1, seed=1).batch_at(2)
    parts = [StepBatchSampler(16, 4, rank=r, world_size=2, seed=1).batch_at(2) for r in range(2)]
    assert parts[0] + parts[1] == whole


def test_batches_are_reproducible(tmp_path):
    cfg = TrainConfig(num_train=6, num_val=2, crop_size=[32, 48], batch_size=2, output_dir=str(tmp_path))
    data = build_segmentation_data(cfg)
    x1 = [b for _, b in zip(range(3), data.train_batches(start_step=4))]
    x2 = [b for _, b in zip(range(3), data.train_batches(start_step=4))]
    for (i1, t1), (i2, t2) in zip(x1, x2):
        assert torch.equal(i1, i2) and torch.equal(t1, t2)


@pytest.fixture
def disk_dataset(tmp_path):
    root = tmp_path / "synthetic"
    export_cityscapes_layout(root, counts={"train": 4, "val": 2, "test": 0}, size=(48, 64))
    return root


def _disk_cfg(root, tmp_path, **kw):
    return TrainConfig(
        dataset="synthetic_disk", data_root=str(root), output_dir=str(tmp_path / "runs"), name="disk",
        crop_size=[48, 64], depths=[1, 1, 1, 1], widths=[8, 8, 16, 16], head_channels=16, aux_channels=16,
        batch_size=2, iterations=4, ohem_min_kept=200, stage_iterations=1, eval_batch_size=2, **kw,
    )


def test_train_on_the_cityscapes_layout_and_evaluate(disk_dataset, tmp_path):
    summary = train.main(_disk_cfg(disk_dataset, tmp_path))
    res = evaluate.main(["--checkpoint", str(tmp_path / "runs" / "disk" / "model.pt"), "--out", str(tmp_path / "e.json")])
    assert res["dataset"] == "synthetic_disk" and res["images"] == 2
    assert res["out"]["mIoU"] == pytest.approx(summary["final"]["mIoU"])


def test_corrupt_training_image_is_skipped_and_counted(disk_dataset, tmp_path, caplog):
    bad = sorted((disk_dataset / "leftImg8bit" / "train" / "synth").glob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:100])
    summary = train.main(_disk_cfg(disk_dataset, tmp_path))
    assert summary["skipped_images"] >= 1
    log = (tmp_path / "runs" / "disk" / "train.log").read_text()
    assert bad.name in log


def test_corrupt_validation_image_fails_evaluation_naming_it(disk_dataset, tmp_path):
    bad = sorted((disk_dataset / "leftImg8bit" / "val" / "synth").glob("*.png"))[0]
    bad.write_bytes(b"not a png")
    with pytest.raises(OSError, match=bad.name):
        train.main(_disk_cfg(disk_dataset, tmp_path))


def test_missing_dataset_root_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_synthetic.py"):
        build_segmentation_data(TrainConfig(dataset="synthetic_disk", data_root=str(tmp_path / "nowhere")))


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="synthetic_disk"):
        build_segmentation_data(TrainConfig(dataset="ade20k"))
