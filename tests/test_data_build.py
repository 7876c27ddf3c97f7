"""The training data stream (deterministic by step, sharded by rank, robust to corrupt files) and the datasets a config names."""

import numpy as np
import pytest
import torch

from gald import evaluate, train
from gald.config import TrainConfig
from gald.data import export_cityscapes_layout
from gald.data.build import ConcatSegmentation, StepBatchSampler, build_segmentation_data
from gald.data.fixtures import make_cityscapes_fixture, make_folder_fixture, make_mapillary_fixture
from gald.errors import InputFileError


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


def test_the_training_stream_is_uint8_and_normalised_on_the_device_bit_identically(tmp_path):
    from gald.data.transforms import train_transforms

    cfg = TrainConfig(num_train=6, num_val=2, crop_size=[32, 48], batch_size=2, output_dir=str(tmp_path),
                      normalization="bgr_mean")
    data = build_segmentation_data(cfg)
    images, targets = next(data.train_batches(start_step=3))
    assert images.dtype == torch.uint8 and targets.dtype == torch.uint8  # 4 bytes a pixel through the workers
    x, y = data.to_device(images, targets, torch.device("cpu"))
    data.train_transform = train_transforms([32, 48], (1.0, 1.0), bgr_mean=True)  # normalised in the workers
    ref_x, ref_y = next(data.train_batches(start_step=3))
    assert x.dtype == torch.float32 and torch.equal(x, ref_x) and torch.equal(y, ref_y) and y.dtype == torch.int64


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
    with pytest.raises(InputFileError, match=rf"1 of 4 files of the validation split 'val' cannot be read: .*{bad.name}"):
        train.main(_disk_cfg(disk_dataset, tmp_path))
    assert not (tmp_path / "runs" / "disk" / "last.pt").exists()  # found before training, not after it


def test_missing_dataset_root_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_synthetic.py"):
        build_segmentation_data(TrainConfig(dataset="synthetic_disk", data_root=str(tmp_path / "nowhere")))


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="synthetic_disk"):
        build_segmentation_data(TrainConfig(dataset="ade20k"))


# --- real-dataset layouts (fixtures in each dataset's exact format) ---------------------------



def _tiny(tmp_path, **kw):
    values = dict(
        output_dir=str(tmp_path / "runs"), name="tiny", crop_size=[33, 65], scale_range=[0.75, 1.25],
        depths=[1, 1, 1, 1], widths=[8, 8, 16, 16], head_channels=16, aux_channels=16, batch_size=2, iterations=2,
        ohem_min_kept=100, stage_iterations=1, eval_batch_size=2, eval_interval=2, checkpoint_interval=2, workers=0,
    )
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    make_cityscapes_fixture(root, per_split=2, size=(40, 72))
    return root


def test_cityscapes_splits_and_annotations(cityscapes_root, tmp_path):
    data = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root)))
    assert len(data.train_set) == 2 and data.num_classes == 19 and data.val_set.split == "val"
    both = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root), train_split="train+val"))
    assert isinstance(both.train_set, ConcatSegmentation) and len(both.train_set) == 4
    np.testing.assert_array_equal(both.train_set.load(3)[1], data.val_set.load(1)[1])
    assert len(both.train_set.files) == 4 and both.train_set.label_map is not None
    coarse = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root),
                                           train_split="train_extra", annotation="coarse", val_split="val"))
    assert coarse.train_set.mode == "coarse" and coarse.train_set.split == "train_extra" and coarse.val_set.mode == "coarse"
    mixed = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root),
                                          train_split="train+train_extra:coarse"))
    assert [p.mode for p in mixed.train_set.parts] == ["fine", "coarse"] and mixed.val_set.mode == "fine"
    test = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root), val_split="test"))
    assert (test.val_set.load(0)[1] == 255).all()
    with pytest.raises(FileNotFoundError, match="train_extra"):
        build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root), train_split="train_extra"))
    with pytest.raises(ValueError, match="annotation"):
        build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root), train_split="train:medium"))
    with pytest.raises(ValueError, match="annotation"):
        TrainConfig(annotation="polygons")


def test_normalization_reaches_train_and_val_transforms(cityscapes_root, tmp_path):
    from gald.data.transforms import BGR_MEAN

    data = build_segmentation_data(_tiny(tmp_path, dataset="cityscapes", data_root=str(cityscapes_root), normalization="bgr_mean"))
    image, _ = data.val_set.load(0)
    x, _ = data.val_set[0]
    np.testing.assert_allclose(x[0].numpy(), image[..., 2] - BGR_MEAN[0], atol=1e-4)  # channel 0 is blue
    assert "ToTensor()" in repr(data.train_transform) and "bgr_mean=True" in repr(data.normalize)
    synthetic = build_segmentation_data(_tiny(tmp_path, num_train=2, num_val=1, normalization="bgr_mean"))
    assert synthetic.val_set.transform.bgr_mean
    with pytest.raises(ValueError, match="normalization"):
        TrainConfig(normalization="zscore")


def test_mapillary_and_folder_build(tmp_path):
    make_mapillary_fixture(tmp_path / "mv", per_split=2, size=(40, 64))
    data = build_segmentation_data(_tiny(tmp_path, dataset="mapillary", data_root=str(tmp_path / "mv"), resize_short=36))
    assert data.num_classes == 19 and len(data.train_set) == 2 and data.val_set.split == "validation"
    assert data.val_loader.batch_size == 1  # Vistas images differ in size
    assert min(data.train_set.load(1)[1].shape) == 36
    make_folder_fixture(tmp_path / "f", per_split=3, size=(40, 64))
    data = build_segmentation_data(_tiny(tmp_path, dataset="folder", data_root=str(tmp_path / "f")))
    assert data.class_names[0] == "road" and data.num_classes == 9 and len(data.train_set) == 3
    with pytest.raises(FileNotFoundError, match="data_root"):
        build_segmentation_data(_tiny(tmp_path, dataset="folder"))


@pytest.mark.parametrize("dataset", ["mapillary", "folder"])
def test_two_training_iterations(dataset, tmp_path):
    root = tmp_path / dataset
    if dataset == "mapillary":
        make_mapillary_fixture(root, per_split=2, size=(40, 64))
    else:
        make_folder_fixture(root, per_split=2, size=(40, 64))
    summary = train.main(_tiny(tmp_path, dataset=dataset, data_root=str(root), name=dataset))
    assert summary["final"]["mIoU"] >= 0.0 and (tmp_path / "runs" / dataset / "model.pt").is_file()
