import pytest
import torch
from torch import nn

from gald.ld_effect import (
    has_ld,
    ld_effect,
    ld_intervention,
    mask_contrast,
    per_image_confusions,
    summary_from_confusions,
)
from gald.metrics import SegmentationMetrics
from gald.models import LocalDistribution, gald_tiny

K = 5


def tiny(block="gald", **kw):
    return gald_tiny(num_classes=K, block=block, d=2, depths=(1, 1, 1, 1), widths=(8, 8, 16, 16),
                     head_channels=16, aux_channels=8, **kw).eval()


def batches(n=3, batch=2, size=(37, 45), seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images = torch.randn(batch, 3, *size, generator=g)
        labels = torch.randint(0, K, (batch, *size), generator=g)
        labels[:, :4] = 255  # some ignored pixels
        out.append((images, labels))
    return out


def sharpen_ld(model, scale=40.0):
    """Make LD's masks strongly spatial, so removing their spatial information changes the output."""
    for m in model.modules():
        if isinstance(m, LocalDistribution):
            for conv in m.convs.modules():
                if isinstance(conv, nn.Conv2d):
                    conv.weight.data.mul_(scale)


@pytest.mark.parametrize("block", ["gald", "ldga", "parallel", "ld"])
def test_spatial_mean_keeps_each_channels_mean_and_removes_spatial_variation(block):
    model = tiny(block)
    x = torch.randn(2, 3, 41, 53)
    with torch.no_grad():
        m = model.inspect(x)["M"]
        with ld_intervention(model, "spatial_mean"):
            m2 = model.inspect(x)["M"]
    assert m.flatten(2).std(2).mean() > 1e-4  # the real mask varies
    assert m2.flatten(2).std(2).max() < 1e-6
    torch.testing.assert_close(m2[..., 0, 0], m.mean((-2, -1)))


def test_zero_makes_the_gald_block_return_f_ga():
    model = tiny("gald")
    with torch.no_grad(), ld_intervention(model, "zero"):
        out = model.inspect(torch.randn(2, 3, 33, 47))
    torch.testing.assert_close(out["F_GALD"], out["F_GA"])


def test_intervention_is_restored_even_after_an_error():
    model = tiny("gald")
    with pytest.raises(RuntimeError, match="boom"):
        with ld_intervention(model, "zero"):
            raise RuntimeError("boom")
    assert all(m.intervention is None for m in model.modules() if isinstance(m, LocalDistribution))


def test_bad_kind_and_model_without_ld_are_refused():
    with pytest.raises(ValueError, match="spatial_mean"):
        with ld_intervention(tiny("gald"), "shuffle"):
            pass
    ga = tiny("ga")
    assert not has_ld(ga) and has_ld(tiny("gald"))
    with pytest.raises(ValueError, match="no LD module"):
        with ld_intervention(ga):
            pass
    with pytest.raises(ValueError, match="no LD module"):
        ld_effect(ga, batches(1))


def test_summary_from_confusions_equals_segmentation_metrics():
    model = tiny("gald")
    data = batches()
    cm, cm_b = per_image_confusions(model, data, K)
    assert cm.shape == (6, K, K)
    metrics = SegmentationMetrics(K, small_classes=(3, 4), large_classes=(0, 1))
    with torch.no_grad():
        for images, labels in data:
            metrics.update(model(images)["out"].argmax(1), labels)
    ref = metrics.compute()
    got = summary_from_confusions(cm.sum(0), cm_b.sum(0), small_classes=(3, 4), large_classes=(0, 1))
    for key in ("mIoU", "small_mIoU", "large_mIoU", "boundary_mIoU"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key


def test_effect_is_exactly_zero_when_the_mask_is_spatially_constant():
    model = tiny("gald")
    ld = model.head.block.ld
    last = [m for m in ld.convs.modules() if isinstance(m, nn.Conv2d)][-1]
    last.weight.data.zero_()  # W_d F_GA is then a per-channel constant (bias or BN shift)
    effect = ld_effect(model, batches(), small_classes=(3, 4), large_classes=(0, 1), n_boot=200)
    for name, e in effect["metrics"].items():
        assert e["effect"] == 0 and e["ci95"] == [0, 0], name
    assert effect["inert"] and effect["images"] == 6


def test_effect_of_a_spatial_mask_is_measured_with_an_interval_around_it():
    model = tiny("gald")
    sharpen_ld(model)
    effect = ld_effect(model, batches(n=4), small_classes=(3, 4), large_classes=(0, 1), n_boot=500,
                       class_names=list("abcde"))
    miou = effect["metrics"]["mIoU"]
    assert miou["as_trained"] != miou["intervened"]
    assert miou["effect"] == pytest.approx(miou["as_trained"] - miou["intervened"])
    lo, hi = miou["ci95"]
    assert lo < hi
    assert set(effect["per_class"]) == set("abcde")
    zero = ld_effect(model, batches(n=4), kind="zero", n_boot=50)
    assert zero["kind"] == "zero" and zero["metrics"]["mIoU"]["intervened"] != miou["intervened"]


def test_inert_needs_the_interval_inside_the_sesoi():
    model = tiny("gald")
    sharpen_ld(model)
    data = batches(n=4)
    wide = ld_effect(model, data, n_boot=300, sesoi=1e-6)
    assert not wide["inert"]  # an interval of nonzero width cannot lie within ±1e-6


def test_mask_contrast_is_zero_for_a_constant_mask_and_signed_otherwise():
    model = tiny("gald")
    ld = model.head.block.ld
    last = [m for m in ld.convs.modules() if isinstance(m, nn.Conv2d)][-1]
    last.weight.data.zero_()
    flat = mask_contrast(model, batches(), small_classes=(3, 4), large_classes=(0, 1), n_boot=100)
    assert flat["contrast"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="no LD mask"):
        mask_contrast(tiny("ga"), batches(1), small_classes=(3,), large_classes=(0,))


@pytest.mark.parametrize(
    ("ci", "expected"),
    [((-0.3, 0.4), "inert"), ((0.1, 0.4), "negligible"), ((-0.4, -0.1), "negligible"), ((0.5, 1.6), "helps"),
     ((-2.0, -0.2), "hurts"), ((-0.5, 1.5), "undetermined")],
)
def test_ld_verdict(ci, expected):
    from gald.ld_effect import LD_VERDICTS, ld_verdict

    assert ld_verdict(ci, 1.0) == expected and expected in LD_VERDICTS


def test_every_shipped_segmentation_model_with_ld_states_its_ld_effect():
    """Issue #14: each shipped model's card records its measured LD effect and the command."""
    import json
    from pathlib import Path

    from gald.models import LD_ARRANGEMENTS

    root = Path(__file__).resolve().parents[1]
    cards = sorted((root / "notebooks" / "assets").glob("*.json")) + sorted((root / "gald" / "assets").glob("*.json"))
    with_ld = 0
    for path in cards:
        card = json.loads(path.read_text())
        cfg = card.get("config", {})
        cfg = cfg.get("train", cfg)
        if cfg.get("block") in LD_ARRANGEMENTS:
            with_ld += 1
            eff = card.get("ld_effect")
            assert eff, f"{path.name} has LD but no measured ld_effect"
            lo, hi = eff["mIoU"]["ci95"]
            assert lo <= eff["mIoU"]["effect"] <= hi and "--ld-effect" in eff["command"], path.name
    assert with_ld >= 5
