"""One loader for both tasks (gald.models.weights): old checkpoints still load, and a checkpoint of
the other task is refused in one line by the library and by every command that reads one."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.models.detection import MaskRCNN

from gald import evaluate, predict, predict_detection
from gald.models import GALDNet, WrongTaskError, checkpoint_task, load_model, read_checkpoint, require_task

ASSETS = Path(__file__).resolve().parents[1] / "notebooks" / "assets"
# Both written by gald 0.1.x, before the 0.2.0 layout move (notebooks/assets/*.json record the commands).
SEGMENTATION, DETECTION = ASSETS / "fcn.pt", ASSETS / "detector.pt"


def test_checkpoints_written_before_the_layout_move_load_with_one_loader():
    seg, det = load_model(SEGMENTATION), load_model(DETECTION)
    assert isinstance(seg, GALDNet) and isinstance(det, MaskRCNN)
    assert checkpoint_task(read_checkpoint(SEGMENTATION)) == "segmentation"
    assert checkpoint_task(read_checkpoint(DETECTION)) == "detection"
    assert isinstance(load_model(DETECTION, task="detection"), MaskRCNN)


@pytest.mark.parametrize("path, task, holds", [(DETECTION, "segmentation", "detection"),
                                               (SEGMENTATION, "detection", "segmentation")])
def test_the_other_task_is_refused_naming_what_the_file_holds(path, task, holds):
    with pytest.raises(WrongTaskError, match=f"holds a {holds} model .*, not a {task} model"):
        load_model(path, task=task)
    with pytest.raises(ValueError, match="task must be one of"):
        require_task(read_checkpoint(path), "classification")


def _one_line_exit_2(run, capsys):
    with pytest.raises(SystemExit) as exc:
        code = run()
        raise SystemExit(code)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_commands_refuse_the_other_task_in_one_line(tmp_path, capsys):
    err = _one_line_exit_2(lambda: evaluate.main(["--checkpoint", str(DETECTION)]), capsys)
    assert "holds a detection model (mask_rcnn_tiny_fpn_gald)" in err and "gald.predict_detection" in err
    err = _one_line_exit_2(lambda: predict.main([str(tmp_path), "--checkpoint", str(DETECTION),
                                                 "--out", str(tmp_path / "out")]), capsys)
    assert "holds a detection model" in err
    err = _one_line_exit_2(lambda: predict_detection.main(["--checkpoint", str(SEGMENTATION), "--input",
                                                           str(tmp_path), "--output", str(tmp_path / "o")]), capsys)
    assert "holds a segmentation model (gald_tiny)" in err


def test_every_weight_file_is_read_by_one_function():
    """One reader (weights_only=True): no other call of torch.load in the library."""
    import ast

    root = Path(__file__).resolve().parents[1] / "gald"
    calls = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                calls.append(path.relative_to(root).as_posix())
    assert calls == ["models/state_dict.py"], calls
