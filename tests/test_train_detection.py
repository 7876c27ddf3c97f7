"""Detection training engine (gald.train_detection): loss falls, exact resume, NaN stop, configs, CLI."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from gald import train as seg_train
from gald import train_detection as td
from gald.engine import checkpoint as ckpt
from gald.engine.tracking import read_metrics_csv
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
    for name in ("config.yaml", "train.log", "metrics.json", "metrics.csv", "curves.png", "last.pt", "model.pt"):
        assert (tmp_path / "falls" / name).is_file()
    # a run you can follow: loss terms in the log and the CSV, the final metrics at the last step
    log_text = (tmp_path / "falls" / "train.log").read_text()
    assert re.search(r"step 24/24  loss \d+\.\d+ \(classifier \d+\.\d+, box_reg .*\)  lr \S+  \d+\.\d img/s", log_text)
    rows = read_metrics_csv(tmp_path / "falls" / "metrics.csv")
    assert [r["step"] for r in rows if r["tag"] == "train/loss"] == [h["step"] for h in history]
    assert [(r["step"], r["value"]) for r in rows if r["tag"] == "val/box_AP"] == [(24, summary["final"]["box"]["AP"])]
    assert list((tmp_path / "falls").glob("events.out.tfevents.*"))
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
    assert a.keys() == b.keys()
    for k in a:  # bit for bit: the stream and the RPN / RoI sampling are functions of seed and step
        assert torch.equal(a[k], b[k]), k


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


# ----------------------------------------------------------------------------------------------
# The shared engine: step-indexed stream, seeded sampling, DDP, AMP (issue #16)


def test_the_stream_is_a_function_of_seed_and_step_whatever_the_world_size():
    from gald.data.build import detection_batches
    from gald.data.detection import DetectionTransform, SyntheticDetection

    data = SyntheticDetection(split="train", num_images=5, size=(48, 64), transform=DetectionTransform(flip=0.5))

    def step(s, rank=0, world=1, start=0):
        stream = detection_batches(data, 4, rank=rank, world_size=world, seed=3, start_step=start)
        for _ in range(s - start):
            next(stream)
        return next(stream)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    images, targets = step(2)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    resumed = step(2, start=2)
    halves = [step(2, rank=r, world=2) for r in (0, 1)]
    for other in (resumed, (halves[0][0] + halves[1][0], halves[0][1] + halves[1][1])):
        assert len(other[0]) == 4
        for a, b, ta, tb in zip(images, other[0], targets, other[1]):
            assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
            assert int(ta["sample_seed"]) == int(tb["sample_seed"])
    # over a few steps some images are flipped and some are not: the flip is drawn per sample
    flips = {bool(torch.equal(data[int(t["image_id"])][0].flip(-1), im))
             for s in range(4) for im, t in zip(*step(s))}
    assert flips == {True, False}


def test_seeded_sampling_draws_each_images_sample_from_its_own_seed():
    from gald.models.detector import SeededSampler

    sampler = SeededSampler(16, 0.25, stream=0)
    a = torch.tensor([0] * 40 + [1] * 10 + [-1] * 5)
    b = torch.tensor([1] * 20 + [0] * 30)
    sampler.seeds = [7, 9]
    pos_ab, neg_ab = sampler([a, b])
    sampler.seeds = [9, 7]
    pos_ba, neg_ba = sampler([b, a])  # the other order, another batch: the same per-image samples
    assert torch.equal(pos_ab[0], pos_ba[1]) and torch.equal(neg_ab[1], neg_ba[0])
    assert int(pos_ab[0].sum()) == 4 and int(neg_ab[0].sum()) == 12
    sampler.seeds = [8, 9]
    assert not torch.equal(sampler([a, b])[1][0], neg_ab[0])  # another seed, another sample
    sampler.seeds = [1]
    with pytest.raises(ValueError, match="1 sampling seeds for a batch of 2"):
        sampler([a, b])


DDP_DETECTION_WORKER = r"""
import os, sys, torch
from torch.nn.parallel import DistributedDataParallel
from gald.config import DetectionConfig
from gald.data.build import detection_batches
from gald.data.detection import DetectionTransform, SyntheticDetection
from gald.engine import distributed as dist
from gald.engine.detection import train_step
from gald.models.detector import build_detector
dist.init_distributed(torch.device("cpu"))
rank, world = dist.rank(), dist.world_size()
torch.manual_seed(0)
# every image has >= 4 objects, so each contributes exactly 4 positive RoIs of 16 (mask loss: a mean
# over positives, equal per process only when their counts are), and 256 RPN anchors
model = build_detector({"arch": "mask_rcnn_tiny_fpn_gald", "num_classes": 5, "depths": [1, 1, 1, 1],
                        "widths": [4, 8, 8, 16], "fpn_channels": 16, "box_batch_size_per_image": 16})
