import pytest
import torch
from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from gald.models import BACKBONES, build_backbone, resnet50, tiny_resnet
from gald.models.backbones import load_backbone_weights


def _dilations(layer: nn.Sequential) -> list[int]:
    return [block.conv2.dilation[0] for block in layer]


def test_paper_resnet50_equals_torchvision_dilated_resnet50():
    ours = resnet50(output_stride=8, mode="paper")
    ref = tv_resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    ours.eval(), ref.eval()
    x = torch.randn(1, 3, 65, 71)
    with torch.no_grad():
        r = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        r3 = ref.layer3(ref.layer2(ref.layer1(r)))
        r4 = ref.layer4(r3)
        out = ours(x)
    torch.testing.assert_close(out["layer3"], r3)
    torch.testing.assert_close(out["layer4"], r4)
    assert _dilations(ours.layer3) == [1, 2, 2, 2, 2, 2]  # torchvision contracts the first block
    assert _dilations(ours.layer4) == [2, 4, 4]


def test_official_resnet_conventions():
    net = tiny_resnet(depths=(1, 1, 3, 3), mode="official")
    assert isinstance(net.conv1, nn.Sequential) and len(net.conv1) == 7  # deep 3x3 stem
    assert net.maxpool.ceil_mode
    assert _dilations(net.layer3) == [2, 2, 2]  # no contraction
    assert _dilations(net.layer4) == [4, 8, 16]  # multi-grid (1, 2, 4)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("mode", ["paper", "official"])
def test_output_stride_at_odd_size(output_stride, mode):
    net = tiny_resnet(output_stride=output_stride, mode=mode).eval()
    out = net(torch.randn(2, 3, 97, 83))
    # ceil-mode pooling in official mode rounds up where floor-mode pooling rounds down
    expected = {8: {"paper": (13, 11), "official": (13, 11)}, 16: {"paper": (7, 6), "official": (7, 6)}}
    assert out["layer4"].shape[-2:] == expected[output_stride][mode]
    assert out["layer3"].shape[1] == net.channels["layer3"]
    assert out["layer4"].shape[1] == net.channels["layer4"]


def test_pretrained_from_local_file(tmp_path):
    src = tiny_resnet()
    path = tmp_path / "imagenet.pth"
    state = dict(src.state_dict())
    state["fc.weight"] = torch.zeros(10, 256)  # an ImageNet classifier is dropped
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = tiny_resnet(pretrained=path)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v)


def test_pretrained_mismatch_names_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    state = tiny_resnet(widths=(8, 16, 32, 32)).state_dict()
    state.pop("bn1.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(RuntimeError) as err:
        tiny_resnet(pretrained=path)
    msg = str(err.value)
    assert "missing keys: bn1.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "wrong shape" in msg and "layer4.0.conv1.weight" in msg


def test_missing_pretrained_file_says_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="'torchvision'"):
        tiny_resnet(pretrained=tmp_path / "nope.pth")


def test_unknown_backbone_lists_names():
    with pytest.raises(KeyError) as err:
        build_backbone("resnet18")
    for name in BACKBONES:
        assert name in str(err.value)


def test_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        tiny_resnet(output_stride=4)


def test_torchvision_weights_only_on_explicit_request():
    from conftest import DownloadAttempted

    net = resnet50()  # building never downloads
    with pytest.raises(DownloadAttempted):
        load_backbone_weights(net, "torchvision", torchvision_name="resnet50")
