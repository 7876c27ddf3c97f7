"""NNPACK execution of wide 3×3 convolutions: same function and gradients, shared parameters, safe fallbacks."""

import copy

import pytest
import torch
from test_fuse import SIZES, _randomise
from torch import nn
from torch.nn import functional as F

from gald.deploy import nnpack as nnp
from gald.deploy.fuse import optimize_for_inference
from gald.deploy.nnpack import (
    NNPACKConv2d,
    convert_to_nnpack,
    nnpack_available,
    nnpack_eligible,
)
from gald.models import gald_tiny


def _close(actual, expected, *, scale_tol=1e-4):
    # Fast-convolution transforms round differently from a direct convolution: compare to the scale.
    err = (actual - expected).abs().max().item()
    assert err <= scale_tol * expected.abs().max().item(), err


def test_nnpack_is_available_in_the_pinned_torch():
    # CI's torch wheel (x86-64) ships NNPACK; without it every test below would only test the fallback.
    assert nnpack_available()


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_the_direct_convolution(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=bias)
    fast = NNPACKConv2d.from_conv(conv)
    x = torch.randn(2, 5, 13, 11, requires_grad=True)
    y = fast(x)
    assert "NNPACK" in y.grad_fn.name()  # the NNPACK path ran, not the fallback
    ref = conv(x)
    _close(y, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(y, [x, *conv.parameters()], g)
    ref_grads = torch.autograd.grad(ref, [x, *conv.parameters()], g)
    assert len(grads) == (3 if bias else 2)
    for a, b in zip(grads, ref_grads):
        _close(a, b)


def test_channels_last_input_and_inference_mode():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1).eval()
    fast = NNPACKConv2d.from_conv(conv)
    x = torch.randn(1, 6, 9, 17).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        _close(fast(x), conv(x))


def test_from_conv_shares_parameters_and_state_dict_keys():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    fast = NNPACKConv2d.from_conv(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    assert fast.state_dict().keys() == conv.state_dict().keys()
    assert fast.training == conv.training


@pytest.mark.parametrize(
    "kwargs",
    [{"padding": 2, "dilation": 2}, {"stride": 2, "padding": 1}, {"padding": 0}, {"padding": 1, "groups": 2}],
)
def test_ineligible_convolutions_are_refused(kwargs):
    conv = nn.Conv2d(4, 4, 3, **kwargs)
    assert not nnpack_eligible(conv, min_channels=0)
    with pytest.raises(ValueError, match="3×3, stride-1"):
        NNPACKConv2d.from_conv(conv)
    assert not nnpack_eligible(nn.Conv2d(4, 4, 1), min_channels=0)
    assert not nnpack_eligible(nn.Conv2d(4, 8, 3, padding=1), min_channels=5)  # min(in, out) counts


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_converted_model_keeps_outputs_parameters_and_training(mode):
    model = _randomise(gald_tiny(num_classes=5, mode=mode)).eval()
    ref_model = copy.deepcopy(model)
    n_params = sum(p.numel() for p in model.parameters())
    convert_to_nnpack(model, min_channels=16)
    converted = [n for n, m in model.named_modules() if isinstance(m, NNPACKConv2d)]
    eligible = [n for n, m in ref_model.named_modules() if nnpack_eligible(m, min_channels=16)]
    assert converted == eligible and {"head.conva.0", "head.convb.0", "aux_head.0.0"} <= set(converted), converted
    # the dilated and strided convolutions of the trunk stay ordinary convolutions
    dilated = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d) and m.dilation != (1, 1)]
    assert dilated and not any(isinstance(m, NNPACKConv2d) for m in dilated)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.state_dict().keys() == ref_model.state_dict().keys()

    x = torch.randn(2, 3, *SIZES[mode])
    with torch.no_grad():
        _close(model(x)["out"], ref_model(x)["out"])

    model.train(), ref_model.train()
    target = torch.randint(0, 5, (2, *SIZES[mode]))
    losses = []
    for m in (model, ref_model):
        torch.manual_seed(1)  # the same dropout masks
        out = m(x)
        loss = F.cross_entropy(out["out"], target) + 0.4 * F.cross_entropy(out["aux"], target)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-4, rtol=1e-4)
    fast_grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    ref_grads = torch.cat([p.grad.flatten() for p in ref_model.parameters() if p.grad is not None])
    # Per convolution the gradients agree to ~3e-6 (test above). Official mode's tiny model is
    # ill-conditioned: 4e-6 of random noise on the head convs' outputs alone moves its gradients by
    # ~1e-2 (measured), so only paper mode can take a tight whole-model bound.
    tol = 1e-4 if mode == "paper" else 1e-2
    assert ((fast_grads - ref_grads).norm() / ref_grads.norm()).item() < tol


def test_optimize_for_inference_nnpack_lever():
    model = _randomise(gald_tiny(num_classes=5, mode="official", head_channels=32)).eval()
    fast = optimize_for_inference(model, nnpack=True)
    assert not any(isinstance(m, NNPACKConv2d) for m in model.modules())  # the original is untouched
    x = torch.randn(1, 3, *SIZES["official"])
    with torch.inference_mode():
        ref = model(x)["out"]
        # the tiny head (32 channels) is under the default width, so nothing was swapped...
        assert not any(isinstance(m, NNPACKConv2d) for m in fast.modules())
        # ...and converting its head explicitly keeps the output
        convert_to_nnpack(fast, min_channels=16)
        assert any(isinstance(m, NNPACKConv2d) for m in fast.modules())
        _close(fast(x)["out"], ref)


def test_falls_back_where_nnpack_does_not_apply(monkeypatch):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    fast = NNPACKConv2d.from_conv(conv)
    x = torch.randn(1, 4, 7, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the ordinary (bf16) convolution
        assert fast(x).dtype == torch.bfloat16
    assert fast.double()(x.double()).dtype == torch.float64  # other dtypes: the ordinary convolution
    fast.float()
    traced = torch.jit.trace(fast, x)  # tracing records the ordinary convolution, exportable anywhere
    assert "aten::_convolution" in str(traced.graph) and "_nnpack_spatial" not in str(traced.graph)
    monkeypatch.setattr(nnp, "nnpack_available", lambda: False)
    y = fast(x)
    assert torch.equal(y, conv(x)) and y.grad_fn.name().startswith("Convolution")
