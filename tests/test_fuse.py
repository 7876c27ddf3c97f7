"""The inference path (BN folding, channels-last) computes the same function and leaves the model alone."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import FrozenBatchNorm2d

from gald.deploy.fuse import count_batch_norms, fuse_conv_bn, optimize_for_inference
from gald.models import ARRANGEMENTS, GA_MODULES, gald_resnet50, gald_tiny

# Odd sizes; official mode's unpadded depth-wise convs need >= 15x15 features (inputs of ~120 px).
SIZES = {"paper": (45, 67), "official": (121, 131)}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking norms, so that folding has something to fold and every branch contributes
    (the NL/CGNL residual branches start at zero scale)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("block", ARRANGEMENTS)
@pytest.mark.parametrize("ga", sorted(GA_MODULES))
def test_folding_keeps_outputs_for_every_variant(ga, block, mode):
    model = _randomise(gald_tiny(num_classes=5, ga=ga, block=block, mode=mode, stage_classifiers=True)).eval()
    fused = fuse_conv_bn(model)
    assert count_batch_norms(model) > 0 and count_batch_norms(fused) == 0
    x = torch.randn(2, 3, *SIZES[mode])
    with torch.no_grad():
        ref, out = model.inspect(x), fused.inspect(x)
    for key, value in ref.items():
        if value is None:
            assert out[key] is None, key
        else:
            torch.testing.assert_close(out[key], value, atol=1e-4, rtol=1e-4, msg=key)
    assert ref["out"].abs().max() > 0.1  # a non-trivial output, so the comparison means something


def test_original_model_is_untouched():
    model = _randomise(gald_tiny(num_classes=5, mode="official")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_params = sum(p.numel() for p in model.parameters())
    fused = fuse_conv_bn(model)
    assert model.training and not fused.training
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.state_dict().keys() == before.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in fused.parameters())
    # BatchNorm gone, its affine folded into conv biases: fewer parameters in the copy.
    assert sum(p.numel() for p in fused.parameters()) < n_params


def test_optimize_for_inference_channels_last_same_outputs():
    model = _randomise(gald_tiny(num_classes=5, mode="official")).eval()
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 125, 139)
    with torch.inference_mode():
        ref, out = model(x)["out"], fast(x)["out"]
    assert fast.backbone.layer1[0].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert out.shape == ref.shape == (1, 5, 125, 139)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    plain = optimize_for_inference(model, fuse=False, channels_last=False)
    assert count_batch_norms(plain) == count_batch_norms(model)


def test_frozen_batch_norm_is_folded_too():
    model = gald_tiny(num_classes=3, norm_layer=FrozenBatchNorm2d, ga="psp").eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    fused = fuse_conv_bn(model)
    assert count_batch_norms(fused) == 0
    x = torch.randn(1, 3, 47, 53)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)["out"], model(x)["out"], atol=1e-4, rtol=1e-4)


def test_norm_without_running_statistics_is_a_clear_error():
    model = gald_tiny(num_classes=3, norm_layer=lambda c: nn.BatchNorm2d(c, track_running_stats=False))
    with pytest.raises(ValueError, match="track_running_stats"):
        fuse_conv_bn(model)


def test_folding_changes_no_flops():
    def flops(fuse: bool) -> int:
        with torch.device("meta"):
            model = gald_resnet50(num_classes=19, mode="official", aux=False).eval()
            model = fuse_conv_bn(model) if fuse else model
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(torch.empty(1, 3, 129, 129))
        return counter.get_total_flops()

    assert flops(True) == flops(False) > 0
