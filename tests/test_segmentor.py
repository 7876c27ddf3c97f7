import itertools

import pytest
import torch

from gald.models import (
    ARRANGEMENTS,
    GA_MODULES,
    LD_DOWNSAMPLING,
    MODELS,
    build_model,
    gald_resnet50,
    gald_resnet101,
    gald_tiny,
    load_model,
)

# Every GA × block × LD-downsampling combination, without duplicates for blocks that lack GA or LD.
COMBOS = sorted(
    {
        (ga if block in ("gald", "ldga", "parallel", "ga") else "-",
         block,
         ld if block in ("gald", "ldga", "parallel", "ld") else "-")
        for ga, block, ld in itertools.product(GA_MODULES, ARRANGEMENTS, LD_DOWNSAMPLING)
    }
)
# Official mode's unpadded convs need >= 15x15 features at d = 8, i.e. inputs of about 120 px.
SIZES = {"paper": (45, 67), "official": (121, 131)}


def _tiny(ga, block, ld, mode, **kw):
    return gald_tiny(
        num_classes=5, ga="cgnl" if ga == "-" else ga, block=block,
        ld_downsample="dwconv" if ld == "-" else ld, mode=mode, **kw,
    )


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("ga,block,ld", COMBOS)
def test_output_shapes_every_variant(ga, block, ld, mode):
    model = _tiny(ga, block, ld, mode)
    h, w = SIZES[mode]
    x = torch.randn(2, 3, h, w)
    out = model.train()(x)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 5, h, w)
    out = model.eval()(x[:1])
    assert set(out) == {"out"} and out["out"].shape == (1, 5, h, w)


def test_no_aux_head():
    model = gald_tiny(num_classes=3, aux=False).train()
    assert set(model(torch.randn(2, 3, 33, 35))) == {"out"}


def test_inspection_paper_mode_is_eq1_eq2():
    model = gald_tiny(num_classes=5, stage_classifiers=True).eval()
    x = torch.randn(2, 3, 57, 63)
    with torch.no_grad():
        t = model.inspect(x)
        out = model(x)["out"]
    assert t["M"].min() >= 0 and t["M"].max() <= 1
    torch.testing.assert_close(t["F_GALD"], t["M"] * t["F_GA"] + t["F_GA"])
    torch.testing.assert_close(t["out"], out)
    assert t["F"].shape[1] == 256 and t["F"].shape[-2:] == t["logits"].shape[-2:] == (8, 8)
    assert t["logits_fcn"].shape == t["logits_ga"].shape == t["logits"].shape == (2, 5, 8, 8)
    assert model.num_classes == 5 and list(model.stage_classifiers) == ["logits_fcn", "logits_ga"]


def test_inspection_official_mode_doubles_f_ga():
    model = gald_tiny(num_classes=5, mode="official").eval()
    with torch.no_grad():
        t = model.inspect(torch.randn(1, 3, 121, 121))
    torch.testing.assert_close(t["F_GALD"], t["M"] * t["F_GA"] + 2 * t["F_GA"])
    assert t["M"].min() >= 0.5  # the authors' ReLU before the sigmoid


@pytest.mark.parametrize("block", ["none", "ga", "ld"])
def test_inspection_omits_absent_stages(block):
    t = gald_tiny(num_classes=5, block=block).eval().inspect(torch.randn(1, 3, 41, 41))
    assert (t["F_GA"] is None) == (block in ("none", "ld"))
    assert (t["M"] is None) == (block in ("none", "ga"))
    model = gald_tiny(num_classes=5, block=block, stage_classifiers=True)
    assert list(model.stage_classifiers) == (["logits_fcn"] if block in ("none", "ld") else ["logits_fcn", "logits_ga"])
    assert gald_tiny(num_classes=5, block=block).stage_classifiers == {}


@pytest.mark.parametrize("ga", sorted(GA_MODULES))
def test_gradients_reach_every_parameter_after_one_step(ga):
    model = gald_tiny(num_classes=4, ga=ga, stage_classifiers=True).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 3, 41, 39), torch.randint(0, 4, (2, 41, 39))

    def step():
        opt.zero_grad()
        t = model.inspect(x)
        out = model(x)
        loss = sum(
            torch.nn.functional.cross_entropy(torch.nn.functional.interpolate(v, size=y.shape[-2:]), y)
            for v in (out["out"], out["aux"], t["logits_fcn"], t["logits_ga"])
        )
        loss.backward()

    step()
    opt.step()  # zero-initialised residual scales move off zero here
    step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead


@pytest.mark.parametrize(
    "builder,aux,expected",
    [
        (gald_resnet50, True, 52_402_662),
        (gald_resnet50, False, 47_672_787),
        (gald_resnet101, True, 71_394_790),
        (gald_resnet101, False, 66_664_915),
    ],
)
def test_official_parameter_counts_match_the_authors(builder, aux, expected):
    """GALD_res50 / GALD_res101 of the authors' libs/models/GALDNet.py with 19 classes."""
    with torch.device("meta"):
        model = builder(num_classes=19, mode="official", aux=aux)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_paper_mode_differs_from_official_only_where_documented():
    with torch.device("meta"):
        paper = gald_resnet50(mode="paper")
        official = gald_resnet50(mode="official")
    diff = sum(p.numel() for p in official.parameters()) - sum(p.numel() for p in paper.parameters())
    # deep stem vs 7x7 stem, 128-channel stem output, down/LD conv biases and the aux conv bias
    stem = (3 * 64 * 9 + 64 * 64 * 9 + 64 * 128 * 9 + 2 * 2 * 64 + 2 * 128) - (3 * 64 * 49 + 2 * 64)
    layer1 = 128 * 64 - 64 * 64 + 128 * 256 - 64 * 256  # wider inputs to layer1.0 conv1 and downsample
    biases = 4 * 512 + 512
    assert diff == stem + layer1 + biases


