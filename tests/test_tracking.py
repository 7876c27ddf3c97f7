"""gald.engine.tracking: log lines, TensorBoard scalars and metrics.csv, read back; resume keeps each step once."""

import logging

import pytest

from gald.engine.tracking import RunTracker, read_metrics_csv

pytest.importorskip("tensorboard")


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_every_scalar_reaches_the_log_tensorboard_and_the_csv(tmp_path, caplog):
    with caplog.at_level(logging.INFO), RunTracker(tmp_path, total=4, images_per_step=8) as tracker:
        tracker.train(2, {"loss": 1.5, "loss_main": 1.0, "loss_aux": 1.25}, lr=0.01)
        tracker.validation(2, {"mIoU": 40.5, "boundary_mIoU": float("nan")})
        tracker.train(4, {"loss": 1.0, "loss_main": 0.75, "loss_aux": 0.625}, lr=0.005)
    assert "step 2/4  loss 1.5000 (main 1.0000, aux 1.2500)  lr 0.01" in caplog.text
    assert "step 2/4  val: mIoU 40.50, boundary_mIoU nan" in caplog.text
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["step"], r["value"]) for r in rows if r["tag"] == "train/loss"] == [(2, 1.5), (4, 1.0)]
    assert [(r["step"], r["value"]) for r in rows if r["tag"] == "val/mIoU"] == [(2, 40.5)]
    assert not [r for r in rows if r["tag"] == "val/boundary_mIoU"]  # NaN is not a point
    rate = [r["value"] for r in rows if r["tag"] == "train/images_per_s"]
    assert len(rate) == 2 and all(v > 0 for v in rate)
    scalars = _tensorboard_scalars(tmp_path)
    assert scalars["train/aux"] == [(2, 1.25), (4, 0.625)]
    assert scalars["train/lr"] == [(2, pytest.approx(0.01)), (4, pytest.approx(0.005))]
    assert scalars["val/mIoU"] == [(2, 40.5)]


def test_a_resumed_run_reports_each_step_once(tmp_path):
    with RunTracker(tmp_path, total=6) as tracker:
        for step in range(1, 7):  # an attempt that logged up to step 6, then died after its step-4 checkpoint
            tracker.train(step, {"loss": float(step)}, lr=0.1)
    with RunTracker(tmp_path, total=6, start=4) as tracker:
        for step in (5, 6):
            tracker.train(step, {"loss": 10.0 * step}, lr=0.1)
    expected = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0), (6, 60.0)]
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["step"], r["value"]) for r in rows if r["tag"] == "train/loss"] == expected
    assert _tensorboard_scalars(tmp_path)["train/loss"] == expected


def test_a_new_run_starts_a_new_csv(tmp_path):
    with RunTracker(tmp_path, total=2, tensorboard=False) as tracker:
        tracker.train(2, {"loss": 3.0}, lr=0.1)
    with RunTracker(tmp_path, total=2, tensorboard=False) as tracker:
        tracker.train(1, {"loss": 2.0}, lr=0.1)
    assert [(r["step"], r["tag"]) for r in read_metrics_csv(tmp_path / "metrics.csv")][:1] == [(1, "train/loss")]


def test_a_run_that_starts_again_from_zero_replaces_the_earlier_attempt(tmp_path):
    """A restart before the first checkpoint (or a rerun of a run that never saved one) starts at 0."""
    with RunTracker(tmp_path, total=3) as tracker:
        for step in (1, 2, 3):
            tracker.train(step, {"loss": float(step)}, lr=0.1)
    with RunTracker(tmp_path, total=3) as tracker:
        for step in (1, 2):
            tracker.train(step, {"loss": 10.0 * step}, lr=0.1)
    expected = [(1, 10.0), (2, 20.0)]
    assert [(r["step"], r["value"]) for r in read_metrics_csv(tmp_path / "metrics.csv") if r["tag"] == "train/loss"] == expected
    assert _tensorboard_scalars(tmp_path)["train/loss"] == expected


def test_resumed_at_the_end_the_final_evaluation_is_reported_once(tmp_path):
    with RunTracker(tmp_path, total=2, tensorboard=False) as tracker:
        tracker.train(2, {"loss": 1.0}, lr=0.1)
        tracker.validation(2, {"mIoU": 40.0})
    with RunTracker(tmp_path, total=2, start=2, tensorboard=False) as tracker:
        tracker.validation(2, {"mIoU": 41.0})
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["tag"], r["value"]) for r in rows if r["tag"] in ("train/loss", "val/mIoU")] == [
        ("train/loss", 1.0), ("val/mIoU", 41.0)]


def test_a_row_cut_short_by_a_kill_is_skipped(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,tag,value,wall_time\n1,train/loss,2.0,5.0\n2,train/lo")
    assert read_metrics_csv(tmp_path / "metrics.csv") == [{"step": 1, "tag": "train/loss", "value": 2.0, "wall_time": 5.0}]
