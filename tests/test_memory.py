"""gald.engine.memory: activation checkpointing of backbone stages is bit-exact, recomputes what its
policy says, and leaves the model's keys and eval behaviour alone."""

import copy

import pytest
import torch

from gald.engine.memory import activation_checkpointing, checkpointed_stages, set_activation_checkpointing
from gald.models import gald_tiny
from gald.models.backbones import tiny_resnet


@pytest.mark.parametrize("policy", ["full", "selective"])
@pytest.mark.parametrize("stages", [True, ("layer1", "layer3"), "layer4"])
def test_activation_checkpointing_is_bit_exact(stages, policy):
    """Same loss, gradients and BatchNorm statistics (updated once, not again by the recompute)."""
    plain = gald_tiny(num_classes=5, mode="official").train()
    ckpt = gald_tiny(num_classes=5, mode="official")
    assert set_activation_checkpointing(ckpt.backbone, stages, policy=policy) == checkpointed_stages(stages)
    ckpt.train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 121, 125)
    losses = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # the aux head's dropout
        out = model(x)
        loss = out["out"].square().mean() + 0.4 * out["aux"].square().mean()
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.equal(b, c), name
    assert int(ckpt.backbone.layer1[0].bn1.num_batches_tracked) == 1


@pytest.mark.parametrize("policy, recomputed", [("full", [1, 3, 1, 1]), ("selective", [1, 1, 1])])
def test_checkpoint_policy_decides_what_the_backward_recomputes(policy, recomputed):
    """"full" reruns every convolution of a block in backward; "selective" replays the saved 3×3
    outputs and reruns only the 1×1 convolutions."""
    from torch.utils._python_dispatch import TorchDispatchMode

    net = tiny_resnet(depths=(1, 1, 1, 1)).train()
    set_activation_checkpointing(net, ("layer4",), policy=policy)
    loss = net(torch.randn(1, 3, 33, 35))["layer4"].square().mean()
    kernels = []

    class ConvCalls(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                kernels.append(args[1].shape[-1])
            return func(*args, **(kwargs or {}))

    with ConvCalls():
        loss.backward()
    assert kernels == recomputed  # conv1, conv2 (3×3), conv3, downsample
    with pytest.raises(ValueError, match="checkpoint_policy.*selective"):
        set_activation_checkpointing(net, ("layer4",), policy="some")


def test_activation_checkpointing_names_stages_and_is_off_in_eval():
    net = tiny_resnet()
    assert activation_checkpointing(net) == ((), None)
    set_activation_checkpointing(net, True)
    assert activation_checkpointing(net) == (("layer1", "layer2", "layer3", "layer4"), "full")
    set_activation_checkpointing(net, ["layer3", "layer2"], policy="selective")
    assert activation_checkpointing(net) == (("layer2", "layer3"), "selective")
    with pytest.raises(ValueError, match="layer5.*valid"):
        set_activation_checkpointing(net, ("layer5",))
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 33, 35))["layer4"].shape[1] == 256


def test_checkpointing_keeps_the_state_dict_and_survives_copies_and_switching_off():
    net = tiny_resnet()
    keys = list(net.state_dict())
    set_activation_checkpointing(net, ("layer2", "layer4"))
    assert list(net.state_dict()) == keys
    twin = copy.deepcopy(net)
    assert activation_checkpointing(twin) == (("layer2", "layer4"), "full")
    # the copy's wrappers run the copy's blocks, not the original's
    assert all(b.forward.block is b for b in twin.layer4)
    set_activation_checkpointing(net, False)
    assert activation_checkpointing(net) == ((), None)
    assert activation_checkpointing(twin) == (("layer2", "layer4"), "full")
