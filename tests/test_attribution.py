"""gald.attribution: Grad-CAM at the FCN / GA / GALD stages, checked against plain autograd."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

try:
    import captum  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise  # CI installs the app extra: a missing captum is a failure there
    pytest.skip("captum is not installed: pip install -e '.[app]'", allow_module_level=True)

from gald.attribution import ClassScore, grad_cam, stage_layer
from gald.models import gald_tiny

FEATURE = {"fcn": "F", "ga": "F_GA", "gald": "F_GALD"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return gald_tiny(num_classes=5, stage_classifiers=True).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 61, 83, generator=torch.Generator().manual_seed(1))


def _present_class(model, x) -> int:
    with torch.no_grad():
        pred = model(x)["out"].argmax(1)
    return int(torch.bincount(pred.flatten(), minlength=5).argmax())


def test_class_score_sums_logits_over_predicted_pixels(model, x):
    with torch.no_grad():
        out = model(x)["out"]
        scores = ClassScore(model)(x)
        every = ClassScore(model, region="all")(x)
    pred = out.argmax(1)
    for c in range(5):
        expected = (out[:, c] * (pred == c)).sum(dim=(1, 2))
        torch.testing.assert_close(scores[:, c], expected)
    torch.testing.assert_close(every, out.sum(dim=(2, 3)))
    with pytest.raises(ValueError, match="region"):
        ClassScore(model, region="boxes")


@pytest.mark.parametrize("stage", ["fcn", "ga", "gald"])
def test_grad_cam_equals_autograd_reference(model, x, stage):
    target = _present_class(model, x)
    attr = grad_cam(model, x, target, stage, relu=False, upsample=False)
    inter = model.inspect(x)
    act, out = inter[FEATURE[stage]], inter["out"]
    selected = F.one_hot(out.argmax(1), 5).permute(0, 3, 1, 2).to(out.dtype)
    (grad,) = torch.autograd.grad((out * selected).sum(dim=(2, 3))[:, target].sum(), act)
    reference = (grad.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1)
    assert attr.shape == reference.shape == (2, 8, 11)
    assert reference.abs().max() > 0  # the class is predicted: a non-trivial map
    torch.testing.assert_close(attr, reference.detach(), rtol=1e-4, atol=1e-5)


def test_grad_cam_upsampled_relu_and_finite(model, x):
    target = _present_class(model, x)
    attr = grad_cam(model, x, target, "gald")
    assert attr.shape == (2, 61, 83)
    assert torch.isfinite(attr).all() and (attr >= 0).all() and not attr.requires_grad


def test_grad_cam_of_an_absent_class_is_zero_unless_all_pixels(model, x):
    with torch.no_grad():
        counts = torch.bincount(model(x)["out"].argmax(1).flatten(), minlength=5)
    absent = int(torch.nonzero(counts == 0)[0]) if (counts == 0).any() else None
    if absent is None:
        pytest.fail("the fixture should leave one class unpredicted; change the seed")
    assert grad_cam(model, x, absent, "fcn", relu=False).abs().max() == 0
    assert grad_cam(model, x, absent, "fcn", relu=False, region="all").abs().max() > 0


def test_errors(model, x):
    with pytest.raises(ValueError, match=r"stage must be one of \['fcn', 'ga', 'gald'\]"):
        grad_cam(model, x, 0, "aux")
    with pytest.raises(IndexError, match="5 classes"):
        grad_cam(model, x, 5, "fcn")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        grad_cam(model, x[0], 0, "fcn")
    no_ga = gald_tiny(num_classes=3, block="ld").eval()
    with pytest.raises(ValueError, match="no GA stage"):
        stage_layer(no_ga, "ga")
    assert grad_cam(no_ga, x[:1], 0, "gald", region="all").shape == (1, 61, 83)