model.train()
for m in model.modules():  # batch statistics are per process without SyncBN (CPU): compare without them
    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.eval()
net = model
if world > 1:
    model = DistributedDataParallel(model)
data = SyntheticDetection(split="train", num_images=8, size=(128, 128), transform=DetectionTransform(flip=0.5))
images, targets = next(detection_batches(data, 2, rank=rank, world_size=world, seed=5, start_step=1))
optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
losses = train_step(model, list(images), list(targets), optimizer, DetectionConfig(max_grad_norm=10.0))
if rank == 0:
    torch.save({"grads": {n: p.grad for n, p in net.named_parameters() if p.grad is not None},
                "weights": {n: p.detach() for n, p in net.named_parameters()},
                "images": [int(t["image_id"]) for t in targets]}, sys.argv[1])
del model  # dist.cleanup collects the DDP wrapper before the group goes (an abort at exit was seen)
dist.cleanup()
"""


def _run_workers(script, out, world, port):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(out)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(world)]
    for p in procs:
        assert p.wait(timeout=150) == 0


@pytest.mark.timeout(240)
def test_ddp_detection_step_equals_a_single_process_step_on_the_concatenated_batch(tmp_path):
    from test_train import _free_port

    script = tmp_path / "worker.py"
    script.write_text(DDP_DETECTION_WORKER)
    _run_workers(script, tmp_path / "ddp.pt", 2, _free_port())
    _run_workers(script, tmp_path / "single.pt", 1, _free_port())
    ddp, single = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "single.pt")
    assert len(ddp["images"]) == 1 and len(single["images"]) == 2 and ddp["images"][0] == single["images"][0]
    assert ddp["grads"].keys() == single["grads"].keys() and len(single["grads"]) > 40
    for n in single["grads"]:  # the tolerance of the segmentation DDP test
        torch.testing.assert_close(ddp["grads"][n], single["grads"][n], rtol=1e-4, atol=1e-6, msg=n)
    for n in single["weights"]:
        torch.testing.assert_close(ddp["weights"][n], single["weights"][n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.timeout(240)
def test_torchrun_two_processes_trains_a_detector_end_to_end(tmp_path):
    from test_train import _free_port

    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
            "-m", "gald.train", "--task", "detection", "--output-dir", str(tmp_path), "--name", "ddp",
            "--iterations", "3", "--num-train", "8", "--num-val", "2", "--image-size", "64", "96",
            "--depths", "1", "1", "1", "1", "--widths", "4", "8", "8", "16", "--fpn-channels", "16",
            "--batch-size", "4", "--warmup-iters", "1", "--log-interval", "1", "--eval-batch-size", "2"]
    result = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=220)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["iterations"] == 3
    assert ckpt.load_checkpoint(tmp_path / "ddp" / "last.pt")["step"] == 3
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "global batch 4 = 2 process(es) × 2" in log and log.count("step 3/3  loss") == 1  # rank 0 alone logs


def test_bf16_detection_on_cpu(tmp_path):
    summary = td.main(_cfg(tmp_path, iterations=3, name="bf16", amp="bf16", lr_steps=[2]))
    history = ckpt.load_checkpoint(tmp_path / "bf16" / "last.pt")["history"]["train"]
    assert all(math.isfinite(h["loss"]) for h in history) and summary["amp"] == "bf16"
    weights = ckpt.load_checkpoint(tmp_path / "bf16" / "model.pt")["model"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # parameters stay fp32 under autocast


def test_more_processes_than_images_in_the_global_batch_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(SystemExit) as exc:
        seg_train.cli(["--task", "detection", "--batch-size", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 processes" in err[0] and "batch_size of 2" in err[0]


@pytest.mark.parametrize("task, path, said", [
    ([], "configs/mask_rcnn-gald_r50-fpn_coco-1x.yaml", "is a detection config .*add --task detection"),
    (["--task", "detection"], "configs/gald-cgnl_r50-d8_cityscapes-769x769.yaml",
     "is a segmentation config .*drop --task detection"),
])
def test_a_config_of_the_other_task_is_one_line(task, path, said, capsys):
    with pytest.raises(SystemExit) as exc:
        seg_train.cli([*task, "--config", os.path.join(ROOT, path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(said, err[0]), err
