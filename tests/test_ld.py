import math

import pytest
import torch
from torch import nn

from gald.models import LD_DOWNSAMPLING, LocalDistribution


@pytest.mark.parametrize("downsample", LD_DOWNSAMPLING)
@pytest.mark.parametrize("d", [2, 4, 8])
def test_mask_shape_and_range(downsample, d):
    ld = LocalDistribution(6, d=d, downsample=downsample).train()
    x = torch.randn(2, 6, 13, 11) * 5
    m = ld.mask(x)
    assert m.shape == x.shape
    assert m.min() >= 0 and m.max() <= 1


@pytest.mark.parametrize("downsample", LD_DOWNSAMPLING)
def test_forward_is_eq2(downsample):
    ld = LocalDistribution(6, downsample=downsample).eval()
    x = torch.randn(2, 6, 13, 11)
    m = ld.mask(x)
    torch.testing.assert_close(ld(x), m * x + x)


def test_dwconv_has_log2_d_depthwise_stride2_convs():
    ld = LocalDistribution(6, d=16)
    convs = [m for m in ld.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    assert all(c.groups == 6 and c.stride == (2, 2) and c.kernel_size == (3, 3) for c in convs)


@pytest.mark.parametrize("downsample", ["bilinear", "avgpool"])
def test_parameter_free_downsampling_has_no_parameters(downsample):
    ld = LocalDistribution(6, downsample=downsample)
    assert sum(p.numel() for p in ld.parameters()) == 0


def test_dwconv_is_learnable():
    assert sum(p.numel() for p in LocalDistribution(6).parameters()) > 0


def test_downsampled_size_is_input_over_d():
    x = torch.randn(1, 4, 17, 9)
    for mode in LD_DOWNSAMPLING:
        y = LocalDistribution(4, d=4, downsample=mode).downsample(x)
        assert y.shape[-2:] == (math.ceil(17 / 4), math.ceil(9 / 4)), mode


def test_paper_mask_spans_below_one_half_but_official_does_not():
    """Paper mode: no ReLU before the sigmoid, so M reaches below 0.5; the authors' ReLU keeps M >= 0.5."""
    x = torch.randn(2, 6, 32, 32) * 3
    paper = LocalDistribution(6).train()
    official = LocalDistribution(6, padding=False, bias=True, last_activation=True).train()
    assert paper.mask(x).min() < 0.5
    assert official.mask(x).min() >= 0.5


@pytest.mark.parametrize("d", [0, 1, 3, 6, 2.0])
def test_d_must_be_a_power_of_two(d):
    with pytest.raises(ValueError, match="power of two"):
        LocalDistribution(4, d=d)


def test_unknown_downsampling_lists_names():
    with pytest.raises(ValueError) as err:
        LocalDistribution(4, downsample="maxpool")
    for name in LD_DOWNSAMPLING:
        assert name in str(err.value)


def test_unpadded_convs_need_a_minimum_size():
    ld = LocalDistribution(4, d=8, padding=False).eval()
    assert ld.min_size() == 15
    assert ld.mask(torch.randn(1, 4, 15, 15)).shape[-2:] == (15, 15)
    with pytest.raises(ValueError, match="smaller than 15x15"):
        ld.mask(torch.randn(1, 4, 14, 40))


def test_last_norm_off_gives_the_last_conv_a_bias_and_nothing_before_the_sigmoid():
    ld = LocalDistribution(6, d=4, last_norm=False)
    last = ld.convs[-1]
    assert len(last) == 1 and last[0].bias is not None  # conv only: W_d F_GA goes straight into σ
    assert isinstance(ld.convs[0][1], nn.BatchNorm2d)  # hidden layers keep conv-norm-ReLU
    assert LocalDistribution(6, d=4).convs[-1][1].__class__ is nn.BatchNorm2d


def test_inits():
    x = torch.randn(2, 6, 17, 19)
    box = LocalDistribution(6, d=4, init="box")
    for block in box.convs:
        torch.testing.assert_close(block[0].weight, torch.full_like(block[0].weight, 1 / 9))
    zero = LocalDistribution(6, d=4, last_norm=False, init="zero").train()
    torch.testing.assert_close(zero.mask(x), torch.full_like(x, 0.5))
    with pytest.raises(ValueError, match="needs last_norm=False"):
        LocalDistribution(6, init="zero")
    with pytest.raises(ValueError, match="ld_init must be one of .*got 'xavier'"):
        LocalDistribution(6, init="xavier")
