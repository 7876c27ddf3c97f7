"""gald.plug on torchvision hosts, a ResNet backbone, a user's module tree and timm; inspection of plugged models."""

import ast
import copy
import io
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50, lraspp_mobilenet_v3_large

import gald
from gald.errors import GaldError, PlugError
from gald.ld_effect import ld_intervention
from gald.models import GALDInsert, LocalDistribution, gald_block, inspect, inserts, stage_classifiers, stage_layer
from gald.viz.attribution import grad_cam

K = 3
ODD = (37, 53)

HOSTS = {
    "deeplabv3_resnet50": (lambda: deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=K, aux_loss=True),
                           "backbone.layer4", 2048),
    "fcn_resnet50": (lambda: fcn_resnet50(weights=None, weights_backbone=None, num_classes=K), "backbone.layer4", 2048),
    "lraspp_mobilenet_v3_large": (lambda: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K),
                                  "backbone.16", 960),
}


class Tree(nn.Module):
    """A user's own network: a stem, two stages and a classifier, with a forward of its own."""

    def __init__(self, k: int = K) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stages = nn.ModuleDict({"a": nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
                                     "b": nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.ReLU())})
        self.classifier = nn.Sequential(nn.Conv2d(24, k, 1))

    def forward(self, x):
        y = self.stages["b"](self.stages["a"](self.stem(x)))
        return nn.functional.interpolate(self.classifier(y), size=x.shape[-2:], mode="bilinear")


@pytest.mark.parametrize("name", list(HOSTS))
def test_torchvision_hosts_with_and_without_gald(name):
    build, after, channels = HOSTS[name]
    torch.manual_seed(0)
    # batch statistics: at random initialisation MobileNetV3's eval-mode features are ~1e-9
    host = build().train()
    x = torch.rand(2, 3, *ODD)
    with torch.no_grad():
        plain = host(x)["out"]
    keys = set(host.state_dict())
    gald.plug(host, after=after, d=2)
    assert set(host.state_dict()) >= keys  # the host's keys unchanged, the block's added
    assert all(k.startswith("gald.") for k in set(host.state_dict()) - keys)
    assert host.gald.channels == channels and host.gald.after == after
    with torch.no_grad():
        plugged = host(x)["out"]
    assert plugged.shape == plain.shape == (2, K, *ODD)
    assert not torch.allclose(plugged, plain)  # the block is in the path


def test_the_identity_arrangement_leaves_the_host_unchanged():
    host = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K).train()
    x = torch.rand(2, 3, *ODD)  # batch statistics (see above)
    with torch.no_grad():
        before = host(x)["out"]
        gald.plug(host, after="backbone.16", arrangement="none", stage_classifiers=True)
        t = inspect(host, x)
    torch.testing.assert_close(t["out"], before, rtol=0, atol=0)
    assert t["M"] is None and t["F_GA"] is None and t["F"].shape[1] == 960
    assert set(stage_classifiers(host)) == {"logits_fcn"}


def test_a_training_step_reaches_the_block_and_keeps_the_host_aux():
    host = gald.plug(deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=K, aux_loss=True),
                     after="backbone.layer4", d=2).train()
    x, y = torch.rand(2, 3, *ODD), torch.randint(0, K, (2, *ODD))
    out = host(x)
    assert set(out) == {"out", "aux"}
    loss = nn.functional.cross_entropy(out["out"], y) + 0.4 * nn.functional.cross_entropy(out["aux"], y)
    loss.backward()
    ld = host.gald.block.ld.convs[0][0].weight.grad
    assert ld is not None and ld.abs().sum() > 0
    assert host.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_an_ld_reduced_to_one_cell_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="gald.models.plug"):
        gald.plug(resnet18(), after="layer4")  # 7×7 at 224 px, d = 8
    assert "d=8 reduces the 7x7 feature at 'layer4' (input 224x224) to one cell" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="gald.models.plug"):
        gald.plug(resnet18(), after="layer4", d=2)
    assert not caplog.text


def test_grad_cam_needs_a_segmentation_output():
    net = gald.plug(resnet18(), after="layer3", ga="nl", d=2).eval()
    with pytest.raises(ValueError, match=r"Grad-CAM explains a segmentation output \(N, K, H, W\); this model returns \(1, 1000\)"):
        grad_cam(net, torch.rand(1, 3, *ODD), target=0)


