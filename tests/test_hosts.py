"""Host networks by name (gald.models.hosts): configs, training through the engine, checkpoints
that record the host and the insertion point and load in evaluate, predict and the app."""

import json

import numpy as np
import pytest
import torch

from gald import app, evaluate, predict
from gald.data.images import ImageError
from gald.data.synthetic import make_scene
from gald.config import HOST_ARCHS, TrainConfig, load_config, model_config
from gald.engine import segmentation
from gald.engine.predictor import Predictor
from gald.errors import ConfigError
from gald.models import HOSTS, build_model, get_model, inspect, list_models, load_model, num_classes
from gald.viz import views

TINY = dict(num_train=4, num_val=2, crop_size=[48, 64], batch_size=2, ohem_min_kept=200, log_interval=1,
            eval_interval=0, checkpoint_interval=2, stage_iterations=2, eval_batch_size=2, iterations=2)


def test_the_config_layer_names_every_host():
    assert tuple(HOSTS) == HOST_ARCHS
    assert set(HOST_ARCHS) <= set(list_models(task="segmentation"))


@pytest.mark.parametrize("arch", HOST_ARCHS)
def test_every_host_builds_with_its_default_insertion_point(arch):
    with torch.device("meta"):  # the dry run reads shapes on the meta device: no memory, no time
        model = build_model({"arch": arch, "num_classes": 5, "block": "gald", "d": 2, "stage_classifiers": True})
    assert model.config["after"] == HOSTS[arch].after and model.config["arch"] == arch
    assert num_classes(model) == 5 and model.gald.stage_fcn.out_channels == 5


def test_a_host_by_name_predicts_at_odd_sizes_and_reads_m():
    model = get_model("lraspp_mobilenet_v3_large", num_classes=4, block="gald", d=2).eval()
    t = inspect(model, torch.rand(1, 3, 41, 59))
    assert t["out"].shape == (1, 4, 41, 59)
    m = t["M"].detach()
    assert m.shape == (1, 960, 3, 4) and 0 < float(m.min()) and float(m.max()) < 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """lraspp_mobilenet_v3_large + GALD trained two steps through the engine, with stage classifiers."""
    out = tmp_path_factory.mktemp("host")
    cfg = load_config(None, **TINY, arch="lraspp_mobilenet_v3_large", plug_after="backbone.16", d=2,
                      name="lraspp-gald", output_dir=str(out))
    segmentation.fit(cfg)
    return out / "lraspp-gald"


def test_training_writes_a_checkpoint_that_records_the_host_and_insertion_point(trained):
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    model_cfg = ckpt["config"]["model"]
    assert (model_cfg["arch"], model_cfg["after"], model_cfg["block"]) == ("lraspp_mobilenet_v3_large", "backbone.16", "gald")
    assert any(k.startswith("gald.block.ld.") for k in ckpt["model"])
    assert any(k.startswith("backbone.16.") for k in ckpt["model"])  # the host's own keys unchanged
    model = load_model(trained / "model.pt").eval()
    assert type(model).__name__ == "LRASPP"
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt["model"].items())
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"stage/fcn", "stage/ga", "ld_effect"} <= set(metrics) or "final" in metrics


def test_the_checkpoint_loads_in_evaluate_predict_and_the_app(trained, tmp_path):
    result = evaluate.main(["--checkpoint", str(trained / "model.pt"), "--num-val", "2"])
    recorded = json.loads((trained / "metrics.json").read_text())
    assert result["out"]["mIoU"] == pytest.approx(recorded["final"]["mIoU"])  # the same model, the same scenes
    assert {"logits_fcn", "logits_ga"} <= set(result)  # the plugged model's stage classifiers are scored
    image = (np.random.default_rng(0).random((45, 67, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "x.png")
    assert predict.main(["--checkpoint", str(trained / "model.pt"), "--out", str(tmp_path / "out"),
                         "--ld-masks", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "out" / "x_label.png").is_file()
    predictor = Predictor.from_checkpoint(trained / "model.pt")
    assert predictor.ld_channels == 960 and predictor.has_ga
    info = views.model_info_markdown(predictor)
    assert "`lraspp_mobilenet_v3_large` (torchvision) with GALD plugged after `backbone.16`" in info
    page = app.Page(predictor, label_dir=tmp_path / "app")  # every view of the app, as its handlers
    scene = make_scene(0, 4, split="val")
    r = page.segment(scene.image, stage="ga")
    assert r["ld_mean"] is not None and r["attribution"] is not None and len(r["stages"]) == 3
    assert page.probe(r["state"], 60, 100)["probe"] is not None
    with pytest.raises(ImageError, match="predicts no sky"):  # two training steps: the handler runs, one line
        page.swap_sky(r["state"])


def test_the_host_alone_is_the_identity_block():
    model = build_model(model_config(TrainConfig(arch="fcn_resnet50", block="none", stage_classifiers=False), 3))
    assert model.gald.block.arrangement == "none" and not list(model.gald.parameters())


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="mode official applies to gald's own networks"):
        TrainConfig(arch="deeplabv3_resnet50", mode="official")
    with pytest.raises(ConfigError, match="activation_checkpointing True applies"):
        TrainConfig(arch="fcn_resnet50", activation_checkpointing=True)
    with pytest.raises(ConfigError, match="plug_after 'layer4' is for a host network"):
        TrainConfig(plug_after="layer4")
    with pytest.raises(ConfigError, match="has no aux classifier"):
        build_model({"arch": "lraspp_mobilenet_v3_large", "aux": True})
    with pytest.raises(TypeError, match=r"unknown model option\(s\) \['head_channels'\]"):
        build_model({"arch": "lraspp_mobilenet_v3_large", "head_channels": 8})


def test_a_bad_insertion_point_in_a_config_is_refused_before_training(tmp_path, capsys):
    from gald import train

    with pytest.raises(SystemExit) as exit_info:
        train.cli(["--arch", "lraspp_mobilenet_v3_large", "--plug-after", "backbone.61", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no module 'backbone.61'" in err[0] and "backbone.16" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_host_network_is_torchvisions_model_with_nothing_plugged():
    from gald.models import inserts
    from gald.models.hosts import host_network

    with torch.device("meta"):
        plain = host_network("deeplabv3_resnet50", num_classes=7)
        built = build_model({"arch": "deeplabv3_resnet50", "num_classes": 7, "block": "none"})
    assert type(plain).__name__ == "DeepLabV3" and not inserts(plain) and plain.aux_classifier is not None
    assert set(plain.state_dict()) == set(built.state_dict())  # the identity block adds no keys
