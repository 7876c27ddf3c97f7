"""Weights by name and on a hub: get_model / list_models, torch.hub entry points, and gald.hub's
pretrained folders (config.json + safetensors + model card), round-tripped for every model name;
push_to_hub is tested through the folder it would upload, without network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from gald.errors import CheckpointError, MissingFileError
from gald.config import HOST_ARCHS
from gald.models import get_model, list_models, load_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "gald" / "assets" / "gald-cgnl_tiny-d2_synthetic-v2-128x256.pt"

try:
    import huggingface_hub  # noqa: F401
    import safetensors  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise  # CI installs the hub extra: a missing package is a failure there
    pytest.skip('the hub extra is not installed: pip install -e ".[hub]"', allow_module_level=True)

from gald import hub  # noqa: E402

# small settings per builder, so each round trip takes about a second on a CPU
SMALL = {"gald_tiny": {"widths": (8, 8, 16, 16), "head_channels": 16, "aux_channels": 8}}
DETECTOR = {"min_size": 64, "max_size": 96}


def _outputs(model, x):
    with torch.no_grad():
        if hasattr(model, "roi_heads"):  # a detector: a list of images in, a list of dicts out
            return [{k: v for k, v in d.items()} for d in model([x[0]])]
        return model(x)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b))
    return torch.equal(a, b)


def test_list_and_get_models_by_name():
    names = list_models()
    assert {"gald_tiny", "gald_resnet50", "gald_resnet101", "mask_rcnn_resnet50_fpn_gald"} <= set(names)
    assert names == sorted(list_models(task="segmentation") + list_models(task="detection"))
    model = get_model("gald_tiny", num_classes=5, **SMALL["gald_tiny"])
    assert model.num_classes == 5 and model.config["arch"] == "gald_tiny"
    with pytest.raises(KeyError, match=r"model must be one of \[.*'gald_resnet50'.*\], got 'unet'"):
        get_model("unet")
    with pytest.raises(TypeError, match="valid options"):
        get_model("gald_tiny", colour="red")


@pytest.mark.timeout(240)
# Every host network goes through the same code (gald.models.hosts): the smallest stands for them
# here, for CI time; each builds (on the meta device) in tests/test_hosts.py.
@pytest.mark.parametrize("name", [n for n in list_models() if n not in HOST_ARCHS or n == "lraspp_mobilenet_v3_large"])
def test_every_model_round_trips_through_a_pretrained_folder(name, tmp_path):
    torch.manual_seed(0)
    kwargs = {"num_classes": 3, **SMALL.get(name, {}), **(DETECTOR if "rcnn" in name else {})}
    model = get_model(name, **kwargs).eval()
    folder = hub.save_pretrained(model, tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = hub.from_pretrained(folder)
    x = torch.rand(1, 3, 64, 96)
    assert _same(_outputs(model, x), _outputs(again, x))
    assert again.pretrained["arch"] == name and len(again.pretrained["classes"]) == (2 if "rcnn" in name else 3)


def test_a_training_checkpoint_becomes_a_carded_folder(tmp_path):
    folder = hub.save_pretrained(SHIPPED, tmp_path / "shipped")
    info = json.loads((folder / "config.json").read_text())
    record = torch.load(SHIPPED, weights_only=True)
    assert info["classes"] == record["classes"] and info["metrics"] == record["metrics"]
    card = (folder / "README.md").read_text()
    assert "| 0 | road |" in card and "ImageNet mean/std" in card
    assert f"| mIoU | {record['metrics']['mIoU']:.2f} |" in card
    assert "python -m gald.train" in card and "python -m gald.evaluate --checkpoint runs/<name>/model.pt" in card
    assert "license:" not in card  # the weights' terms are not ours to guess
    assert ("LD's masks are replaced" in card) == bool(record.get("ld_effect"))
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(hub.from_pretrained(folder)(x)["out"], load_model(SHIPPED).eval()(x)["out"])


def test_a_detector_card_numbers_classes_from_one(tmp_path):
    model = get_model("faster_rcnn_tiny_fpn_gald", num_classes=3, **DETECTOR)
    folder = hub.save_pretrained(model, tmp_path / "det", classes=["pole", "car"], license="mit")
    card = (folder / "README.md").read_text()
    assert "| 1 | pole |" in card and "| 2 | car |" in card  # label 0 is the background
    assert "license: mit" in card and "RGB tensors in [0, 1]" in card and "gald.evaluate" not in card


def test_push_to_hub_uploads_the_pretrained_folder(tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            seen["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            seen["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, *, folder_path, repo_id, commit_message):
            seen["files"] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
            return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = get_model("gald_tiny", num_classes=3, **SMALL["gald_tiny"])
    url = hub.push_to_hub(model, "me/gald-tiny", classes=["a", "b", "c"])
    assert url == "https://hub/me/gald-tiny/commit/1" and seen["repo"] == ("me/gald-tiny", False, True)
    assert sorted(seen["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads(seen["files"]["config.json"])["classes"] == ["a", "b", "c"]
    local = hub.save_pretrained(model, tmp_path / "same", classes=["a", "b", "c"])
    assert (local / "model.safetensors").read_bytes() == seen["files"]["model.safetensors"]


def test_bad_pretrained_folders_are_one_clear_line(tmp_path):
    model = get_model("gald_tiny", num_classes=3, **SMALL["gald_tiny"])
    folder = hub.save_pretrained(model, tmp_path / "ok")
    (folder / "model.safetensors").unlink()
    with pytest.raises(MissingFileError, match=r"ok is not a pretrained folder: model\.safetensors missing"):
        hub.from_pretrained(folder)
    with pytest.raises(MissingFileError, match="no such folder"):
        hub.from_pretrained(tmp_path / "absent" / "deeper")
    bad = hub.save_pretrained(model, tmp_path / "bad")
    info = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**info, "classes": ["a", "b"]}))
    with pytest.raises(CheckpointError, match=r"config\.json: 2 class names, but the weights have 3 classes"):
        hub.from_pretrained(bad)
    with pytest.raises(CheckpointError, match="class names"):
        hub.save_pretrained(model, tmp_path / "wrong", classes=["only one"])
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        hub.save_pretrained(model, folder)


def test_torch_hub_loads_the_builders_from_this_repository():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]  # as torch.hub.list
    assert sorted(entries) == list_models()
    model = torch.hub.load(str(ROOT), "gald_tiny", source="local", num_classes=4, **SMALL["gald_tiny"])
    assert model.num_classes == 4
