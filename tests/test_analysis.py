import numpy as np
import pytest
import torch
from torch import nn

from gald.experiments.analysis import context_probe, cue_twins, effective_receptive_field, erf_sky_share, ld_gate


class Local(nn.Module):
    """A 1x1 conv: each output pixel sees only its own input pixel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 9, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


class Global(Local):
    """Adds the image mean: every output pixel sees the whole image."""

    def forward(self, x):
        return {"out": self.conv(x) + self.conv(x).mean((2, 3), keepdim=True) * 5}


def test_erf_of_a_local_model_is_one_pixel():
    erf = effective_receptive_field(Local(), torch.randn(3, 16, 20), 5, 7)
    assert erf.shape == (16, 20)
    assert erf[5, 7] > 0 and erf.sum() == erf[5, 7]


def test_sky_share_separates_local_and_global_models():
    kw = dict(indices=range(2), size=(64, 128), points_per_image=2)
    assert erf_sky_share(Local(), **kw)["mean_sky_share"] == 0.0
    assert erf_sky_share(Global(), **kw)["mean_sky_share"] > 0.05


def test_cue_twins_of_a_cue_blind_model():
    res = cue_twins(Local(), indices=range(2), size=(64, 128), bins=(16, 32))
    assert res["same_in_both"] > 99.0  # the ground pixels are identical in both twins
    assert res["follows_cue"] == 0.0 and res["accuracy"] <= 50.0
    assert set(res["by_distance"]) <= {"16-32px", ">=32px"}


def test_context_probe_of_a_local_model_stays_at_the_pixel():
    model, image = Local(), torch.randn(3, 16, 20)
    probe = context_probe(model, image, 5, 7, far=3)
    with torch.no_grad():
        logits = model(image[None])["out"][0, :, 5, 7]
    top2 = logits.topk(2).indices.tolist()
    assert (probe["target"], probe["versus"]) == tuple(top2)
    assert abs(probe["margin"] - float(logits[top2[0]] - logits[top2[1]])) < 1e-5
    assert probe["field"].shape == (16, 20) and abs(float(probe["field"].sum()) - 1) < 1e-6
    assert probe["field"][5, 7] == probe["field"].max() and probe["far_share"] == 0.0
    assert all(p.grad is None for p in model.parameters())  # only the input's gradient is taken


def test_context_probe_of_a_global_model_reaches_far_and_takes_a_chosen_class():
    model, image = Global(), torch.randn(3, 16, 20)
    probe = context_probe(model, image, 0, 0, far=3)
    assert probe["far_share"] > 0.5  # most of a 16×20 image lies over 3 px from a corner
    other = next(c for c in range(9) if c not in (probe["target"], probe["versus"]))
    chosen = context_probe(model, image, 0, 0, versus=other)
    assert chosen["versus"] == other and chosen["target"] == probe["target"]
    assert chosen["margin"] > probe["margin"]  # the runner-up is the closest class
    assert context_probe(model, image, 0, 0, versus=probe["target"])["versus"] == probe["versus"]  # itself: runner-up
    with pytest.raises(ValueError, match="outside"):
        context_probe(model, image, 16, 0)


def test_ld_gate_reads_the_pixels_cell_per_channel_group():
    mask = torch.zeros(6, 2, 4)
    mask[:3, 1, 3] = 1.0  # the bottom-right cell of channels 0..2
    gate = ld_gate(mask, 15, 31, (16, 32), groups=2)  # the image's bottom-right pixel
    assert gate["cell"] == (1, 3) and gate["channels"] == [(0, 2), (3, 5)]
    np.testing.assert_allclose(gate["at_pixel"], [1.0, 0.0])
    np.testing.assert_allclose(gate["image_mean"], [1 / 8, 0.0])
    assert len(ld_gate(mask, 0, 0, (16, 32), groups=100)["channels"]) == 6  # at most one group per channel
    with pytest.raises(ValueError, match="C, h, w"):
        ld_gate(mask[0], 0, 0, (16, 32))


def test_erf_of_one_logit_and_of_a_pair():
    image = torch.randn(3, 8, 9)
    one = effective_receptive_field(Global(), image, 2, 3, classes=(4,))
    pair = effective_receptive_field(Global(), image, 2, 3, classes=(4, 5))
    assert one.shape == pair.shape == (8, 9) and not torch.equal(one, pair)
    with pytest.raises(ValueError, match="one class or a pair"):
        effective_receptive_field(Global(), image, 2, 3, classes=(1, 2, 3))
