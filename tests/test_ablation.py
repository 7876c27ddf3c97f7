import json
import os
import math

import pytest

from conftest import load_benchmark
from gald import ablation


def _runner():
    return load_benchmark("ablation")


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

    monkeypatch.setattr("gald.engine.segmentation.fit", boom)
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


# ---------------------------------------------------------------------------------------------- v2

def _runner_v2():
    return load_benchmark("ablation_v2")


def _prereg(tmp_path, **changes):
    plan = {"arms": list(ablation.V2_ARMS), "seeds": [0, 1], "threads": 1,
            "schedule": {k: ablation.V2_BENCHMARK[k] for k in ("iterations", "d", "synthetic_version")},
            "sesoi": {"mIoU": 1.0, "small_mIoU": 1.0, "context_mIoU": 1.0}, **changes}
    path = tmp_path / "prereg.md"
    path.write_text("# test plan\n\n## Plan\n\n```json\n" + json.dumps(plan) + "\n```\n")
    return str(path)


def test_v2_smoke_grid_records_identity_curves_and_ld_effect_then_analyses(tmp_path):
    runner = _runner_v2()
    prereg = _prereg(tmp_path)
    args = ["--results", str(tmp_path / "cells_root"), "--prereg", prereg, "--smoke"]
    assert runner.main(["run", *args, "--work-dir", str(tmp_path / "runs")]) == 0
    cells = {(c["variant"], c["seed"]): c for c in ablation.load_cells(str(tmp_path / "cells_root"))}
    assert set(cells) == {(a, s) for a in ("fcn", "cgnl", "cgnl+ld") for s in (0, 1)}
    gald = cells[("cgnl+ld", 0)]
    assert gald["identity"]["benchmark"] == "v2-smoke" and len(gald["identity"]["preregistration"]) == 16
    assert gald["threads"] == 1 and gald["config"]["synthetic_version"] == 2 and gald["config"]["d"] == 2
    assert gald["loss_step5"] is not None and gald["curves"]["val"]
    assert set(gald["ld_effect"]) == {"spatial_mean", "zero"} and "ld_effect" not in cells[("cgnl", 0)]
    result = runner.analyse(runner.parse_args(["analyse", *args]))
    rows = {r["key"]: r for r in result["claims"]}
    assert rows["gald-vs-ga"]["n"] == 2 and rows["gald-vs-ga"]["verdict"] in ("supported", "contradicted", "equivalent", "inconclusive")
    assert rows["gald-vs-ldga"]["verdict"] == "not run"
    assert "passed" in result["manipulation_check"]
    md = (tmp_path / "cells_root" / "ablation_v2.md").read_text()
    assert "GALD beats GA on mIoU" in md and "manipulation check" in md


def test_v2_grid_refuses_cells_of_another_identity(tmp_path, capsys):
    runner = _runner_v2()
    root = tmp_path / "cells_root"
    (root / "cells").mkdir(parents=True)
    (root / "cells" / "fcn-s0.json").write_text(json.dumps({"variant": "fcn", "seed": 0, "identity": {"benchmark": "v1"}}))
    args = ["run", "--results", str(root), "--prereg", _prereg(tmp_path), "--smoke", "--work-dir", str(tmp_path / "r")]
    with pytest.raises(ablation.MixedGridError, match="fcn-s0.json.*never mixed"):
        runner.main(args)


def test_v2_plan_must_match_the_code(tmp_path):
    runner = _runner_v2()
    with pytest.raises(ValueError, match="schedule .* differs"):
        runner.read_plan(_prereg(tmp_path, schedule={"iterations": 1}))
    with pytest.raises(ValueError, match="no SESOI for \\['context_mIoU'\\]"):
        runner.read_plan(_prereg(tmp_path, sesoi={"mIoU": 1.0, "small_mIoU": 1.0}))
    with pytest.raises(ValueError, match="unknown arms"):
        runner.read_plan(_prereg(tmp_path, arms=["fcn", "gald++"]))
    bad = tmp_path / "bad.md"
    bad.write_text("# nothing\n\n### Plan\n\n```json\n{}\n```\n")  # not a '## Plan' heading
    with pytest.raises(ValueError, match="no ```json block"):
        runner.read_plan(str(bad))


