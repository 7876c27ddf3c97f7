"""The authors' key layout (a recorded fixture) maps onto gald official mode, both ways."""

import json
from pathlib import Path

import pytest
import torch

from gald.convert_official import convert, gald_to_official, load_official, main
from gald.errors import OutputExistsError
from gald.models import NNPACKConv2d, gald_resnet50, load_model

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "official_gald_res50_keys.json").read_text())["keys"]


def _official_state():
    """Random tensors with exactly the authors' key names and shapes."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in FIXTURE.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.randint(0, 5, shape, generator=g)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    return state


def test_gald_to_official_reproduces_the_authors_keys_and_shapes():
    with torch.device("meta"):
        model = gald_resnet50(num_classes=19, mode="official")
    mapped = gald_to_official(model.state_dict())
    assert {k: list(v.shape) for k, v in mapped.items()} == FIXTURE


def test_official_to_gald_loads_strictly_and_round_trips(tmp_path):
    state = _official_state()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "official.pth")
    model = load_official(tmp_path / "official.pth", arch="gald_resnet50")
    back = gald_to_official(model.state_dict())
    assert back.keys() == state.keys()
    for k in state:
        assert torch.equal(back[k], state[k]), k
    assert model.head.classifier.out_channels == 19


def test_converter_cli_writes_a_loadable_checkpoint_and_never_overwrites(tmp_path):
    torch.save(_official_state(), tmp_path / "official.pth")
    assert main([str(tmp_path / "official.pth"), str(tmp_path / "gald.pt"), "--arch", "gald_resnet50"]) == 0
    model = load_model(tmp_path / "gald.pt").eval()
    ref = load_official(tmp_path / "official.pth", arch="gald_resnet50").eval()
    x = torch.randn(1, 3, 129, 129)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["out"], ref(x)["out"])
    with pytest.raises(OutputExistsError, match="is the input.*never overwritten"):
        convert(str(tmp_path / "official.pth"), str(tmp_path / "official.pth"), arch="gald_resnet50", force=True)
    # the same file through a symlinked folder: compared resolved, still refused with --force
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    before = (tmp_path / "official.pth").read_bytes()
    with pytest.raises(OutputExistsError, match="is the input"):
        convert(str(tmp_path / "official.pth"), str(tmp_path / "link" / "official.pth"), arch="gald_resnet50", force=True)
    assert (tmp_path / "official.pth").read_bytes() == before
    with pytest.raises(FileExistsError, match="--force"):
        convert(str(tmp_path / "official.pth"), str(tmp_path / "gald.pt"), arch="gald_resnet50")


def test_wrong_depth_names_the_mismatching_keys(tmp_path):
    torch.save(_official_state(), tmp_path / "r50.pth")
    with pytest.raises(RuntimeError, match="missing keys: backbone.layer3.6"):
        load_official(tmp_path / "r50.pth", arch="gald_resnet101")


def test_wrong_class_count_and_foreign_state_dicts(tmp_path):
    state = _official_state()
    state["head.bottleneck.3.weight"] = torch.randn(7, 512, 1, 1)  # bias still 19
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(RuntimeError, match="head.classifier.bias"):
        load_official(tmp_path / "mixed.pth", arch="gald_resnet50")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(KeyError, match="no counterpart: fc.weight"):
        load_official(tmp_path / "foreign.pth", arch="gald_resnet50")


def test_converted_checkpoints_run_in_predict_and_evaluate(tmp_path):
    from gald.data.synthetic import export_cityscapes_layout
    from gald.evaluate import evaluate_checkpoint
    from gald.predict import Predictor

    torch.save(_official_state(), tmp_path / "official.pth")
    convert(str(tmp_path / "official.pth"), str(tmp_path / "gald.pt"), arch="gald_resnet50")
    predictor = Predictor.from_checkpoint(str(tmp_path / "gald.pt"))
    assert predictor.normalization == "bgr_mean" and len(predictor.classes) == 19
    image = torch.randint(0, 256, (129, 135, 3), dtype=torch.uint8).numpy()
    pred = predictor.predict(image)
    assert pred.shape == (129, 135)
    export_cityscapes_layout(tmp_path / "cs", seed=0, counts={"train": 1, "val": 1}, size=(128, 128))
    res = evaluate_checkpoint(str(tmp_path / "gald.pt"), dataset="cityscapes", data_root=str(tmp_path / "cs"), stages=False)
    assert res["images"] == 1 and res["normalization"] == "bgr_mean" and 0 <= res["out"]["mIoU"] <= 100

    # --nnpack: predict() runs an optimized copy (BN folded, channels-last) whose head's 2048→512, 512→512
    # and 2560→512 convolutions (and the aux head's) go through NNPACK; the model itself is unchanged
    fast = Predictor.from_checkpoint(str(tmp_path / "gald.pt"), nnpack=True)
    assert sum(isinstance(m, NNPACKConv2d) for m in fast.runner.modules()) == 4
    assert not any(isinstance(m, NNPACKConv2d) for m in fast.model.modules()) and fast.backend == "torch"
    assert (fast.predict(image) == pred).mean() > 0.999
    res_fast = evaluate_checkpoint(str(tmp_path / "gald.pt"), dataset="cityscapes", data_root=str(tmp_path / "cs"),
                                   stages=False, nnpack=True)  # fmt: skip
    assert res_fast["out"]["mIoU"] == pytest.approx(res["out"]["mIoU"], abs=0.5)
