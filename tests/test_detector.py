"""Faster / Mask R-CNN + FPN with GALD, NL, CGNL at C5 or P5 (gald.models.detector)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from gald.models.backbones import tiny_resnet
from gald.models.detector import (
    CONTEXTS,
    PLACEMENTS,
    ContextOnP5,
    ResidualGALD,
    build_context_block,
    context_block,
    build_detector,
    context_parameters,
    faster_rcnn_tiny_fpn_gald,
    mask_rcnn_tiny_fpn_gald,
    resnet_fpn_backbone,
)

TINY = dict(depths=(1, 1, 1, 1), widths=(4, 8, 8, 16), fpn_channels=16, representation_size=32, mask_channels=8,
            min_size=64, max_size=128, d=2)
BACKBONE = dict(backbone="tiny", depths=(1, 1, 1, 1), widths=(4, 8, 8, 16), fpn_channels=16, d=2)


def _batch(masks: bool):
    images = [torch.rand(3, 67, 91), torch.rand(3, 71, 83)]
    targets = []
    for im in images:
        t = {"boxes": torch.tensor([[5.0, 7.0, 30.0, 40.0], [40.0, 10.0, 60.0, 25.0]]), "labels": torch.tensor([1, 3])}
        if masks:
            m = torch.zeros(2, *im.shape[-2:], dtype=torch.uint8)
            m[0, 7:40, 5:30] = 1
            m[1, 10:25, 40:60] = 1
            t["masks"] = m
        targets.append(t)
    return images, targets


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("builder", [faster_rcnn_tiny_fpn_gald, mask_rcnn_tiny_fpn_gald])
def test_forward_backward_every_variant(builder, context, placement):
    model = builder(num_classes=4, context=context, placement=placement, zero_init=False, **TINY)
    images, targets = _batch(masks=builder is mask_rcnn_tiny_fpn_gald)
    model.train()
    losses = model(images, targets)
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    if builder is mask_rcnn_tiny_fpn_gald:
        expected.add("loss_mask")
    assert set(losses) == expected
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    params = context_parameters(model)
    assert bool(params) == (context != "none")
    missing = [n for n, p in context_block(model.backbone).named_parameters() if p.grad is None] if params else []
    assert not missing, f"context parameters without gradient: {missing}"
    assert any(p.grad.abs().sum() > 0 for p in params) or not params
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4
    if builder is mask_rcnn_tiny_fpn_gald:
        assert out[0]["masks"].shape[-2:] == (67, 91)


@pytest.mark.parametrize("context", ["nl", "cgnl", "gald"])
def test_context_blocks_are_identity_at_init(context):
    block = build_context_block(context, 32, d=2).eval()
    x = torch.randn(2, 32, 9, 11)
    torch.testing.assert_close(block(x), x)
    block = build_context_block(context, 32, d=2, zero_init=False).eval()
    assert not torch.allclose(block(x), x)


def test_gald_parameters_receive_gradients_at_init():
    """Zero-initialised output scale: the scale itself learns first, so GALD is not dead at init."""
    block = ResidualGALD(32, d=2)
    block(torch.randn(2, 32, 9, 11)).square().sum().backward()
    assert block.norm.weight.grad.abs().sum() > 0


def test_c5_feeds_every_fpn_level_and_p5_only_the_coarsest():
    x = torch.rand(2, 3, 67, 91)
    outs = {}
    for placement in PLACEMENTS:
        torch.manual_seed(0)
        bb = resnet_fpn_backbone(context="gald", placement=placement, zero_init=False, **BACKBONE).eval()
        torch.manual_seed(0)
        base = resnet_fpn_backbone(context="none", placement=placement, **BACKBONE).eval()
        base.load_state_dict({k: v for k, v in bb.state_dict().items() if "layer4.1." not in k and "extra_blocks" not in k
                              }, strict=False)
        # the baseline's layer4 is the wrapped one's child 0
        base.body.layer4.load_state_dict(bb.body.layer4[0].state_dict() if placement == "c5" else bb.body.layer4.state_dict())
        with torch.no_grad():
            outs[placement] = (bb(x), base(x))
    with_c5, base_c5 = outs["c5"]
    assert list(with_c5) == ["0", "1", "2", "3", "pool"]
    assert not torch.allclose(with_c5["0"], base_c5["0"])  # the top-down pathway carries GALD to P2
    with_p5, base_p5 = outs["p5"]
    torch.testing.assert_close(with_p5["0"], base_p5["0"])  # P5 placement leaves the finer levels alone
    assert not torch.allclose(with_p5["3"], base_p5["3"])
    assert with_p5["pool"].shape[-1] == (with_p5["3"].shape[-1] + 1) // 2


def test_p5_uses_an_extra_fpn_block_and_c5_wraps_layer4():
    bb = resnet_fpn_backbone(context="cgnl", placement="p5", **BACKBONE)
    assert isinstance(bb.fpn.extra_blocks, ContextOnP5)
    bb = resnet_fpn_backbone(context="nl", placement="c5", **BACKBONE)
    assert isinstance(bb.body.layer4, nn.Sequential) and bb.body.layer4[1] is context_block(bb)


def test_trainable_layers_freeze_the_trunk_but_never_the_new_block():
    bb = resnet_fpn_backbone(context="gald", trainable_backbone_layers=1, **BACKBONE)
    trainable = {n for n, p in bb.body.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer4") for n in trainable)
    assert all(p.requires_grad for p in context_block(bb).parameters())
    assert all(p.requires_grad for p in bb.body.layer4.parameters())
    bb = resnet_fpn_backbone(context="gald", trainable_backbone_layers=0, **BACKBONE)
    assert all(p.requires_grad for p in context_block(bb).parameters())
    assert not any(p.requires_grad for n, p in bb.body.named_parameters() if n.startswith("layer4.0"))
    bb = resnet_fpn_backbone(context="gald", **BACKBONE)  # no pretrained weights: everything trains
    assert all(p.requires_grad for p in bb.parameters())


def test_local_backbone_weights_use_frozen_batchnorm(tmp_path):
    trunk = tiny_resnet(depths=(1, 1, 1, 1), widths=(4, 8, 8, 16), output_stride=32)
    path = tmp_path / "trunk.pt"
    torch.save(trunk.state_dict(), path)
    bb = resnet_fpn_backbone(context="gald", weights_backbone=str(path), **BACKBONE)
    assert isinstance(bb.body.bn1, FrozenBatchNorm2d)
    torch.testing.assert_close(bb.body.conv1.weight, trunk.conv1.weight)
    assert not bb.body.conv1.weight.requires_grad  # default: 3 trainable stages with pretrained weights
    assert bb.body.layer2[0].conv1.weight.requires_grad


def test_build_detector_keeps_config_and_rejects_bad_names():
    model = build_detector({"arch": "faster_rcnn_tiny_fpn_gald", "num_classes": 3, "context": "cgnl", **TINY})
    assert model.config["arch"] == "faster_rcnn_tiny_fpn_gald" and model.config["context"] == "cgnl"
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    with pytest.raises(KeyError, match="detector arch must be one of .*got 'yolo'"):
        build_detector({"arch": "yolo"})
    with pytest.raises(ValueError, match="context must be one of .*got 'aspp'"):
        faster_rcnn_tiny_fpn_gald(context="aspp", **TINY)
    with pytest.raises(ValueError, match="placement must be one of .*got 'c4'"):
        faster_rcnn_tiny_fpn_gald(placement="c4", **TINY)
    with pytest.raises(ValueError, match="background"):
        faster_rcnn_tiny_fpn_gald(num_classes=1, **TINY)


def test_images_without_objects_train_as_negatives():
    model = mask_rcnn_tiny_fpn_gald(num_classes=3, **TINY).train()
    images = [torch.rand(3, 65, 77)] * 2
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 65, 77, dtype=torch.uint8)}] * 2
    losses = model(images, targets)
    assert torch.isfinite(sum(losses.values()))
    assert losses["loss_box_reg"] == 0 and losses["loss_mask"] == 0


def test_resnet50_gald_sits_on_the_2048_channel_c5():
    model = build_detector({"arch": "faster_rcnn_resnet50_fpn_gald", "num_classes": 21})
    block = context_block(model.backbone)
    assert isinstance(block, ResidualGALD) and block.proj.in_channels == 2048
    assert model.backbone.body.layer4[1] is block and model.backbone.out_channels == 256
    base = build_detector({"arch": "faster_rcnn_resnet50_fpn_gald", "num_classes": 21, "context": "none"})
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in base.parameters())


def test_context_block_is_found_in_both_places_and_not_duplicated_in_the_state_dict():
    assert context_block(resnet_fpn_backbone(context="none", **BACKBONE)) is None
    p5 = resnet_fpn_backbone(context="gald", placement="p5", **BACKBONE)
    assert context_block(p5) is p5.fpn.extra_blocks.block
    c5 = resnet_fpn_backbone(context="gald", **BACKBONE)
    keys = list(c5.state_dict())
    assert any(k.startswith("body.layer4.1.") for k in keys) and len(keys) == len(set(keys))
    assert sum(k.startswith("body.layer4.1.") for k in keys) == len(context_block(c5).state_dict())