def test_a_resnet_backbone_and_a_users_module_tree():
    net = gald.plug(resnet18(), after="layer3", ga="nl", d=2).eval()
    assert net(torch.rand(1, 3, *ODD)).shape == (1, 1000)
    assert inspect(net, torch.rand(1, 3, *ODD))["F_GALD"].shape[1] == 256
    tree = gald.plug(Tree(), after="stages.a", ga="psp", d=2, stage_classifiers=True).eval()
    t = inspect(tree, torch.rand(2, 3, *ODD))
    assert t["out"].shape == (2, K, *ODD) and t["M"].shape == (2, 16, 10, 14)
    assert t["logits_fcn"].shape == t["logits_ga"].shape == (2, K, 10, 14)  # K read from the output


def test_a_sequential_root_runs_the_block_once():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    gald.plug(seq, after="1", ga="nl", d=2)
    x = torch.rand(1, 3, 9, 11)
    by_hand = seq[2](seq.gald.block(torch.relu(seq[0](x))))  # seq[1](...) would run the hook
    torch.testing.assert_close(seq(x), by_hand)


def test_timm_models_when_installed():
    timm = pytest.importorskip("timm")  # an optional extra (gald[plug]); CI installs it
    net = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(3, 4)).eval()
    gald.plug(net, after="layer4", d=2)
    feats = net(torch.rand(1, 3, *ODD))
    assert [f.shape[1] for f in feats] == [256, 512]
    assert inspect(net, torch.rand(1, 3, *ODD))["M"].shape[1] == 512
    # transformers: Swin's maps are channels-last at one fixed input size, a ViT's are tokens
    with torch.device("meta"):
        swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    with pytest.raises(PlugError, match=r"'layers.3' is \(1, 7, 7, 768\) for a square input: channels-last"):
        gald.plug(swin, after="layers.3", ga="nl", d=2)
    with pytest.raises(PlugError, match=r"'blocks.11' is \(1, 197, 192\): a sequence"):
        gald.plug(vit, after="blocks.11")


def test_gald_never_imports_timm():
    root = Path(gald.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "timm" for n in names), f"{path} imports timm (an optional extra)"


def test_the_tools_work_on_a_plugged_model():
    torch.manual_seed(0)
    net = gald.plug(Tree(), after="stages.a", ga="cgnl", d=2, ga_kwargs={"groups": 4}).eval()
    x = torch.rand(2, 3, *ODD)
    # the LD intervention reaches the plugged LD and changes the output only while open
    for m in net.modules():
        if isinstance(m, LocalDistribution):
            for conv in m.convs.modules():
                if isinstance(conv, nn.Conv2d):
                    conv.weight.data.mul_(40)
    with torch.no_grad():
        before = net(x)
        with ld_intervention(net, "zero"):
            zero = net(x)
        after = net(x)
    assert not torch.allclose(before, zero)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    # Grad-CAM at the three stages, on the plugged taps
    for stage in ("fcn", "ga", "gald"):
        layer, to_input = stage_layer(net, stage)
        assert not to_input and layer in set(net.gald.modules())
        cam = grad_cam(net, x, target=0, stage=stage, region="all")
        assert cam.shape == (2, *ODD) and torch.isfinite(cam).all()
    assert gald_block(net) is net.gald.block


def test_reading_m_and_the_stages_equals_running_the_block_by_hand():
    net = Tree().eval()
    captured = []
    net.stages["a"].register_forward_hook(lambda m, a, o: captured.append(o))  # before the plug's: sees F
    gald.plug(net, after="stages.a", ga="nl", d=2)
    x = torch.rand(1, 3, *ODD)
    t = inspect(net, x)
    f = captured[-1]
    torch.testing.assert_close(t["F"], f)
    f_ga = net.gald.block.ga(f)
    m = net.gald.block.ld.mask(f_ga)
    torch.testing.assert_close(t["M"], m)
    torch.testing.assert_close(t["F_GALD"], m * f_ga + f_ga)  # Eq. 2
    assert net.gald._record is None  # inspection leaves no state behind