def test_v2_analysis_is_provisional_until_the_grid_is_complete_and_holm_counts_every_claim():
    cells = [{"variant": v, "seed": s, "mIoU": 50.0 + s + (3.0 if v == "cgnl+ld" else 0.0) + 0.1 * (s % 2),
              "small_mIoU": 40.0 + s, "context_mIoU": 60.0 + s}
             for v in ("cgnl", "cgnl+ld") for s in range(5)]
    plan = {"arms": list(ablation.V2_ARMS), "seeds": list(range(5)), "exploratory": ["gald-vs-ldga"]}
    result = ablation.analyse_v2(cells, {"mIoU": 1.0, "small_mIoU": 1.0, "context_mIoU": 1.0}, plan=plan)
    assert result["complete"] is False
    row = {r["key"]: r for r in result["claims"]}["gald-vs-ga"]
    assert row["p_holm"] == pytest.approx(min(1.0, 6 * row["p"]))  # m = 6 although only 2 claims ran
    assert row["differences"] == pytest.approx([3.0] * 5) and row["delta"] == pytest.approx(3.0)
    md = ablation.markdown_v2(result)
    assert "provisional" in md and "(exploratory)" in md
    assert {r["key"]: r["status"] for r in result["claims"]}["gald-vs-ga"] == "confirmatory"
    cells[0]["mIoU"] = float("nan")  # a NaN seed is dropped, never turned into a verdict
    again = {r["key"]: r for r in ablation.analyse_v2(cells, result["sesoi"])["claims"]}["gald-vs-ga"]
    assert again["n"] == 4


