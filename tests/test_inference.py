"""Test-time protocol: windows cover the image, and slide / flip / tile batching / scales average correctly."""

import pytest
import torch
from torch import nn

from gald.inference import TestProtocol, infer, sliding_windows
from gald.models import gald_tiny


class Pointwise(nn.Module):
    """A 1×1 conv: translation- and flip-equivariant, so any window layout must reproduce the whole image."""

    align_corners = False

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return {"out": self.conv(x)}


@pytest.mark.parametrize("size,crop,stride", [((37, 53), (16, 20), (11, 14)), ((16, 20), (16, 20), (11, 14)), ((10, 60), (16, 20), (5, 7))])
def test_windows_cover_every_pixel_and_stay_inside(size, crop, stride):
    cover = torch.zeros(size)
    for y1, y2, x1, x2 in sliding_windows(size, crop, stride):
        assert 0 <= y1 < y2 <= size[0] and 0 <= x1 < x2 <= size[1]
        assert y2 - y1 == min(crop[0], size[0]) and x2 - x1 == min(crop[1], size[1])
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1


def test_default_stride_is_the_authors_third_overlap():
    assert TestProtocol(mode="slide", crop_size=(769, 769)).window_stride == (513, 513)


def test_sliding_windows_reproduce_the_whole_image_for_a_pointwise_model():
    net = Pointwise()
    x = torch.randn(2, 3, 37, 53)
    whole = infer(net, x)["out"]
    slide = infer(net, x, TestProtocol(mode="slide", crop_size=(16, 20), stride=(11, 14), tile_batch=3))["out"]
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=0)


def test_tiles_are_batched():
    net = Pointwise()
    x = torch.randn(2, 3, 37, 53)
    n_windows = len(sliding_windows((37, 53), (16, 20), (11, 14)))
    one = infer(net, x, TestProtocol(mode="slide", crop_size=(16, 20), stride=(11, 14), tile_batch=1))["out"]
    calls_one = net.calls
    net.calls = 0
    many = infer(net, x, TestProtocol(mode="slide", crop_size=(16, 20), stride=(11, 14), tile_batch=8))["out"]
    assert calls_one == 2 * n_windows and net.calls == -(-2 * n_windows // 8)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)


def test_flip_is_undone_before_averaging():
    net = Pointwise()
    x = torch.randn(1, 3, 21, 33)
    torch.testing.assert_close(infer(net, x, TestProtocol(flip=True))["out"], infer(net, x)["out"], atol=1e-5, rtol=0)


def test_flip_changes_a_model_that_is_not_flip_equivariant():
    torch.manual_seed(0)
    net = gald_tiny(num_classes=4, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8).eval()
    x = torch.randn(1, 3, 33, 47)
    plain = infer(net, x)["out"]
    flipped = infer(net, x.flip(-1))["out"].flip(-1)
    torch.testing.assert_close(infer(net, x, TestProtocol(flip=True))["out"], (plain + flipped) / 2, atol=1e-5, rtol=1e-5)


def test_multiscale_returns_full_resolution_and_probs_sum_to_one():
    torch.manual_seed(0)
    net = gald_tiny(num_classes=4, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8).eval()
    x = torch.randn(2, 3, 45, 61)
    protocol = TestProtocol(mode="auto", crop_size=(33, 33), scales=(0.5, 1.25), flip=True, average="probs")
    out = infer(net, x, protocol)["out"]
    assert out.shape == (2, 4, 45, 61)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 45, 61), atol=1e-5, rtol=0)
    # scale 1.0 listed twice averages to the single-scale result
    torch.testing.assert_close(infer(net, x, TestProtocol(scales=(1.0, 1.0)))["out"], infer(net, x)["out"], atol=1e-5, rtol=0)