def test_deepcopy_and_pickle_keep_the_block_in_the_path():
    net = gald.plug(Tree(), after="stages.a", ga="nl", d=2).eval()
    x = torch.rand(1, 3, *ODD)
    with torch.no_grad():
        ref = net(x)
        twin = copy.deepcopy(net)
        torch.testing.assert_close(twin(x), ref)
        twin.gald.block.ga.ga.norm.weight.data.fill_(3.0)  # the copy's hook runs the copy's block
        assert not torch.allclose(twin(x), ref)
        buffer = io.BytesIO()
        torch.save(net, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), ref)


def test_state_dict_round_trip_into_a_freshly_plugged_twin():
    torch.manual_seed(0)
    a = gald.plug(Tree(), after="stages.a", ga="nl", d=2).eval()
    torch.manual_seed(1)
    b = gald.plug(Tree(), after="stages.a", ga="nl", d=2).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, *ODD)
    torch.testing.assert_close(b(x), a(x))


def test_the_block_follows_the_models_mode_device_and_dtype():
    net = Tree().double().train()
    gald.plug(net, after="stages.b", ga="nl", d=2)
    assert net.gald.training and next(net.gald.parameters()).dtype == torch.float64
    assert net.training and net.stem[1].training  # the dry run ran in eval mode and put every mode back
    frozen = Tree().train()
    frozen.stem[1].eval()
    gald.plug(frozen, after="stages.b", ga="nl", d=2)
    assert not frozen.stem[1].training


# ---------------------------------------------------------------------------------------------- bad input


def test_an_unknown_insertion_point_lists_the_nearest_names():
    with pytest.raises(PlugError, match=r"no module 'backbone.layr4'; the nearest valid names: \['backbone.layer4'"):
        gald.plug(fcn_resnet50(weights=None, weights_backbone=None), after="backbone.layr4")
    with pytest.raises(PlugError, match=r"top-level modules are \['stem', 'stages', 'classifier'\]"):
        gald.plug(Tree(), after="encoder.block9")


def test_a_spatially_flat_output_is_refused_with_a_suggestion():
    with pytest.raises(PlugError, match=r"'avgpool' is \(1, 512, 1, 1\).*spatially flat.*e\.g\. 'layer4' \(512 × 7 × 7\)"):
        gald.plug(resnet18(), after="avgpool")
    with pytest.raises(PlugError, match=r"'fc' is \(1, 1000\), not a feature map"):
        gald.plug(resnet18(), after="fc")


def test_channels_the_ga_module_cannot_take_are_one_line():
    with pytest.raises(PlugError, match=r"cannot plug a GALD block \(GA 'cgnl', d=8\) after 'classifier' \(3 channels\): "
                                       r".*divisible by groups"):
        gald.plug(Tree(), after="classifier")
    with pytest.raises(GaldError, match=r"^ga must be one of"):
        gald.plug(Tree(), after="stages.a", ga="transformer")


def test_a_plugged_model_is_refused_unless_asked():
    net = gald.plug(Tree(), after="stages.a", ga="nl", d=2)
    with pytest.raises(PlugError, match=r"plugged already \(gald after 'stages.a'\); pass allow_multiple=True"):
        gald.plug(net, after="stages.b", ga="nl")
    gald.plug(net, after="stages.b", ga="nl", d=2, allow_multiple=True)
    assert list(inserts(net)) == ["gald", "gald_2"]
    assert all(isinstance(m, GALDInsert) for m in inserts(net).values())
    with pytest.raises(ValueError, match="2 GALD blocks"):
        inspect(net, torch.rand(1, 3, *ODD))
    for inside in ("gald", "gald.block.ga"):  # the blocks are not insertion points
        with pytest.raises(PlugError, match=f"'{inside}' is a plugged GALD block or inside one"):
            gald.plug(net, after=inside, allow_multiple=True)
    with pytest.raises(PlugError, match="after must be a module name"):
        gald.plug(Tree(), after=None)