def test_shards_partition_the_grid():
    runner = _runner_v2()
    arms, seeds = ["a", "b", "c"], [0, 1, 2]
    parts = [runner.shard_cells(arms, seeds, (i, 2)) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted((a, s) for a in arms for s in seeds)
    assert not set(parts[0]) & set(parts[1])


def test_a_seed_fixes_data_order_and_backbone_init_across_arms(tmp_path):
    """Train every v2 arm 1 step at lr 0: the saved backbones are identical, and so is the first batch."""
    import torch

    from gald import train
    from gald.data.build import build_segmentation_data
    from gald.models import load_model

    smoke = dict(iterations=1, num_train=4, num_val=2, crop_size=[48, 64], batch_size=2, ohem_min_kept=200,
                 depths=[1, 1, 1, 1], widths=[8, 8, 16, 16], head_channels=16, aux_channels=16, lr=0.0,
                 weight_decay=0.0, momentum=0.0)
    backbones, batches = {}, {}
    for arm in ("fcn", "cgnl", "cgnl+ld", "parallel"):
        cfg = ablation.cell_config(arm, 3, output_dir=str(tmp_path), overrides=dict(ablation.V2_BENCHMARK, **smoke))
        train.main(cfg)
        backbones[arm] = load_model(tmp_path / cfg.name / "model.pt").backbone.state_dict()
        data = build_segmentation_data(cfg)
        batches[arm] = data.to_device(*next(data.train_batches()), torch.device("cpu"))[0]
    ref = backbones.pop("fcn")
    for arm, state in backbones.items():
        for k, v in ref.items():
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert torch.equal(v, state[k]), (arm, k)
    assert all(torch.equal(batches["fcn"], b) for b in batches.values())


def test_v2_analyse_a_complete_grid_end_to_end(tmp_path):
    """A full plan's worth of (made-up) cells goes through the runner's analysis: complete, not
    provisional, every claim tested, the LD effects tabled with the plan's SESOI."""
    runner = _runner_v2()
    prereg = _prereg(tmp_path, seeds=[0, 1, 2, 3, 4, 5], exploratory=["gald-vs-ldga"])
    identity = ablation.grid_identity(benchmark="v2", preregistration=prereg, commit="abc")
    root = tmp_path / "grid"
    (root / "cells").mkdir(parents=True)
    shift = {"fcn": 0.0, "cgnl": 6.0, "cgnl+ld": 9.0, "ldga": 8.0, "parallel": 7.5, "cgnl+ld-bilinear": 8.8,
             "cgnl+ld-avgpool": 2.0}
    for arm, d in shift.items():
        for s in range(6):
            noise = 0.3 * ((s * 7 + len(arm)) % 5 - 2)
            cell = {"variant": arm, "seed": s, "identity": identity, "mIoU": 60 + d + noise,
                    "small_mIoU": 70 + d / 3 + noise, "context_mIoU": 30 + 8 * d + noise}
            if arm in ablation.LD_ARMS:
                eff = {"metrics": {"mIoU": {"effect": 0.1, "ci95": [-0.2, 0.4]},
                                   "small_mIoU": {"effect": 0.3, "ci95": [0.1, 0.5]}}}
                cell["ld_effect"] = {"spatial_mean": eff, "zero": eff}
            (root / "cells" / f"{arm}-s{s}.json").write_text(json.dumps(cell))
    args = runner.parse_args(["analyse", "--results", str(root), "--prereg", prereg])
    result = runner.analyse(args)
    assert result["complete"] is True and all(r["verdict"] != "not run" for r in result["claims"])
    rows = {r["key"]: r for r in result["claims"]}
    assert rows["dwconv-vs-avgpool"]["verdict"] == "supported"  # +7 points, SD 0.3
    assert rows["gald-vs-ldga"]["status"] == "exploratory"
    assert result["manipulation_check"]["passed"] is True
    assert {e["spatial_mean"]["verdict"] for e in result["ld_effects"]} == {"inert"}  # plan SESOI 1.0
    md = (tmp_path / "ablation_v2.md").read_text()
    assert "provisional" not in md and "(exploratory)" in md and "| cgnl+ld | 5 |" in md


# ---------------------------------------------------------------------------------------------- plug


def test_the_committed_host_comparison_is_what_its_cells_give(tmp_path, monkeypatch):
    """benchmarks/results/plug_v2.{md,json} regenerate from the committed cells, under the committed plan."""
    import shutil
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))  # the script imports its sibling ablation_v2, as when run
    monkeypatch.delitem(sys.modules, "ablation_v2", raising=False)
    runner = load_benchmark("plug_v2")
    shutil.copytree(bench / "results" / "plug_v2" / "cells", tmp_path / "plug_v2" / "cells")
    result = runner.analyse(runner.parse_args(["analyse", "--results", str(tmp_path / "plug_v2")]))
    committed = json.loads((bench / "results" / "plug_v2.json").read_text())
    assert result["complete"] and committed["complete"]
    for ours, theirs in zip(result["comparisons"], committed["comparisons"]):
        assert ours["key"] == theirs["key"] and ours["verdict"] == theirs["verdict"]
        assert ours["ci95"] == pytest.approx(theirs["ci95"]) and ours["n"] == 5
    assert (tmp_path / "plug_v2.md").read_text() == (bench / "results" / "plug_v2.md").read_text().replace(
        "benchmarks/results/plug_v2", os.path.relpath(tmp_path / "plug_v2", bench.parent))


def test_the_plug_grid_runs_both_arms_in_smoke_mode(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "ablation_v2", raising=False)
    runner = load_benchmark("plug_v2")
    args = ["--results", str(tmp_path / "cells_root"), "--smoke"]
    assert runner.main(["run", *args, "--work-dir", str(tmp_path / "runs")]) == 0
    cells = {c["variant"]: c for c in ablation.load_cells(str(tmp_path / "cells_root"))}
    assert set(cells) == {"lraspp", "lraspp+gald"} and cells["lraspp"]["identity"]["benchmark"] == "v2-plug-smoke"
    assert "ld_effect" in cells["lraspp+gald"] and "ld_effect" not in cells["lraspp"]
    assert cells["lraspp+gald"]["parameters"] > cells["lraspp"]["parameters"]