def test_bad_input_rank_and_channels():
    model = gald_tiny(num_classes=3).eval()
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.randn(3, 33, 33))
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(torch.randn(1, 1, 33, 33))
    with pytest.raises(ValueError, match="4-D batch"):
        model.inspect(torch.randn(33, 33))


def test_unknown_names_list_valid_ones():
    with pytest.raises(KeyError, match="cgnl"):
        gald_tiny(ga="ccnet")
    with pytest.raises(ValueError, match="parallel"):
        gald_tiny(block="serial")
    with pytest.raises(ValueError, match="official"):
        gald_tiny(mode="exact")
    with pytest.raises(KeyError, match="gald_tiny"):
        build_model({"arch": "gald_resnet18"})
    with pytest.raises(TypeError, match="valid options"):
        build_model({"arch": "gald_tiny", "num_clases": 3})
    with pytest.raises(ValueError, match="power of two"):
        gald_tiny(d=6)


def test_build_model_from_config_matches_builder():
    cfg = {"arch": "gald_tiny", "num_classes": 3, "ga": "psp", "block": "ldga", "widths": [8, 8, 16, 16]}
    model = build_model(cfg)
    assert model.config["ga"] == "psp" and model.config["widths"] == (8, 8, 16, 16)
    assert set(MODELS) == {"gald_resnet50", "gald_resnet101", "gald_tiny"}


def test_the_builders_share_one_body_and_refuse_unknown_options():
    from gald.models.segmentor import model_options

    shared = model_options("gald_resnet50")
    assert model_options("gald_resnet101") == shared and model_options("gald_tiny") == shared | {"depths", "widths"}
    assert {"ga", "block", "d", "ld_init", "mode", "ga_kwargs"} <= shared
    with pytest.raises(TypeError, match=r"unknown model option\(s\) \['gaa'\] for gald_tiny"):
        gald_tiny(num_classes=3, gaa="nl")
    with pytest.raises(TypeError, match=r"\['widths'\] for gald_resnet50"):
        gald_resnet50(num_classes=3, widths=(8, 8, 8, 8))
    with pytest.raises(TypeError, match="unknown model option"):
        build_model({"arch": "gald_tiny", "num_classes": 3, "gaa": "nl"})


def _save(path, model, **extra):
    torch.save({"model": model.state_dict(), "config": {"model": model.config}, **extra}, path)


def test_load_model_roundtrip(tmp_path):
    model = gald_tiny(num_classes=3, ga="nl").eval()
    _save(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt").eval()
    x = torch.randn(1, 3, 37, 41)
    torch.testing.assert_close(loaded(x)["out"], model(x)["out"])


def test_load_model_names_missing_and_unexpected_keys(tmp_path):
    model = gald_tiny(num_classes=3)
    state = model.state_dict()
    state.pop("head.classifier.weight")
    state["head.extra.weight"] = torch.zeros(1)
    torch.save({"model": state, "config": {"model": model.config}}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError) as err:
        load_model(tmp_path / "bad.pt")
    assert "missing keys: head.classifier.weight" in str(err.value)
    assert "unexpected keys: head.extra.weight" in str(err.value)


def test_load_model_rejects_non_checkpoints(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a gald checkpoint"):
        load_model(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_ld_design_options_resolve_per_mode_and_are_saved():
    from gald.models import PAPER_LD, gald_tiny

    paper = gald_tiny(num_classes=3, head_channels=16, widths=(8, 8, 16, 16))
    assert paper.config["ld_last_norm"] == PAPER_LD["last_norm"] and paper.config["ld_init"] == PAPER_LD["init"]
    custom = gald_tiny(num_classes=3, head_channels=16, widths=(8, 8, 16, 16), ld_last_norm=False, ld_init="zero")
    assert custom.config["ld_last_norm"] is False and custom.head.block.ld.convs[-1][0].bias is not None
    with pytest.raises(ValueError, match="official mode"):
        gald_tiny(num_classes=3, mode="official", ld_init="box")


def test_checkpoints_from_before_the_ld_options_load_as_written():
    """Their configs lack ld_last_norm / ld_init: they had a normalised last conv, default init."""
    from gald.models import gald_tiny, model_from_checkpoint

    old = gald_tiny(num_classes=3, head_channels=16, widths=(8, 8, 16, 16), d=4, ld_last_norm=True)
    cfg = {k: v for k, v in old.config.items() if k not in ("ld_last_norm", "ld_init")}
    model = model_from_checkpoint({"model": old.state_dict(), "config": {"model": cfg}})
    assert model.config["ld_last_norm"] is True and model.config["ld_init"] == "default"
