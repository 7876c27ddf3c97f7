"""gald.figures: the notebooks' figures and the measurements behind them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from gald import figures
from gald.data.synthetic import CLASSES, PALETTE, make_scene
from gald.models import gald_tiny

SIZE = (65, 97)  # odd, and not a multiple of the output stride


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(0, i, split="val", size=SIZE) for i in range(2)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return gald_tiny(num_classes=9, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8, ga="psp",
                     stage_classifiers=True).eval()


def test_scene_batch_normalises_like_training(scenes):
    x = figures.scene_batch(scenes)
    assert x.shape == (2, 3, *SIZE) and x.dtype == torch.float32
    assert -3 < float(x.min()) < 0 < float(x.max()) < 3  # ImageNet statistics, not raw 0-255
    with pytest.raises(ValueError, match="at least one"):
        figures.scene_batch([])


def test_stage_predictions_upsample_every_stage_to_the_input(model, scenes):
    x = figures.scene_batch(scenes)
    preds = figures.stage_predictions(model, x)
    assert list(preds) == ["FCN", "GA", "GALD"]
    for p in preds.values():
        assert p.shape == (2, *SIZE) and p.min() >= 0 and p.max() < 9
    with torch.no_grad():
        assert (preds["GALD"] == model(x)["out"].argmax(1).numpy()).all()
    fcn_only = gald_tiny(num_classes=9, widths=(8, 8, 16, 16), head_channels=16, block="none").eval()
    assert list(figures.stage_predictions(fcn_only, x)) == ["GALD"]  # absent stages are left out


def test_mask_by_pattern_size_averages_per_class_group_and_instance():
    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 5  # right half: pole (small)
    inst = np.zeros((8, 8), np.int32)
    inst[:, 4:6], inst[:, 6:] = 1, 2
    m = torch.zeros(1, 3, 8, 8)
    m[..., :4] = 0.9  # large region bright
    m[..., 4:6] = 0.2
    m[..., 6:] = 0.4
    stats = figures.mask_by_pattern_size(m, [label], [inst])
    assert stats["large"] == pytest.approx(0.9, abs=1e-6)
    assert stats["small"] == pytest.approx(0.3, abs=1e-6)
    assert stats["per_class"] == {0: pytest.approx(0.9), 5: pytest.approx(0.3)}
    assert sorted(stats["instances"]) == [(16, pytest.approx(0.2)), (16, pytest.approx(0.4))]
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        figures.mask_by_pattern_size(m[0], [label])


def test_mask_by_pattern_size_resizes_feature_resolution_masks(model, scenes):
    x = figures.scene_batch(scenes)
    with torch.no_grad():
        m = model.inspect(x)["M"]
    assert m.shape[-2:] != SIZE
    stats = figures.mask_by_pattern_size(m, [s.label for s in scenes], [s.instances for s in scenes])
    assert 0 < stats["small"] < 1 and 0 < stats["large"] < 1
    assert len(stats["instances"]) == sum(len(s.instance_classes) for s in scenes)


def test_group_accuracy_counts_only_the_group_pixels():
    labels = np.array([[[0, 1, 5, 5]]])
    preds = {"a": np.array([[[0, 0, 5, 2]]])}
    acc = figures.group_accuracy(preds, labels)["a"]
    assert acc["context"] == pytest.approx(50.0)
    assert acc["small"] == pytest.approx(50.0)
    assert acc["large"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="differ in shape"):
        figures.group_accuracy({"a": np.zeros((1, 1, 3))}, labels)


def test_load_ablation_round_trips_the_benchmark_file(tmp_path):
    raw = {"environment": "env", "verdicts": [],
           "table": {"fcn": {"mIoU": {"mean": 40.0, "std": 1.0, "n": 2, "values": [39.0, 41.0]},
                             "small_mIoU": {"mean": 1.0, "std": 0.5, "n": 2, "values": [0.5, 1.5]}},
                     "ld": {"mIoU": {"mean": 42.0, "std": 2.0, "n": 2, "values": [40.0, 44.0]}}}}
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(raw))
    loaded = figures.load_ablation(path)
    assert str(loaded["table"]["fcn"]["mIoU"]) == "40.00 ± 1.00"
    table = figures.ablation_table(loaded["table"])
    assert "| a | fcn | 2 | 40.00 ± 1.00 |" in table and "| b | ld | 2 | 42.00 ± 2.00 |" in table
    fig = figures.ablation_figure(loaded["table"])
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["(a) fcn", "(b) ld"]
    with pytest.raises(FileNotFoundError, match="benchmarks/ablation.py"):
        figures.load_ablation(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"table": [["fcn", {}]]}))
    with pytest.raises(ValueError, match="not an ablation results file"):
        figures.load_ablation(tmp_path / "bad.json")


def test_the_committed_ablation_results_load():
    from pathlib import Path

    loaded = figures.load_ablation(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ablation.json")
    assert {"fcn", "cgnl+ld", "ldga"} <= set(loaded["table"]) and loaded["verdicts"]


def test_segmentation_grid_draws_palette_colours_and_legend(scenes):
    labels = [s.label for s in scenes]
    fig = figures.segmentation_grid([s.image for s in scenes], {"pred": labels, "ground truth": labels}, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert [a.get_title() for a in fig.axes[:3]] == ["input", "pred", "ground truth"]
    shown = fig.axes[1].get_images()[0].get_array()
    assert tuple(shown[0, 0]) == tuple(PALETTE[int(labels[0][0, 0])])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(CLASSES)
    with pytest.raises(ValueError, match="has 1 label maps for 2 images"):
        figures.segmentation_grid([s.image for s in scenes], {"pred": labels[:1]})


def test_mask_figures_use_the_fixed_unit_scale(model, scenes):
    x = figures.scene_batch(scenes)
    with torch.no_grad():
        m = model.inspect(x)["M"]
    fig = figures.ld_mask_figure([s.image for s in scenes], {"GALD": list(m), "LDGA": list(m)})
    images = [a.get_images()[0] for a in fig.axes if a.get_images()]
    assert all(im.get_clim() == (0.0, 1.0) for im in images[1:3])
    stretched = figures.ld_mask_figure([scenes[0].image], {"GALD": [m[0]]}, scale="minmax")
    mean = m[0].mean(0)
    assert stretched.axes[1].get_images()[0].get_clim() == pytest.approx((float(mean.min()), float(mean.max())))
    with pytest.raises(ValueError, match="scale"):
        figures.ld_mask_figure([scenes[0].image], {"GALD": [m[0]]}, scale="log")
    fig = figures.ld_channels_figure(m[0], [0, 3, 5])
    assert [a.get_title().split(":")[0] for a in fig.axes[:3]] == ["channel 0", "channel 3", "channel 5"]
    with pytest.raises(IndexError, match="out of range"):
        figures.ld_channels_figure(m[0], [m.shape[1]])
    stats = {"GALD": figures.mask_by_pattern_size(m, [s.label for s in scenes], [s.instances for s in scenes])}
    assert isinstance(figures.mask_size_figure(stats), Figure)


def test_curves_attribution_and_cue_figures():
    history = {"train": [{"step": 10, "loss": 2.0, "loss_main": 1.5, "loss_aux": 0.5},
                         {"step": 20, "loss": 1.0, "loss_main": 0.8, "loss_aux": 0.2}],
               "val": [{"step": 20, "mIoU": 30.0, "small_mIoU": None}]}
    fig = figures.curves_figure(history, title="run")
    assert [len(a.get_lines()) for a in fig.axes] == [3, 1]  # the None metric is skipped
    with pytest.raises(ValueError, match="no training entries"):
        figures.curves_figure({"train": []})
    # a two-step run: the points are visible and every tick is a whole step
    short = figures.curves_figure({"train": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
                                   "val": [{"step": 2, "box_AP": 12.5}]})
    short.canvas.draw()
    assert all(line.get_marker() == "o" for ax in short.axes for line in ax.get_lines())
    for ax in short.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert [line.get_label() for line in short.axes[1].get_lines()] == ["box AP"]  # detection histories too
    image = np.zeros((9, 13, 3), np.uint8)
    fig = figures.attribution_figure(image, {"fcn": torch.rand(9, 13), "gald": np.zeros((3, 5))},
                                     label=np.zeros((9, 13), np.int64))
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert [a.get_title().split(" ")[0] for a in panels] == ["input", "ground", "fcn", "gald"]
    twins = {"A": {"by_distance": {"32-48px": {"follows_cue": 10.0}, ">=64px": {"follows_cue": 90.0}}}}
    fig = figures.cue_twins_figure(twins)
    assert [p.get_height() for p in fig.axes[0].patches] == [10.0, 90.0]


def test_image_grid_lays_out_images_with_titles():
    images = [np.full((9, 13, 3), v, np.uint8) for v in (0, 100, 200, 250)]
    fig = figures.image_grid(images, ["a", "b", "c", "d"], ncols=3)
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:4]] == ["a", "b", "c", "d"]
    assert fig.axes[3].get_images()[0].get_array()[0, 0, 0] == 250
    with pytest.raises(ValueError, match="2 titles for 4 images"):
        figures.image_grid(images, ["a", "b"])


def test_claims_figure_draws_one_row_per_claim_and_the_check():
    from gald import ablation

    cells = [{"variant": v, "seed": s, "mIoU": 50.0 + s + (3.0 if v == "cgnl+ld" else 0.0) + 0.3 * (s % 2 if v == "cgnl" else 0),
              "small_mIoU": 40.0 + s, "context_mIoU": 60.0 + s + (5.0 if v == "cgnl" else 0.0)}
             for v in ("fcn", "cgnl", "cgnl+ld") for s in range(4)]
    analysis = ablation.analyse_v2(cells, {"mIoU": 1.0, "small_mIoU": 1.0, "context_mIoU": 1.0})
    fig = figures.claims_figure(analysis)
    ax = fig.axes[0]
    at = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    labels = list(at.values())
    assert len(labels) == len(ablation.V2_CLAIMS) + 1
    assert at[0].startswith("GA (CGNL) beats FCN") and "manipulation check: passed" in at[0]  # the bottom row
    assert at[len(labels) - 1].startswith("GALD beats GA on small-pattern mIoU")  # claim 1 on top
    assert any("not run" in t for t in labels)  # claims without cells are listed, not dropped
    centres = sorted(c.get_children()[0].get_xdata()[0] for c in ax.containers)  # the Δ markers of tested rows
    assert centres == pytest.approx([0.0, 3.0, 5.0], abs=0.2)


def test_setup_notebook_pins_threads_seeds_and_progress_bars(tmp_path, monkeypatch):
    import random
    import warnings

    import matplotlib

    from gald.viz import notebook
    from gald.viz.notebook import asset_card, setup_notebook

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    logs = []
    monkeypatch.setattr(notebook, "log_to_stdout", lambda times: logs.append(times))
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    (tmp_path / "runs" / "nb" / "stale").mkdir(parents=True)
    try:
        with warnings.catch_warnings(), matplotlib.rc_context():  # leave the global state as it was
            work = setup_notebook("nb", seed=3, root=tmp_path / "runs")
            assert work == tmp_path / "runs" / "nb" and work.is_dir() and not list(work.iterdir())
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
            assert os.environ["TQDM_DISABLE"] == "1" and logs == [False]
            first = (random.random(), np.random.rand(), torch.rand(1).item())
            setup_notebook(seed=3)
            assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
            for bad in ("", ".", "..", "a/b"):
                with pytest.raises(ValueError, match="plain folder name"):
                    setup_notebook(bad, root=tmp_path / "runs")
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    (tmp_path / "a.json").write_text('{"metrics": {"mIoU": 1.5}}')
    assert asset_card("a", tmp_path) == {"metrics": {"mIoU": 1.5}}


def test_save_figure_writes_vector_and_300_dpi_files(tmp_path):
    from PIL import Image

    fig = figures.curves_figure({"train": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]})
    paths = figures.save_figure(fig, tmp_path / "figs" / "curves.png")
    assert [os.path.basename(p) for p in paths] == ["curves.pdf", "curves.svg", "curves.png"]
    assert open(paths[0], "rb").read(5) == b"%PDF-" and b"<svg" in open(paths[1], "rb").read(2000)
    assert Image.open(paths[2]).info["dpi"] == pytest.approx((300, 300), abs=0.5)


def test_every_heat_map_has_a_colour_bar():
    image = np.zeros((9, 13, 3), np.uint8)
    m = torch.rand(1, 4, 3, 5)
    for scale in ("unit", "minmax"):
        fig = figures.ld_mask_figure([image], {"GALD": [m[0]], "LDGA": [m[0] * 0.5]}, scale=scale)
        images = [a for a in fig.axes if "mean of M" in a.get_title()]
        bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
        assert images and len(bars) == (1 if scale == "unit" else len(images))
    fig = figures.attribution_figure(image, {"fcn": torch.rand(9, 13), "gald": torch.rand(3, 5) * 4})
    heat = [a for a in fig.axes if a.get_title() in ("fcn", "gald")]
    scales = [a.child_axes[0].get_xlim() for a in heat]  # each panel's colour bar, 0 to its own maximum
    assert len(heat) == 2 and all(len(a.child_axes) == 1 for a in heat)
    assert scales[0][0] == 0 and 0 < scales[0][1] <= 1 and 1 < scales[1][1] <= 4
