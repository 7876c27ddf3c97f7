import importlib.util
from pathlib import Path

import pytest

from gald.models import gald_resnet50, gald_resnet101

spec = importlib.util.spec_from_file_location("flops", Path(__file__).resolve().parents[1] / "benchmarks" / "flops.py")
flops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flops)


@pytest.mark.parametrize("builder,expected", [(gald_resnet50, 108.1), (gald_resnet101, 149.4)])
def test_official_mode_flops_match_the_authors_network(builder, expected):
    """The authors' GALD_res50/101 measured with the same counter at 1x3x257x257: 108.1 / 149.4 GFLOPs."""
    res = flops.count(builder, dict(mode="official"), 257)
    assert res["gflops"] == pytest.approx(expected, abs=0.06)


def test_ld_costs_almost_nothing_and_ga_costs_more():
    fcn = flops.count(gald_resnet50, dict(block="none"), 129)["gflops"]
    ld = flops.count(gald_resnet50, dict(block="ld"), 129)["gflops"]
    psp = flops.count(gald_resnet50, dict(ga="psp", block="ga"), 129)["gflops"]
    assert 0 < ld - fcn < 0.01 * fcn and psp - fcn > 10 * (ld - fcn)
