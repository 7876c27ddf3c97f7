"""benchmarks/ld_diagnosis.py: gradient ratios and mask statistics are recorded, runs merge."""

import json
import math

from conftest import load_benchmark


def _script():
    return load_benchmark("ld_diagnosis")


def test_smoke_records_ratios_and_mask_std_then_merges(tmp_path):
    diag = _script()
    assert diag.main(["--smoke", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "ld_diagnosis.json").read_text())["runs"]
    assert set(runs) == {"paper-d8-bn", "paper-d8-nobn0"}
    rows = runs["paper-d8-bn"]["rows"]
    assert [r["step"] for r in rows] == [0, 2, 4, 6]
    assert all(math.isfinite(r[k]) and r[k] > 0 for r in rows[1:] for k in ("ld_conv0", "ld_conv2", "convb"))
    zero = runs["paper-d8-nobn0"]["rows"]
    assert zero[0]["mask_std"] < 1e-6  # the zero-initialised last conv: M = 0.5 everywhere at the start
    assert diag.main(["--smoke", "--out", str(tmp_path), "--merge"]) == 0
    merged = json.loads((tmp_path / "ld_diagnosis.json").read_text())
    assert len(merged["commands"]) == 2 and "paper-d8-bn" in merged["runs"]
    assert "| paper-d8-nobn0 |" in (tmp_path / "ld_diagnosis.md").read_text()
