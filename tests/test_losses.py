import pytest
import torch
from torch.nn import functional as F

from gald.losses import OhemCrossEntropy, SegmentationCriterion, build_criterion


def _reference_kept(logits, target, thresh, min_kept, ignore=255):
    """The authors' OhemCrossEntropy2dTensor selection, written as a sort over all pixels."""
    b, c, h, w = logits.shape
    t = target.reshape(-1).clone()
    valid = t != ignore
    num_valid = int(valid.sum())
    if min_kept > num_valid:
        return valid.view(b, h, w)
    prob = logits.softmax(1).transpose(0, 1).reshape(c, -1)
    prob = prob.masked_fill(~valid, 1.0)
    t[~valid] = 0
    p = prob[t, torch.arange(t.numel())]
    threshold = thresh
    if min_kept > 0:
        order = p.argsort()
        kth = p[order[min(len(order), min_kept) - 1]]
        if kth > thresh:
            threshold = kth.item()
    return (valid & (p <= threshold)).view(b, h, w)


@pytest.mark.parametrize("min_kept", [0, 5, 40, 300])
@pytest.mark.parametrize("thresh", [0.3, 0.7])
def test_ohem_keeps_exactly_what_the_reference_keeps(min_kept, thresh):
    logits = torch.randn(2, 4, 9, 11) * 2
    target = torch.randint(0, 4, (2, 9, 11))
    target[0, :3] = 255
    ohem = OhemCrossEntropy(thresh=thresh, min_kept=min_kept)
    kept = ohem.kept_mask(logits, target)
    # min_kept is per image: the reference sees the batch total
    assert torch.equal(kept, _reference_kept(logits, target, thresh, min_kept * 2))
    expected = F.cross_entropy(logits, target.masked_fill(~kept, 255), ignore_index=255)
    torch.testing.assert_close(ohem(logits, target), expected)


def test_ohem_min_kept_is_per_image():
    logits = torch.full((3, 2, 4, 5), 0.0)
    logits[:, 0] = 10.0  # every pixel confidently class 0
    target = torch.zeros(3, 4, 5, dtype=torch.long)  # ... and correct, so no pixel is under thresh
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=7)
    assert int(ohem.kept_mask(logits, target).sum()) >= 21
    assert int(ohem.kept_mask(logits[:1], target[:1]).sum()) >= 7
    # ties make the kept count exceed min_kept; with distinct probabilities it is exact
    logits[:, 0] += torch.linspace(0, 1, 60).view(3, 4, 5)
    assert int(ohem.kept_mask(logits, target).sum()) == 21


def test_ohem_never_keeps_ignored_pixels_and_handles_all_ignored():
    logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    target = torch.full((2, 6, 6), 255)
    target[1, 2, 2] = 1
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=1)
    kept = ohem.kept_mask(logits, target)
    assert not kept[target == 255].any()
    empty = ohem(logits, torch.full((2, 6, 6), 255))
    assert empty.item() == 0.0
    empty.backward()  # the graph is intact


def test_ohem_keeps_all_valid_when_too_few():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    kept = OhemCrossEntropy(thresh=0.01, min_kept=100).kept_mask(logits, target)
    assert kept.all()


def test_ohem_arguments_are_checked():
    with pytest.raises(ValueError, match="thresh"):
        OhemCrossEntropy(thresh=0.0)
    with pytest.raises(ValueError, match="min_kept"):
        OhemCrossEntropy(min_kept=-1)


def test_criterion_uses_ohem_on_main_and_plain_ce_on_aux():
    out = {"out": torch.randn(2, 3, 5, 7), "aux": torch.randn(2, 3, 5, 7)}
    target = torch.randint(0, 3, (2, 5, 7))
    target[0, 0] = 255
    crit = build_criterion(thresh=0.7, min_kept=4, aux_weight=0.4)
    losses = crit(out, target)
    main = crit.main(out["out"], target)
    aux = F.cross_entropy(out["aux"], target, ignore_index=255)
    torch.testing.assert_close(losses["loss_main"], main)
    torch.testing.assert_close(losses["loss_aux"], aux)
    torch.testing.assert_close(losses["loss"], main + 0.4 * aux)
    assert set(crit({"out": out["out"]}, target)) == {"loss", "loss_main"}


def test_plain_ce_criterion():
    crit = build_criterion(ohem=False)
    assert isinstance(crit, SegmentationCriterion)
    out = {"out": torch.randn(1, 3, 4, 4)}
    target = torch.randint(0, 3, (1, 4, 4))
    torch.testing.assert_close(crit(out, target)["loss"], F.cross_entropy(out["out"], target))
