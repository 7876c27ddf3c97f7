import torch

from gald.export import export_onnx, main, onnx_max_abs_diff
from gald.models import gald_tiny



def test_cgnl_gald_exports_with_dynamic_size_and_matches_pytorch(tmp_path):
    model = gald_tiny(num_classes=5, ga="cgnl", block="gald").eval()
    path = export_onnx(model, tmp_path / "m.onnx", example_size=(96, 128))
    diff = onnx_max_abs_diff(model, path, sizes=((1, 97, 131), (3, 65, 257)))
    assert diff < 1e-4


def test_cli_exports_a_trained_checkpoint(tmp_path):
    model = gald_tiny(num_classes=4, stage_classifiers=True)
    torch.save({"model": model.state_dict(), "config": {"model": model.config}}, tmp_path / "model.pt")
    diff = main(["--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "m.onnx"), "--height", "64", "--width", "96", "--check"])
    assert diff is not None and diff < 1e-4
