"""Bad input, one table: every command refuses with exit code 2 and one line naming the file, flag or
key, and nothing on disk changes (hashes of every file and folder before and after). Most cases run
in-process through each command's ``main``; 17 run in fresh processes (every command and data
script, as a shell user meets them). Then the faults (a full disk, a kill during a write, a learning
rate that blows up), the resource bounds (decompression bombs from a PNG header, a checkpoint whose
config asks for 30 GB) and the results that used to be silently wrong (YAML numbers, ONNX side
files, void predictions, the app's transparency notice) of the reliability issue's table.
The app's upload cache is tested against the launched app in ``test_app.py``."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gald import app, convert_official, evaluate, export, predict, predict_detection, train
from gald.config import TrainConfig
from gald.data.synthetic import export_cityscapes_layout
from gald.engine.checkpoint import load_checkpoint, prepare_run_dir, save_checkpoint
from gald.models import gald_tiny
from gald.models.detector import build_detector

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num-train", "4", "--num-val", "2", "--crop-size", "48", "64", "--depths", "1", "1", "1", "1", "--widths",
        "8", "8", "16", "16", "--head-channels", "16", "--aux-channels", "16", "--batch-size", "2", "--ohem-min-kept",
        "100", "--stage-iterations", "0", "--eval-batch-size", "2", "--ld-effect", "false", "--iterations", "2",
        "--checkpoint-interval", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a segmentation checkpoint, a detection checkpoint, a finished run, images."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    seg = gald_tiny(num_classes=9, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8)
    train_cfg = TrainConfig(crop_size=[33, 65]).to_dict()
    save_checkpoint({"model": seg.state_dict(), "config": {"model": seg.config, "train": train_cfg}}, root / "seg.pt")
    huge = {**seg.config, "widths": (4096, 8192, 16384, 32768), "head_channels": 8192}  # ~30 GB if built
    save_checkpoint({"model": seg.state_dict(), "config": {"model": huge, "train": train_cfg}}, root / "huge.pt")
    det = build_detector({"arch": "mask_rcnn_tiny_fpn_gald", "num_classes": 3, "depths": [1, 1, 1, 1],
                          "widths": [4, 8, 8, 16], "fpn_channels": 16, "min_size": 64, "max_size": 128, "d": 2})
    save_checkpoint({"model": det.state_dict(), "config": {"model": det.config}, "classes": ["a", "b"]}, root / "det.pt")
    train.cli([*TINY, "--output-dir", str(root / "runs"), "--name", "done"])
    (root / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "empty.pt").write_bytes(b"")
    (root / "random.pt").write_bytes(np.random.default_rng(1).bytes(2000))
    whole = (root / "seg.pt").read_bytes()
    (root / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (root / "bad.yaml").write_text("lr: [unclosed\n")
    (root / "unknown.yaml").write_text("lr: 0.01\nlearning_rate: 0.1\n")
    (root / "flip.yaml").write_text('flip: "no"\n')
    (root / "iters.yaml").write_text("iterations: 3.7\n")
    (root / "out.onnx").write_bytes(b"an earlier export")
    for name, text in {"list.yaml": "- lr\n- 0.01\n", "crop.yaml": "crop_size: 5\n", "lr-word.yaml": "lr: abc\n",
                       "lr-inf.yaml": "lr: .inf\n", "name-int.yaml": "name: 5\n", "iters-word.yaml": 'iterations: "abc"\n',
                       "det-bool.yaml": "flip: 1\n"}.items():
        (root / name).write_text(text)
    torch.save({"model": {}, "config": argparse.Namespace(lr=1)}, root / "objects.pt")  # not plain containers
    (root / "folder.pt").mkdir()
    (root / "exports").mkdir()
    (root / "exports" / "kept.png").write_bytes(b"an earlier result")
    (root / "metrics.json").write_text("{}")
    (root / "missing-layout").mkdir()
    # the synthetic benchmark on disk with one validation image cut short
    export_cityscapes_layout(root / "broken-val", counts={"train": 2, "val": 2, "test": 0}, size=(48, 64))
    cut = sorted((root / "broken-val" / "leftImg8bit" / "val").rglob("*.png"))[0]
    cut.write_bytes(cut.read_bytes()[:200])
    # the world seen through a symlinked folder: a path that differs as a string, not as a file
    (root.parent / f"{root.name}-link").symlink_to(root, target_is_directory=True)
    # a PNG whose header claims 20000 x 20000 pixels: a decompression bomb without the bomb
    (root / "bomb").mkdir()
    (root / "bomb" / "big.png").write_bytes(_png_header(20000, 20000))
    (root / "bomb" / "wide.png").write_bytes(_png_header(8000, 8000))  # 7.8 KB once; 64 MP > the 40 MP limit
    return root


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)  # a few rows; the rest is never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file's hash and every folder (an empty folder left behind is a change too)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


def W(name: str) -> str:  # a path in the world folder, filled in per test
    return "{world}/" + name


CASES = [
    # (id, command, argv, message regex)
    ("rerun-existing-name", train.cli, [*TINY, "--output-dir", W("runs"), "--name", "done"],
     r"runs/done already holds a run \(last\.pt and model\.pt at step 2\); continue it with --resume auto, "
     r"replace it with --overwrite true, or choose another --name"),
    ("resume-from-weights-only", train.cli, [*TINY, "--output-dir", W("runs"), "--name", "fresh", "--resume",
                                             W("runs/done/model.pt")], r"not a training state .*--init-from"),
    ("config-file-missing", train.cli, ["--config", W("nope.yaml")], r"cannot read config file .*nope\.yaml"),
    ("config-file-not-yaml", train.cli, ["--config", W("bad.yaml")], r"bad\.yaml' is not valid YAML"),
    ("config-unknown-key", train.cli, ["--config", W("unknown.yaml")], r"unknown TrainConfig key\(s\) \['learning_rate'\]"),
    ("config-bool-string", train.cli, ["--config", W("flip.yaml")], r"flip must be true or false, got 'no'"),
    ("config-fractional-int", train.cli, ["--config", W("iters.yaml")], r"iterations must be an integer, got 3\.7"),
    ("zero-checkpoint-interval", train.cli, ["--checkpoint-interval", "0"], r"checkpoint_interval must be at least 1"),
    ("data-root-without-dataset", train.cli, ["--data-root", W("images")], r"data_root .* dataset is 'synthetic'"),
    ("amp-choice", train.cli, ["--amp", "fp8"], r"amp must be one of \['none', 'bf16', 'fp16'\], got 'fp8'"),
    ("detection-config-to-segmentation", train.cli, ["--config", str(ROOT / "configs/mask_rcnn-gald_r50-fpn_coco-1x.yaml")],
     r"is a detection config .*add --task detection"),
    ("detection-rerun-existing-name", train.cli, ["--task", "detection", "--output-dir", W("runs"), "--name", "done"],
     r"already holds a run"),
    ("evaluate-empty-checkpoint", evaluate.main, ["--checkpoint", W("empty.pt")], r"empty\.pt' is empty \(0 bytes\)"),
    ("evaluate-random-bytes", evaluate.main, ["--checkpoint", W("random.pt")], r"random\.pt' is not a PyTorch weights file"),
    ("evaluate-truncated", evaluate.main, ["--checkpoint", W("truncated.pt")], r"truncated\.pt' is truncated or corrupt"),
    ("evaluate-missing", evaluate.main, ["--checkpoint", W("nope.pt")], r"checkpoint not found: .*nope\.pt"),
    ("evaluate-config-asks-for-a-huge-network", evaluate.main, ["--checkpoint", W("huge.pt")],
     r"huge\.pt checkpoint does not match the model: .*wrong shape"),
    ("evaluate-detection-checkpoint", evaluate.main, ["--checkpoint", W("det.pt")], r"holds a detection model"),
    ("evaluate-out-onto-checkpoint", evaluate.main, ["--checkpoint", W("seg.pt"), "--out", W("seg.pt")],
     r"--out .*seg\.pt' is the input"),
    ("export-out-onto-checkpoint", export.main, ["--checkpoint", W("seg.pt"), "--out", W("seg.pt"), "--force"],
     r"--out .*seg\.pt' is the input .*never overwritten"),
    ("export-out-exists", export.main, ["--checkpoint", W("seg.pt"), "--out", W("out.onnx")],
     r"--out .*out\.onnx' exists; pass --force"),
    ("export-detection-checkpoint", export.main, ["--checkpoint", W("det.pt"), "--out", W("new.onnx")],
     r"holds a detection model"),
    ("convert-onto-input", convert_official.main, [W("seg.pt"), W("seg.pt"), "--force"], r"is the input"),
    ("convert-onto-input-through-a-symlinked-folder", convert_official.main,
     [W("seg.pt"), "{world}-link/seg.pt", "--force"], r"seg\.pt' is the input"),
    ("export-onto-input-through-a-symlinked-folder", export.main,
     ["--checkpoint", W("seg.pt"), "--out", "{world}-link/seg.pt", "--force"], r"seg\.pt' is the input"),
    ("convert-output-exists", convert_official.main, [W("random.pt"), W("seg.pt")], r"seg\.pt' exists; pass --force"),
    ("predict-detection-checkpoint", predict.main, [W("images"), "--checkpoint", W("det.pt"), "--out", W("p")],
     r"holds a detection model"),
    ("predict-no-match", predict.main, [W("nothing*.png"), "--checkpoint", W("seg.pt"), "--out", W("p")],
     r"no image file, folder or glob match for .*nothing\*\.png"),
    ("predict-detection-on-segmentation", predict_detection.main,
     ["--checkpoint", W("seg.pt"), "--input", W("images"), "--output", W("d")], r"holds a segmentation model"),
    ("predict-detection-no-images", predict_detection.main,
     ["--checkpoint", W("det.pt"), "--input", W("nothing*.png"), "--output", W("d")], r"no images found"),
]

SEG_RUN = ["--output-dir", W("runs"), "--name", "new"]  # a run folder that must not appear
CASES += [  # training flags and config values: refused before the run folder exists
    # a --config file alone: flags would override the keys it gets wrong
    (f"train-{flag.strip('-')}-{value}", train.cli,
     ["--output-dir", W("runs"), flag, value] if flag == "--config" else [*TINY, *SEG_RUN, flag, *value.split()], message)
    for flag, value, message in [
        ("--lr", "-1", r"lr must be at least 0, got -1\.0"),
        ("--stage-lr", "-0.5", r"stage_lr must be at least 0, got -0\.5"),
        ("--momentum", "1.5", r"momentum must be in \[0, 1\], got 1\.5"),
        ("--batch-size", "0", r"batch_size must be at least 1, got 0"),
        ("--iterations", "0", r"iterations must be at least 1, got 0"),
        ("--crop-size", "0 64", r"crop_size must be at least 1, got \[0, 64\]"),
        ("--eval-interval", "-1", r"eval_interval must be at least 0, got -1"),
        ("--log-interval", "0", r"log_interval must be at least 1, got 0"),
        ("--ohem-thresh", "2", r"ohem_thresh must be in \[0, 1\], got 2\.0"),
        ("--scale-range", "2 1", r"scale_range needs \[low, high\] with low <= high, got \[2\.0, 1\.0\]"),
        ("--ignore-index", "300", r"ignore_index must be in \[0, 255\], got 300"),
        ("--num-train", "0", r"num_train must be at least 1, got 0"),
        ("--d", "0", r"d must be at least 1, got 0"),
        ("--widths", "8 8 -16 16", r"widths must be at least 1, got \[8, 8, -16, 16\]"),
        ("--weight-decay", "-0.1", r"weight_decay must be at least 0, got -0\.1"),
        ("--stop-at", "0", r"stop_at must be at least 1, got 0"),
        ("--eval-batch-size", "0", r"eval_batch_size must be at least 1, got 0"),
        ("--workers", "-1", r"workers must be at least 0, got -1"),
        ("--dist-timeout", "0", r"dist_timeout must be > 0, got 0\.0"),
        ("--arch", "nope", r"arch must be one of \[.*'gald_tiny'.*\], got 'nope'"),
        ("--ga", "nope", r"ga must be one of \[.*'cgnl'.*\], got 'nope'"),
        ("--block", "nope", r"block must be one of \[.*'gald'.*\], got 'nope'"),
        ("--ld-downsample", "nope", r"ld_downsample must be one of \[.*'dwconv'.*\], got 'nope'"),
        ("--dataset", "nope", r"dataset must be one of \[.*'cityscapes'.*\], got 'nope'"),
        ("--mode", "nope", r"mode must be one of \[.*'paper'.*\], got 'nope'"),
        ("--normalization", "nope", r"normalization must be one of \[.*'imagenet'.*\], got 'nope'"),
        ("--checkpoint-policy", "nope", r"checkpoint_policy must be one of \[.*'full'.*\], got 'nope'"),
        ("--output-stride", "5", r"output_stride must be one of \[8, 16, 32\], got 5"),
        ("--device", "nonsense", r"--device 'nonsense' is not a torch device"),
        ("--device", "cuda:7", r"--device 'cuda:7' is not available on this machine"),
        ("--init-from", W("nope.pt"), r"checkpoint not found: .*nope\.pt"),
        ("--init-from", W("empty.pt"), r"empty\.pt' is empty \(0 bytes\)"),
        ("--init-from", W("det.pt"), r"det\.pt .*does not match the model"),
        ("--resume", W("nope.pt"), r"checkpoint not found: .*nope\.pt"),
        ("--resume", W("truncated.pt"), r"truncated\.pt' is truncated or corrupt"),
        ("--resume", W("det.pt"), r"det\.pt' is not a training state"),
        ("--pretrained-backbone", W("nope.pth"), r"nope\.pth"),
        ("--dataset", "cityscapes --data-root " + W("nope"), r"dataset root .*nope does not exist"),
        ("--dataset", "cityscapes --data-root " + W("missing-layout"), r"no split folder .*missing-layout/leftImg8bit/train"),
        ("--dataset", "folder --data-root " + W("nope"), r"nope"),
        ("--dataset", "synthetic_disk --data-root " + W("broken-val"),
         r"1 of 4 files of the validation split 'val' cannot be read: .*broken-val/leftImg8bit/val/.*_leftImg8bit\.png"),
        ("--config", W("list.yaml"), r"list\.yaml' must hold a flat mapping of config keys"),
        ("--config", W("crop.yaml"), r"crop_size must be a list, got 5"),
        ("--config", W("lr-word.yaml"), r"lr must be a number, got 'abc'"),
        ("--config", W("lr-inf.yaml"), r"lr must be a finite number, got inf"),
        ("--config", W("name-int.yaml"), r"name must be a string, got 5"),
        ("--config", W("iters-word.yaml"), r"iterations must be an integer, got 'abc'"),
    ]
]
DET = ["--task", "detection", "--output-dir", W("runs"), "--name", "new-det", "--iterations", "2"]
CASES += [
    (f"detection-{flag.strip('-')}-{value}", train.cli, [*DET, flag, *value.split()], message)
    for flag, value, message in [
        ("--dataset", "nope", r"dataset must be one of \[.synthetic., .voc., .coco.\], got 'nope'"),
        ("--iterations", "0", r"iterations must be at least 1, got 0"),
        ("--lr-steps", "-1", r"lr_steps must be at least 0, got \[-1\]"),
        ("--mask-threshold", "2", r"mask_threshold must be in \[0, 1\], got 2\.0"),
        ("--data-root", W("images"), r"data_root .* dataset is 'synthetic'"),
        ("--config", W("det-bool.yaml"), r"flip must be true or false, got 1"),
        ("--config", str(ROOT / "configs/gald-cgnl_tiny-d2_synthetic-v2-128x256.yaml"),
         r"is a segmentation config .*drop --task detection"),
        ("--arch", "nope", r"nope"),
        ("--resume", W("seg.pt"), r"seg\.pt' is not a training state"),
        ("--device", "nonsense", r"--device 'nonsense' is not a torch device"),
    ]
]
CASES += [
    ("evaluate-batch-size-0", evaluate.main, ["--checkpoint", W("seg.pt"), "--batch-size", "0"], r"argument --batch-size: must be at least 1, got 0"),
    ("evaluate-dataset", evaluate.main, ["--checkpoint", W("seg.pt"), "--dataset", "nope"], r"dataset must be one of .*got 'nope'"),
    ("evaluate-num-val-0", evaluate.main, ["--checkpoint", W("seg.pt"), "--num-val", "0"], r"argument --num-val: must be at least 1, got 0"),
    ("evaluate-tile-batch-0", evaluate.main, ["--checkpoint", W("seg.pt"), "--tile-batch", "0"], r"argument --tile-batch: must be at least 1, got 0"),
    ("evaluate-scales-0", evaluate.main, ["--checkpoint", W("seg.pt"), "--scales", "0"], r"argument --scales: must be > 0, got (0\.0|-1\.0)"),
    ("evaluate-crop-0", evaluate.main, ["--checkpoint", W("seg.pt"), "--mode", "slide", "--crop-size", "0", "0"],
     r"argument --crop-size: must be at least 1, got 0"),
    ("evaluate-export-dir-not-empty", evaluate.main, ["--checkpoint", W("seg.pt"), "--export-dir", W("exports")],
     r"exports' is not empty; pass --force"),
    ("evaluate-out-exists", evaluate.main, ["--checkpoint", W("seg.pt"), "--out", W("metrics.json")],
     r"metrics\.json' exists; pass --force"),
    ("evaluate-checkpoint-folder", evaluate.main, ["--checkpoint", W("folder.pt")], r"folder\.pt' is not a file"),
    ("evaluate-checkpoint-objects", evaluate.main, ["--checkpoint", W("objects.pt")],
     r"objects\.pt' holds objects other than tensors"),
    ("evaluate-data-root-missing", evaluate.main, ["--checkpoint", W("seg.pt"), "--dataset", "cityscapes", "--data-root",
                                                   W("nope")], r"dataset root .*nope does not exist"),
    ("evaluate-device", evaluate.main, ["--checkpoint", W("seg.pt"), "--device", "nonsense"], r"is not a torch device"),
    ("evaluate-mode-choice", evaluate.main, ["--checkpoint", W("seg.pt"), "--mode", "tiles"], r"invalid choice: 'tiles'"),
    ("export-height-0", export.main, ["--checkpoint", W("seg.pt"), "--out", W("new.onnx"), "--height", "0"],
     r"argument --height: must be at least 1, got 0"),
    ("export-missing", export.main, ["--checkpoint", W("nope.pt"), "--out", W("new.onnx")], r"checkpoint not found"),
    ("export-empty", export.main, ["--checkpoint", W("empty.pt"), "--out", W("new.onnx")], r"is empty \(0 bytes\)"),
    ("convert-missing", convert_official.main, [W("nope.pth"), W("new.pt")], r"nope\.pth"),
    ("convert-not-official", convert_official.main, [W("seg.pt"), W("new.pt")], r"seg\.pt' is not the authors' GALD-Net state dict: \d+ GALD-Net keys have no counterpart"),
    ("convert-empty", convert_official.main, [W("empty.pt"), W("new.pt")], r"is empty \(0 bytes\)"),
    ("convert-arch-choice", convert_official.main, [W("seg.pt"), W("new.pt"), "--arch", "r18"], r"invalid choice: 'r18'"),
    ("predict-alpha", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--alpha", "2"],
     r"argument --alpha: must be in \[0, 1\], got 2\.0"),
    ("predict-max-pixels-0", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--max-pixels",
                                            "0"], r"argument --max-pixels: must be at least 1, got 0"),
    ("predict-alpha-nan", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--alpha", "nan"],
     r"argument --alpha: must be a finite number, got nan"),
    ("predict-stride-over-crop", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--mode",
                                                "slide", "--crop-size", "10", "10", "--stride", "30", "30"],
     r"stride \(30, 30\) is larger than crop_size \(10, 10\)"),
    ("predict-whole-over-its-limit", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"),
                                                    "--max-whole-pixels", "1000"],
     r"a\.png: 40×70 is more than --max-whole-pixels \(1,000\) for a whole-image pass, which would need about "
     r"0\.0 GiB .*use --mode auto"),
    ("predict-tile-batch-0", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--tile-batch",
                                            "0"], r"argument --tile-batch: must be at least 1, got 0"),
    ("predict-scales-negative", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--scales",
                                               "-1"], r"argument --scales: must be > 0, got (0\.0|-1\.0)"),
    ("predict-missing-checkpoint", predict.main, [W("images"), "--checkpoint", W("nope.pt"), "--out", W("p")],
     r"checkpoint not found"),
    ("predict-random-checkpoint", predict.main, [W("images"), "--checkpoint", W("random.pt"), "--out", W("p")],
     r"random\.pt' is not a PyTorch weights file"),
    ("predict-huge-checkpoint", predict.main, [W("images"), "--checkpoint", W("huge.pt"), "--out", W("p")],
     r"does not match the model"),
    ("predict-device", predict.main, [W("images"), "--checkpoint", W("seg.pt"), "--out", W("p"), "--device", "nonsense"],
     r"is not a torch device"),
    ("predict-missing-value", predict.main, [W("images"), "--checkpoint"], r"expected one argument"),
    ("predict-detection-threshold", predict_detection.main,
     ["--checkpoint", W("det.pt"), "--input", W("images"), "--output", W("d"), "--score-threshold", "2"],
     r"argument --score-threshold: must be in \[0, 1\], got 2\.0"),
    ("predict-detection-max-pixels-0", predict_detection.main,
     ["--checkpoint", W("det.pt"), "--input", W("images"), "--output", W("d"), "--max-pixels", "0"],
     r"argument --max-pixels: must be at least 1, got 0"),
    ("predict-detection-empty", predict_detection.main,
     ["--checkpoint", W("empty.pt"), "--input", W("images"), "--output", W("d")], r"is empty \(0 bytes\)"),
    ("predict-detection-device", predict_detection.main,
     ["--checkpoint", W("det.pt"), "--input", W("images"), "--output", W("d"), "--device", "nonsense"],
     r"is not a torch device"),
    ("app-missing", app.main, ["--checkpoint", W("nope.pt")], r"checkpoint not found"),
    ("app-empty", app.main, ["--checkpoint", W("empty.pt")], r"is empty \(0 bytes\)"),
    ("app-random", app.main, ["--checkpoint", W("random.pt")], r"is not a PyTorch weights file"),
    ("app-detection", app.main, ["--checkpoint", W("det.pt")], r"holds a detection model"),
    ("app-cache", app.main, ["--cache-mb", "0"], r"argument --cache-mb: must be at least 1, got 0"),
    ("app-device", app.main, ["--device", "nonsense"], r"is not a torch device"),
]


@pytest.mark.parametrize("case_id, command, argv, message", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_changed(world, capsys, case_id, command, argv, message):
    argv = [a.replace("{world}", str(world)) for a in argv]
    before = _snapshot(world)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        command(argv)
    err = _error_lines(capsys.readouterr().err)
    assert exc.value.code == 2, err
    assert len(err) == 1 and re.search(message, err[0]), err
    assert ": error: " in err[0] and "Traceback" not in err[0]
    assert _snapshot(world) == before  # nothing written, replaced or removed


def _error_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage lines (which may come first) and progress bars."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        lines = lines[1:]
        while lines and lines[0].startswith(" "):
            lines = lines[1:]
    return lines


DATA = str(ROOT / "data_scripts")
#: The same contract from a fresh process: what a user at a shell sees (exit code, stderr), for each command.
SUBPROCESS_CASES = [
    ("train-lr", ["-m", "gald.train", "--lr", "-1", "--output-dir", W("runs")], r"lr must be at least 0, got -1\.0"),
    ("train-flag-arity", ["-m", "gald.train", "--crop-size", "48"], r"crop_size needs \[height, width\], got \[48\]"),
    ("train-data-root", ["-m", "gald.train", "--dataset", "cityscapes", "--data-root", W("nope"), "--output-dir",
                         W("runs"), "--iterations", "1"], r"dataset root .*nope does not exist"),
    ("detection-iterations", ["-m", "gald.train", "--task", "detection", "--iterations", "0", "--output-dir", W("runs")],
     r"iterations must be at least 1, got 0"),
    ("evaluate-empty", ["-m", "gald.evaluate", "--checkpoint", W("empty.pt")], r"empty\.pt' is empty \(0 bytes\)"),
    ("evaluate-detection", ["-m", "gald.evaluate", "--checkpoint", W("det.pt")], r"holds a detection model"),
    ("export-onto-input", ["-m", "gald.export", "--checkpoint", W("seg.pt"), "--out", W("seg.pt"), "--force"],
     r"seg\.pt' is the input"),
    ("convert-not-official", ["-m", "gald.convert_official", W("seg.pt"), W("new.pt")],
     r"is not the authors' GALD-Net state dict"),
    ("predict-random", ["-m", "gald.predict", W("images"), "--checkpoint", W("random.pt"), "--out", W("p")],
     r"random\.pt' is not a PyTorch weights file"),
    ("predict-detection-segmentation", ["-m", "gald.predict_detection", "--checkpoint", W("seg.pt"), "--input",
                                        W("images"), "--output", W("d")], r"holds a segmentation model"),
    ("app-detection", [str(ROOT / "app" / "demo.py"), "--checkpoint", W("det.pt")], r"holds a detection model"),
    ("app-device", ["-m", "gald.app", "--device", "nonsense"], r"--device 'nonsense' is not a torch device"),
    ("prepare-cityscapes-missing", [f"{DATA}/prepare_cityscapes.py", "--archives", W("nope"), "--out", W("cs")],
     r"missing archive\(s\) \['leftImg8bit_trainvaltest\.zip', 'gtFine_trainvaltest\.zip'\]"),
    ("prepare-mapillary-no-out", [f"{DATA}/prepare_mapillary.py", "--archives", W("nope")], r"--archives needs --out ROOT"),
    ("prepare-folder-missing", [f"{DATA}/prepare_folder.py", "--verify-only", W("nope")], r"nope does not exist"),
    ("make-synthetic-count", [f"{DATA}/make_synthetic.py", "--out", W("s"), "--train", "-1"],
     r"argument --train: must be at least 0, got -1"),
    ("make-synthetic-detection-size", [f"{DATA}/make_synthetic_detection.py", "--out", W("s"), "--size", "8", "8"],
     r"argument --size: must be at least 32, got 8"),
    ("reencode-into-source", [f"{DATA}/reencode_png.py", "--src", W("images"), "--out", W("images/up")],
     r"--out .*images/up is inside --src"),
    ("reencode-missing", [f"{DATA}/reencode_png.py", "--src", W("nope"), "--out", W("up")], r"--src .*nope: no such folder"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case_id, argv, message", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_refused_in_a_fresh_process(world, case_id, argv, message):
    argv = [a.replace("{world}", str(world)) for a in argv]
    before = _snapshot(world)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=100, cwd=world, env=env)
    err = _error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(err) == 1 and re.search(message, err[0]) and ": error: " in err[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert _snapshot(world) == before


@pytest.mark.timeout(120)
def test_debug_shows_the_traceback_in_a_fresh_process(world):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "gald.evaluate", "--checkpoint", str(world / "empty.pt"), "--debug"],
                            capture_output=True, text=True, timeout=100, env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_predict_refuses_outputs_that_exist_or_are_inputs(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(world / "images"), "--checkpoint", str(world / "seg.pt"), "--out", str(out), "--no-progress"]
    assert predict.main(argv) == 0
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    assert exc.value.code == 2 and "legend.png' exists; pass --force" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    assert predict.main([*argv, "--force"]) == 0
    # an input named like an output, in the output folder: never overwritten, even with --force
    collide = tmp_path / "c"
    collide.mkdir()
    Image.open(world / "images" / "a.png").save(collide / "b.png")
    Image.open(world / "images" / "a.png").save(collide / "b_overlay.png")
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit):
        predict.main([str(collide / "b.png"), str(collide / "b_overlay.png"), "--checkpoint", str(world / "seg.pt"),
                      "--out", str(collide), "--force", "--no-progress"])
    assert "b_overlay.png' is the input" in capsys.readouterr().err
    assert _snapshot(tmp_path)["c/b_overlay.png"] == before["c/b_overlay.png"]


def test_images_over_the_pixel_limit_are_skipped_from_the_header(world, tmp_path, caplog):
    """A 20000 × 20000 PNG header: skipped and named by predict and predict_detection, never decoded."""
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert predict.main([str(world / "bomb"), "--checkpoint", str(world / "seg.pt"), "--out", str(tmp_path / "p"),
                         "--no-progress"]) == 1
    assert predict_detection.main(["--checkpoint", str(world / "det.pt"), "--input", str(world / "bomb"),
                                   "--output", str(tmp_path / "d")]) == 1
    assert caplog.text.count("big.png") >= 2 and "too many pixels to decode safely" in caplog.text
    assert caplog.text.count("wide.png") >= 2 and "8000×8000 pixels is more than 40,000,000" in caplog.text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - usage < 500_000  # KiB: 1.2 GB if decoded


def test_a_checkpoint_is_sized_before_its_model_is_allocated(world):
    """Small weights beside a config for a ~30 GB network: refused from the meta-device build."""
    from gald.errors import CheckpointError
    from gald.models import load_model

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_model(world / "huge.pt")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - usage < 200_000  # KiB


def test_a_learning_rate_that_blows_up_stops_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    """``--lr 1e6``: the loss stays finite for a step, BatchNorm statistics do not; exit code 1, one
    line naming the tensor, and ``last.pt`` holds the last finite state."""
    with pytest.raises(SystemExit) as exc:
        train.cli([*TINY, "--output-dir", str(tmp_path), "--name", "lr", "--lr", "1e6", "--iterations", "6"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("train:")]
    assert exc.value.code == 1 and len(err) == 1, err
    assert re.search(r"stopped: stopping at step \d: non-finite model state: \S+ holds NaN or inf", err[0])
    assert "last good checkpoint" in err[0] and "untouched" in err[0]
    state = load_checkpoint(tmp_path / "lr" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_overwrite_replaces_a_run(tmp_path):
    train.cli([*TINY, "--output-dir", str(tmp_path), "--name", "r"])
    first = (tmp_path / "r" / "model.pt").read_bytes()
    train.cli([*TINY, "--output-dir", str(tmp_path), "--name", "r", "--overwrite", "true", "--seed", "1"])
    assert (tmp_path / "r" / "model.pt").read_bytes() != first


def test_a_stopped_run_is_one_line_with_exit_code_1(tmp_path, monkeypatch, capsys):
    """A non-finite loss: exit code 1 and one line saying the last good checkpoint was kept."""
    from gald.engine import segmentation

    real = segmentation.train_step
    calls = {"n": 0}

    def nan_at_two(*args, **kwargs):
        calls["n"] += 1
        losses = real(*args, **kwargs)
        if calls["n"] == 2:
            raise FloatingPointError("non-finite loss: loss=nan")
        return losses

    monkeypatch.setattr(segmentation, "train_step", nan_at_two)
    with pytest.raises(SystemExit) as exc:
        train.cli([*TINY, "--output-dir", str(tmp_path), "--name", "nan"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("train:")]  # tqdm
    assert exc.value.code == 1 and len(err) == 1 and err[0].startswith("python -m gald.train: stopped: stopping at step 2")
    assert "last good checkpoint" in err[0] and "untouched" in err[0]


def test_orphan_checkpoint_temps_are_removed_only_when_their_writer_is_gone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphan = run / f".tmp-{host}-{dead.pid}-abc123.pt"
    live = run / f".tmp-{host}-{os.getpid()}-def456.pt"
    other_host = run / f".tmp-elsewhere-{dead.pid}-ghi789.pt"
    for p in (orphan, live, other_host):
        p.write_bytes(b"partial")
    prepare_run_dir(str(run), resume=None, overwrite=False)
    assert not orphan.exists() and live.exists() and other_host.exists()


def test_user_errors_show_a_traceback_only_with_debug_and_bugs_always(world, monkeypatch, capsys):
    argv = ["--checkpoint", str(world / "empty.pt")]
    from gald.errors import CheckpointError

    with pytest.raises(CheckpointError):
        evaluate.main([*argv, "--debug"])

    def bug(*args, **kwargs):
        raise ZeroDivisionError("an injected bug")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", bug)
    with pytest.raises(ZeroDivisionError, match="an injected bug"):  # not turned into a one-line refusal
        evaluate.main(["--checkpoint", str(world / "seg.pt"), "--num-val", "1"])


@pytest.mark.timeout(120)
def test_data_scripts_refuse_in_one_line_in_a_subprocess(tmp_path):
    out = tmp_path / "synth"
    args = [sys.executable, str(ROOT / "data_scripts" / "make_synthetic.py"), "--out", str(out), "--train", "1",
            "--val", "1", "--test", "0", "--height", "32", "--width", "48"]
    assert subprocess.run(args, capture_output=True, text=True, timeout=100).returncode == 0
    label = next(out.rglob("*_labelIds.png"))
    label.write_bytes(b"changed by hand")
    result = subprocess.run(args, capture_output=True, text=True, timeout=100)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--force" in lines[0] and "Traceback" not in result.stderr
    assert label.read_bytes() == b"changed by hand"


@pytest.mark.timeout(120)
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the write fails, the old last.pt stays whole."""
    script = f"""
import resource, signal, torch
from gald.engine.checkpoint import save_checkpoint, load_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = {str(tmp_path / "last.pt")!r}
save_checkpoint({{"step": 1, "w": torch.zeros(10)}}, path)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    save_checkpoint({{"step": 2, "w": torch.zeros(100_000)}}, path)
except OSError as err:
    print("refused:", type(err).__name__, err)
print("step", load_checkpoint(path)["step"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100)
    assert "refused: CheckpointWriteError" in result.stdout and "the previous file is unchanged" in result.stdout
    assert "step 1" in result.stdout, result.stdout + result.stderr
    assert not list(tmp_path.glob(".tmp-*"))


# The rest of the reliability issue's table: not refusals, but results that used to be silently wrong


def test_yaml_numbers_that_yaml_leaves_as_strings_are_read_as_numbers(tmp_path):
    from gald.config import load_config

    (tmp_path / "c.yaml").write_text("lr: 1e-3\nweight_decay: 5e-4\n")  # YAML 1.1: strings, no dot
    cfg = load_config(tmp_path / "c.yaml", cls=TrainConfig)
    assert cfg.lr == 0.001 and cfg.weight_decay == 0.0005 and isinstance(cfg.lr, float)


def test_eval_interval_zero_means_no_evaluation_during_training(tmp_path):
    train.cli([*TINY, "--output-dir", str(tmp_path), "--name", "e0", "--eval-interval", "0"])
    assert (tmp_path / "e0" / "model.pt").is_file()


def test_onnx_export_is_one_self_contained_file(world, tmp_path):
    onnx = pytest.importorskip("onnx")
    assert export.main(["--checkpoint", str(world / "seg.pt"), "--out", str(tmp_path / "m.onnx"), "--height", "33",
                        "--width", "65"]) in (0, None)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))  # loads without any file beside it


def test_a_prediction_of_no_class_at_a_labelled_pixel_is_a_false_negative():
    """Scoring external PNGs with a void id: as cityscapesscripts, a miss of the true class."""
    from gald.metrics.segmentation import SegmentationMetrics

    target = torch.tensor([[[0, 0, 1, 1]]])
    metrics = SegmentationMetrics(num_classes=2)
    metrics.update(torch.tensor([[[0, 7, 1, 1]]]), target)  # 7: no class of the model
    iou = metrics.compute()["per_class_iou"]
    assert iou["class_0"] == pytest.approx(50.0) and iou["class_1"] == pytest.approx(100.0)


def test_the_app_says_transparency_only_for_images_that_have_some():
    from gald.viz.views import prepare_image

    opaque = np.dstack([np.full((80, 90, 3), 30, np.uint8), np.full((80, 90), 255, np.uint8)])
    _, notices = prepare_image(opaque)
    assert not any("transparen" in n for n in notices), notices
    see_through = opaque.copy()
    see_through[0, 0, 3] = 0
    assert any("transparen" in n for n in prepare_image(see_through)[1])


def test_the_dataset_loaders_check_pixels_from_the_header(world, tmp_path):
    """Training data too: a header claiming 8000 × 8000 (64 MP, under Pillow's own bomb limit) is named,
    never decoded."""
    from gald.data.cityscapes import CorruptImageError, _open_image
    from gald.data.detection import DETECTION_CLASSES, export_voc_layout
    from gald.data.voc import VOCDetection

    with pytest.raises(CorruptImageError, match=r"wide\.png: 8000×8000 pixels is more than 40,000,000"):
        _open_image(world / "bomb" / "wide.png", "RGB")  # Cityscapes, Mapillary and folder datasets
    devkit = export_voc_layout(tmp_path, num_trainval=1, num_test=1, size=(64, 64))
    next((devkit / "VOC2007" / "JPEGImages").glob("synth_train_*.jpg")).write_bytes(_png_header(8000, 8000))
    voc = VOCDetection(devkit, image_sets=[("2007", "trainval")], classes=DETECTION_CLASSES)
    with pytest.raises(OSError, match=r"synth_train_000000\.jpg: 8000×8000 pixels is more than 40,000,000"):
        voc[0]