def test_a_module_that_does_not_run_or_returns_no_tensor():
    class Unused(Tree):
        def __init__(self):
            super().__init__()
            self.spare = nn.ReLU()

    with pytest.raises(PlugError, match="'spare' did not run"):
        gald.plug(Unused(), after="spare")
    with pytest.raises(PlugError, match=r"dry run of the model on a \(1, 3, 224, 224\) input failed"):
        gald.plug(nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()), after="1")  # expects 4 image channels
    with pytest.raises(PlugError, match="stage_classifiers need num_classes"):
        gald.plug(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(0)), after="1", ga="nl", stage_classifiers=True)


def test_a_plugged_model_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from gald.deploy.export import export_onnx, onnx_max_abs_diff

    class Segmenter(Tree):  # returns {"out": ...} as the segmentation models do
        def forward(self, x):
            return {"out": super().forward(x)}

    net = gald.plug(Segmenter(), after="stages.a", ga="nl", d=2).eval()
    path = export_onnx(net, tmp_path / "plugged.onnx", example_size=(64, 96))
    assert onnx_max_abs_diff(net, path) < 1e-4  # the hook and the block are in the exported graph


def test_a_module_that_runs_more_than_once_is_refused():
    net = resnet18()  # a BasicBlock calls its one ReLU twice
    with pytest.raises(PlugError, match=r"'layer4.1.relu' runs 2 times in one forward pass"):
        gald.plug(net, after="layer4.1.relu")


def test_leaves_that_conversions_replace_are_refused():
    with pytest.raises(PlugError, match=r"'layer4.1.bn2' is a BatchNorm2d.*e\.g\. 'layer4.1'"):
        gald.plug(resnet18(), after="layer4.1.bn2")
    with pytest.raises(PlugError, match=r"'layer4.1.conv2' is a Conv2d"):
        gald.plug(resnet18(), after="layer4.1.conv2")


def test_a_channels_last_output_is_refused():
    class ChannelsLast(Tree):
        def __init__(self):
            super().__init__()
            self.to_nhwc = nn.Identity()

        def forward(self, x):
            y = self.to_nhwc(self.stages["a"](self.stem(x)).permute(0, 2, 3, 1))
            return self.classifier[0].weight.sum() + y.sum()

    with pytest.raises(PlugError, match=r"dim 1 of the output of 'to_nhwc' follows the input size \(56 at"):
        gald.plug(ChannelsLast(), after="to_nhwc")


def test_a_refusal_leaves_the_model_untouched():
    net = gald.plug(Tree(), after="stages.a", ga="nl", d=2).train()
    keys, hooks = list(net.state_dict()), {n: len(m._forward_hooks) for n, m in net.named_modules()}
    for after, kwargs in (("stages.b", {}), ("stages.b", {"allow_multiple": True, "ga_kwargs": {"groups": 5}}),
                          ("stem.1", {"allow_multiple": True}), ("nowhere", {"allow_multiple": True})):
        with pytest.raises(PlugError):
            gald.plug(net, after=after, **kwargs)
    assert list(net.state_dict()) == keys and {n: len(m._forward_hooks) for n, m in net.named_modules()} == hooks
    assert net.training and all(m.training for m in net.modules())


def test_the_block_never_replaces_a_childs_name():
    net = Tree()
    net.gald = nn.Identity()  # the user's own module of that name
    gald.plug(net, after="stages.a", ga="nl", d=2)
    assert isinstance(net.gald, nn.Identity) and list(inserts(net)) == ["gald_2"]


def test_inspection_copies_what_the_host_changes_in_place():
    class InPlace(Tree):
        def forward(self, x):
            y = self.stages["a"](self.stem(x))
            y += 1  # in place, after the insertion point
            return self.classifier(self.stages["b"](y))

    net = InPlace().eval()
    captured = []
    net.stages["a"].register_forward_hook(lambda m, a, o: captured.append(o.clone()))
    gald.plug(net, after="stages.a", arrangement="none")
    t = inspect(net, torch.rand(1, 3, *ODD))
    torch.testing.assert_close(t["F"], captured[-1], rtol=0, atol=0)


def test_a_ddp_wrapped_model_is_refused(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(Tree())
        with pytest.raises(PlugError, match="wrapped in DistributedDataParallel: plug the model itself, then wrap it"):
            gald.plug(wrapped, after="module.stages.a")
    finally:
        dist.destroy_process_group()
