"""Bad input, one table: every command refuses with exit code 2 and one line naming the file or key,
and nothing on disk changes (hashes before and after). Most cases run in-process through each
command's ``main``; a few run as subprocesses (the data scripts, ``--debug``, a full disk)."""

from __future__ import annotations

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

from gald import convert_official, evaluate, export, predict, predict_detection, train
from gald.config import TrainConfig
from gald.engine.checkpoint import prepare_run_dir, save_checkpoint
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
    # a PNG whose header claims 20000 x 20000 pixels: a decompression bomb without the bomb
    (root / "bomb").mkdir()
    (root / "bomb" / "big.png").write_bytes(_png_header(20000, 20000))
    return root


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)  # a few rows; the rest is never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


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


@pytest.mark.parametrize("case_id, command, argv, message", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_changed(world, capsys, case_id, command, argv, message):
    argv = [a.replace("{world}", str(world)) for a in argv]
    before = _snapshot(world)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        command(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exc.value.code == 2, err
    assert len(err) == 1 and re.search(message, err[0]), err
    assert ": error: " in err[0] and "Traceback" not in err[0]
    assert _snapshot(world) == before  # nothing written, replaced or removed


def test_predict_refuses_outputs_that_exist_or_are_inputs(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(world / "images"), "--checkpoint", str(world / "seg.pt"), "--out", str(out), "--no-progress"]
    assert predict.main(argv) == 0
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    assert exc.value.code == 2 and "a_overlay.png' exists; pass --force" in capsys.readouterr().err
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
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - usage < 500_000  # KiB: 1.2 GB if decoded


def test_a_checkpoint_is_sized_before_its_model_is_allocated(world):
    """Small weights beside a config for a ~30 GB network: refused from the meta-device build."""
    from gald.errors import CheckpointError
    from gald.models import load_model

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_model(world / "huge.pt")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - usage < 200_000  # KiB


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
