import pytest
import torch
from torch import nn

from gald.models import GA_MODULES, CGNL2d, GlobalAggregation, NonLocal2d, build_ga, get_ga


@pytest.mark.parametrize("name", sorted(GA_MODULES))
@pytest.mark.parametrize("size", [(9, 13), (1, 1), (6, 5)])
def test_ga_keeps_shape(name, size):
    ga = build_ga(name, 16).train()
    x = torch.randn(2, 16, *size)
    assert ga(x).shape == x.shape


@pytest.mark.parametrize("cls", [NonLocal2d, CGNL2d])
def test_residual_blocks_are_identity_at_init(cls):
    block = cls(16).eval()
    x = torch.randn(2, 16, 7, 9)
    torch.testing.assert_close(block(x), x)


def _cgnl_reference(block: CGNL2d, x: torch.Tensor) -> torch.Tensor:
    """The authors' formulation: a Python loop of bmm's over groups."""
    t, p, g = block.t(x), block.p(x), block.g(x)
    b, c, h, w = t.shape
    cg = c // block.groups
    outs = []
    for ti, pi, gi in zip(t.split(cg, 1), p.split(cg, 1), g.split(cg, 1)):
        att = torch.bmm(pi.reshape(b, 1, -1), gi.reshape(b, -1, 1))
        if block.use_scale:
            att = att / (cg * h * w) ** 0.5
        outs.append(torch.bmm(att, ti.reshape(b, 1, -1)).view(b, cg, h, w))
    return block.norm(block.z(torch.cat(outs, 1))) + x


@pytest.mark.parametrize("use_scale", [False, True])
def test_cgnl_vectorised_groups_match_loop(use_scale):
    block = CGNL2d(32, groups=4, use_scale=use_scale, zero_init=False).eval()
    x = torch.randn(2, 32, 5, 7)
    torch.testing.assert_close(block(x), _cgnl_reference(block, x), rtol=1e-5, atol=1e-5)


def test_cgnl_default_norm_is_group_norm():
    assert isinstance(CGNL2d(16).norm, nn.GroupNorm)
    assert isinstance(CGNL2d(16, norm_layer=nn.BatchNorm2d).norm, nn.BatchNorm2d)


def test_cgnl_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="divisible by groups"):
        CGNL2d(12, groups=8)


def test_nonlocal_matches_explicit_softmax():
    block = NonLocal2d(8, use_scale=False).eval()
    nn.init.ones_(block.norm.weight)
    x = torch.randn(1, 8, 4, 5)
    q = block.theta(x).flatten(2).transpose(1, 2)
    k = block.phi(x).flatten(2)
    v = block.g(x).flatten(2).transpose(1, 2)
    y = (q @ k).softmax(-1) @ v
    expected = x + block.norm(block.out(y.transpose(1, 2).reshape(1, -1, 4, 5)))
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_unknown_ga_lists_names():
    with pytest.raises(KeyError) as err:
        get_ga("danet")
    for name in GA_MODULES:
        assert name in str(err.value)


def test_get_ga_passes_classes_through():
    assert get_ga(CGNL2d) is CGNL2d


@pytest.mark.parametrize("padding", [True, False])
def test_global_aggregation_downsamples_then_restores_size(padding):
    ga = GlobalAggregation(16, ga="cgnl", padding=padding)
    seen = {}
    ga.ga.register_forward_pre_hook(lambda m, i: seen.update(shape=i[0].shape))
    x = torch.randn(2, 16, 15, 12)
    assert ga(x).shape == x.shape
    assert tuple(seen["shape"][-2:]) == ((8, 6) if padding else (7, 5))


def test_global_aggregation_without_downsampling():
    ga = GlobalAggregation(16, ga="nl", downsample=False).eval()
    x = torch.randn(1, 16, 5, 5)
    torch.testing.assert_close(ga(x), x)  # NL is the identity at init and nothing is resized


def test_unpadded_downsampling_rejects_tiny_maps():
    ga = GlobalAggregation(16, padding=False)
    with pytest.raises(ValueError, match="smaller than 3x3"):
        ga(torch.randn(2, 16, 2, 9))