def test_stage_outputs_come_through_inspect_at_full_resolution():
    torch.manual_seed(0)
    net = gald_tiny(num_classes=3, widths=(8, 8, 16, 16), head_channels=16, aux_channels=8, stage_classifiers=True).eval()
    out = infer(net, torch.randn(1, 3, 41, 39), TestProtocol(mode="slide", crop_size=(25, 25)), keys=("out", "logits_fcn", "logits_ga"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, 3, 41, 39) for k in ("out", "logits_fcn", "logits_ga")}
    with pytest.raises(KeyError, match="no output 'nope'"):
        infer(net, torch.randn(1, 3, 41, 39), keys=("out", "nope"))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"mode": "tiles"}, "mode must be"), ({"mode": "slide"}, "needs crop_size"), ({"scales": (0.0,)}, "positive"),
     ({"average": "max"}, "average"), ({"mode": "slide", "crop_size": (0, 5)}, "two positive")],
)  # fmt: skip
def test_bad_protocols_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TestProtocol(**kwargs)


class TilePosition(nn.Module):
    """Outputs, at each pixel of its input, that pixel's row and column inside the input (its tile):
    a network whose output depends on where a pixel sits in its window, so the blending weights show."""

    align_corners = False

    def forward(self, x):
        n, _, h, w = x.shape
        rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(n, 1, h, w)
        cols = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(n, 1, h, w)
        return {"out": torch.cat([rows, cols], 1)}


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
def test_overlapping_windows_are_blended_with_the_stated_weights(blend):
    import numpy as np

    crop, stride, size = (8, 10), (5, 6), (17, 23)
    got = infer(TilePosition(), torch.zeros(1, 3, *size), TestProtocol(mode="slide", crop_size=crop, stride=stride,
                                                                       blend=blend))["out"][0].numpy()
    # independently: a weighted sum over windows of each pixel's position inside the window
    def weight(length: int) -> np.ndarray:
        d = np.arange(length) - (length - 1) / 2
        return np.ones(length) if blend == "mean" else np.exp(-(d**2) / (2 * (length / 8) ** 2))

    total, weights = np.zeros((2, *size)), np.zeros(size)
    for y1, y2, x1, x2 in sliding_windows(size, crop, stride):
        w = np.outer(weight(crop[0]), weight(crop[1]))[: y2 - y1, : x2 - x1]
        rows, cols = np.meshgrid(np.arange(y2 - y1), np.arange(x2 - x1), indexing="ij")
        total[0, y1:y2, x1:x2] += w * rows
        total[1, y1:y2, x1:x2] += w * cols
        weights[y1:y2, x1:x2] += w
    np.testing.assert_allclose(got, total / weights, rtol=1e-5, atol=1e-5)
    if blend == "gaussian":  # the weights matter: a uniform mean gives other values here
        mean = infer(TilePosition(), torch.zeros(1, 3, *size), TestProtocol(mode="slide", crop_size=crop,
                                                                            stride=stride))["out"][0].numpy()
        assert np.abs(mean - got).max() > 0.5


def test_a_checkpoint_states_its_test_protocol():
    from gald.engine.inference import checkpoint_protocol

    synthetic = {"config": {"train": {"dataset": "synthetic", "crop_size": [128, 256]}}}
    assert checkpoint_protocol(synthetic) == TestProtocol(mode="whole")
    city = checkpoint_protocol({"config": {"train": {"dataset": "cityscapes", "crop_size": [769, 769]}}})
    assert (city.mode, city.crop_size, city.window_stride, city.blend) == ("slide", (769, 769), (513, 513), "gaussian")
    official = checkpoint_protocol({"source": {"repository": "lxtGH/GALD-Net"}, "config": {"model": {}}})
    assert official.crop_size == (769, 769) and official.mode == "slide"
    recorded = {"test_protocol": {"mode": "slide", "crop_size": (65, 97), "blend": "mean"}, **synthetic}
    assert checkpoint_protocol(recorded) == TestProtocol(mode="slide", crop_size=(65, 97))
