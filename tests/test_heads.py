import pytest
import torch

from gald.models import ARRANGEMENTS, AuxHead, GALDBlock, GALDHead


def _block(arrangement, **kw):
    return GALDBlock(16, arrangement=arrangement, **kw).eval()


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_block_keeps_shape(arrangement):
    x = torch.randn(2, 16, 11, 9)
    assert _block(arrangement)(x).shape == x.shape


def test_blocks_omit_what_they_omit():
    has = {a: (_block(a).ga is not None, _block(a).ld is not None) for a in ARRANGEMENTS}
    assert has == {
        "gald": (True, True),
        "ldga": (True, True),
        "parallel": (True, True),
        "ga": (True, False),
        "ld": (False, True),
        "none": (False, False),
    }
    x = torch.randn(2, 16, 11, 9)
    none = _block("none").forward_intermediates(x)
    assert none["F_GALD"] is x and none["F_GA"] is None and none["M"] is None
    ga = _block("ga").forward_intermediates(x)
    assert ga["M"] is None and torch.equal(ga["F_GALD"], ga["F_GA"])
    ld = _block("ld").forward_intermediates(x)
    assert ld["F_GA"] is None
    torch.testing.assert_close(ld["F_GALD"], ld["M"] * x + x)


def test_gald_is_eq2_and_official_form_doubles_the_residual():
    x = torch.randn(2, 16, 16, 16)
    paper = _block("gald").forward_intermediates(x)
    torch.testing.assert_close(paper["F_GALD"], paper["M"] * paper["F_GA"] + paper["F_GA"])
    official = _block("gald", extra_residual=True).forward_intermediates(x)
    torch.testing.assert_close(official["F_GALD"], official["M"] * official["F_GA"] + 2 * official["F_GA"])


def test_ldga_computes_the_mask_from_the_input():
    block = _block("ldga")
    x = torch.randn(2, 16, 11, 9)
    out = block.forward_intermediates(x)
    torch.testing.assert_close(out["M"], block.ld.mask(x))
    torch.testing.assert_close(out["F_GA"], block.ga(out["M"] * x + x))


def test_parallel_concatenates_ld_and_ga():
    block = _block("parallel")
    assert block.project[0].in_channels == 32
    x = torch.randn(2, 16, 11, 9)
    out = block.forward_intermediates(x)
    torch.testing.assert_close(out["F_GALD"], block.project(torch.cat([out["M"] * x + x, out["F_GA"]], 1)))


def test_unknown_arrangement_lists_names():
    with pytest.raises(ValueError) as err:
        GALDBlock(16, arrangement="gald2")
    for name in ARRANGEMENTS:
        assert name in str(err.value)


def test_head_concatenates_input_features():
    head = GALDHead(24, 16, 5).eval()
    assert head.fuse[0].in_channels == 24 + 16
    f = torch.randn(2, 24, 13, 7)
    out = head.forward_intermediates(f)
    assert out["logits"].shape == (2, 5, 13, 7)
    assert out["F"] is f
    assert out["logits_fcn"] is None and out["logits_ga"] is None


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_stage_classifiers(arrangement):
    head = GALDHead(24, 16, 5, stage_classifiers=True, arrangement=arrangement).eval()
    out = head.forward_intermediates(torch.randn(2, 24, 13, 7))
    assert out["logits_fcn"].shape == (2, 5, 13, 7)
    if arrangement in ("ld", "none"):
        assert out["logits_ga"] is None
    else:
        assert out["logits_ga"].shape == (2, 5, 13, 7)


def test_aux_head_shape():
    assert AuxHead(24, 8, 5).train()(torch.randn(2, 24, 9, 11)).shape == (2, 5, 9, 11)
