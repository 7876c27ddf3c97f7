"""gald.deploy.ort: ONNX Runtime as a backend of Predictor, gald.predict and the app."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from gald.config import UnknownChoiceError
from gald.data.synthetic import make_scene
from gald.deploy.ort import OnnxRuntimeModel
from gald.engine.inference import TestProtocol, infer
from gald.engine.predictor import load_predictor


@pytest.fixture(scope="module")
def shipped():
    return load_predictor()


@pytest.fixture(scope="module")
def ort_predictor():
    return load_predictor().use_backend("onnxruntime")


def test_the_onnxruntime_model_answers_like_the_network(shipped, ort_predictor):
    runner = ort_predictor.runner
    assert isinstance(runner, OnnxRuntimeModel) and ort_predictor.backend == "onnxruntime"
    x = torch.randn(2, 3, 97, 131, generator=torch.Generator().manual_seed(0))  # odd sizes: dynamic shapes
    with torch.inference_mode():
        ours, theirs = runner(x)["out"], shipped.model(x)["out"]
    assert ours.shape == theirs.shape == (2, 9, 97, 131)
    assert float((ours - theirs).abs().max()) < 1e-4


def test_the_backends_predict_the_same_labels(shipped, ort_predictor):
    image = make_scene(0, 4, split="val").image
    torch_labels, ort_labels = shipped.predict(image), ort_predictor.predict(image)
    assert (torch_labels == ort_labels).mean() > 0.999
    slide = TestProtocol(mode="slide", crop_size=(64, 96), stride=(32, 64), flip=True, blend="gaussian")
    windows = [infer(m, shipped.tensor(image), slide)["out"] for m in (shipped.model, ort_predictor.runner)]
    assert float((windows[0] - windows[1]).abs().max()) < 1e-4  # the protocols run on it unchanged


def test_use_backend_checks_and_switches_back(shipped):
    predictor = dataclasses.replace(shipped)
    with pytest.raises(UnknownChoiceError, match="backend"):
        predictor.use_backend("tensorrt")
    assert predictor.use_backend("torch").backend == "torch" and predictor.runner is None


def test_predict_cli_with_onnxruntime_writes_the_torch_labels(tmp_path):
    from gald.predict import main

    Image.fromarray(make_scene(0, 5, split="val").image).save(tmp_path / "scene.png")
    for backend in ("torch", "onnxruntime"):
        assert main([str(tmp_path / "scene.png"), "--out", str(tmp_path / backend), "--backend", backend,
                     "--no-progress"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / k / "scene_label.png")) for k in ("torch", "onnxruntime"))
    assert a.shape == (128, 256) and (a == b).mean() > 0.999


def test_the_app_predicts_with_the_backend(ort_predictor):
    from gald.viz import views

    image = make_scene(0, 4, split="val").image
    analysis = views.analyze(ort_predictor, image)
    assert (analysis["labels"] == ort_predictor.predict(image)).all()
    assert analysis["mask"] is not None  # the views still come from the PyTorch model
