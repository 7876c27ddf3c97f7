import importlib.util
import json
import math
from pathlib import Path

import pytest

from gald import ablation

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("ablation_runner", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_writes_and_skips_finished_cells(tmp_path, monkeypatch):
    runner = _runner()
    assert runner.main(["--smoke", "--results", str(tmp_path), "--work-dir", str(tmp_path / "runs")]) == 0
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert cells == ["cgnl+ld-s0.json", "fcn-s0.json"]
    assert (tmp_path / "ablation.md").is_file() and json.loads((tmp_path / "ablation.json").read_text())["table"]
    cell = json.loads((tmp_path / "cells" / "fcn-s0.json").read_text())
    assert cell["config"]["block"] == "none" and cell["config"]["iterations"] == 3

    def boom(*a, **k):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("gald.train.main", boom)
    assert runner.main(["--smoke", "--results", str(tmp_path), "--work-dir", str(tmp_path / "runs")]) == 0


def test_every_variant_builds_a_valid_config(tmp_path):
    for variant in ablation.VARIANTS:
        cfg = ablation.cell_config(variant, 1, output_dir=str(tmp_path))
        assert cfg.seed == 1 and cfg.iterations == ablation.BENCHMARK["iterations"]
    assert ablation.cell_config("cgnl-deep", 0, output_dir="x").depths == [2, 2, 4, 2]


def test_unknown_variant_lists_names(tmp_path):
    with pytest.raises(KeyError, match="cgnl\\+ld"):
        ablation.run_grid(["gald++"], [0], results_dir=str(tmp_path), work_dir=str(tmp_path))


def _stat(values):
    cells = [{"variant": "fcn", "mIoU": v} for v in values]
    return ablation.aggregate(cells)["fcn"]["mIoU"]


def test_decision_rule():
    a, b = _stat([60.0, 61.0, 62.0]), _stat([50.0, 51.0, 52.0])
    diff, pooled, verdict = ablation.compare(a, b)
    assert diff == pytest.approx(10.0) and pooled == pytest.approx(1.0) and verdict == "supported"
    assert ablation.compare(b, a)[2] == "contradicted"
    assert ablation.compare(a, _stat([59.0, 60.5, 62.0]))[2] == "not resolved"
    assert ablation.compare(_stat([1.0]), _stat([2.0]))[2] == "too few seeds"
    assert math.isnan(_stat([1.0]).std)
