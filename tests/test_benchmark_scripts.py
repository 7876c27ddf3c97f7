"""The benchmark scripts' CI modes: each runs end to end on tiny inputs and writes nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_input_pipeline_smoke(tmp_path, capsys):
    out = tmp_path / "never-written.json"
    assert _load("input_pipeline").main(["--smoke", "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert not out.exists()
    rows = record["ms_per_sample"]
    assert {"gald 0.2.2", "gald", "gald, re-encoded PNGs", "gald, re-encoded PNGs, stored", "torchvision v2"} <= set(rows)
    for row in rows.values():
        assert row["total"] > 0 and abs(row["total"] - sum(row[s] for s in ("decode", "labels", "augment", "normalise"))) < 0.05
    assert set(record["targets"]) >= {"non_decode_speedup_vs_torchvision_v2 (>= 1.3)"}


def test_cpu_inference_smoke(tmp_path, capsys):
    out = tmp_path / "never-written.json"
    assert _load("cpu_inference").main(["--smoke", "--out", str(out), "--threads", "1"]) == 0
    assert not out.exists()
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("tiny-128x256")][0]
    medians = json.loads(line.split(" ", 1)[1].rsplit(" ", 1)[0])
    assert set(medians) == {"eager", "optimized", "optimized + nnpack", "onnxruntime"} and min(medians.values()) > 0


def test_train_profile_smoke(tmp_path, capsys):
    out = tmp_path / "never-written.json"
    assert _load("train_profile").main(["--smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(printed[printed.index("{"):])
    assert not out.exists() and abs(sum(record["self_cpu_share_percent"].values()) - 100) < 0.5
