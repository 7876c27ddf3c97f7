import torch
from torch import nn

from gald.analysis import cue_twins, effective_receptive_field, erf_sky_share


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
