"""The speed benchmark's helpers (timing, ratios, lever chains, memory child, verdicts), without the
authors' checkout: the work under test is a tiny gald model."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
spec = importlib.util.spec_from_file_location("official_speed", BENCH / "official_speed.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

from gald.models import gald_tiny  # noqa: E402
from gald.engine.memory import activation_checkpointing  # noqa: E402


def test_median_and_ratio():
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert bench.ratio(0.8, 1.6) == 0.5
    with pytest.raises(ValueError, match="--repeats"):
        bench.median([])


def test_time_alternating_alternates_and_skips_warmup():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    syncs = []
    times = bench.time_alternating(fns, repeats=3, warmup=1, sync=lambda: syncs.append(1))
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # order reversed every other round
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    assert len(syncs) == 2 * len(calls)


def test_lever_chain_is_cumulative_in_a_fixed_order():
    chain = bench.lever_chain(["fuse_bn", "inference_mode"], bench.EVAL_LEVERS)
    assert chain == [(), ("inference_mode",), ("inference_mode", "fuse_bn")]
    assert bench.config_name(chain[0]) == "gald eager"
    assert bench.config_name(chain[-1]) == "gald + inference_mode + fuse_bn"
    with pytest.raises(ValueError, match="unknown lever.*valid"):
        bench.lever_chain(["turbo"], bench.EVAL_LEVERS)


def test_parse_args_validates():
    with pytest.raises(SystemExit):
        bench.parse_args(["--archs", "r50"])  # no --official-repo
    with pytest.raises(SystemExit):
        bench.parse_args(["--official-repo", "x", "--archs", "r18"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--official-repo", "x", "--train-sizes", "129"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--official-repo", "x", "--checkpoint-stages", "layer9"])
    args = bench.parse_args(["--official-repo", "x", "--archs", "r101", "--sizes", "257", "--levers", "fuse_bn"])
    assert args.archs == ["gald_resnet101"] and args.ablation_size == 257 and args.levers == ["fuse_bn"]
    assert args.checkpoint_stages == ["layer1", "layer2", "layer3", "layer4"]


def test_eval_levers_give_the_same_logits():
    model = gald_tiny(num_classes=5, mode="official").eval()
    x = torch.randn(1, 3, 121, 127)
    ref = bench.gald_eval_fn(bench.prepare_eval_model(model, ()), x, ())()
    levers = ("inference_mode", "channels_last", "fuse_bn")
    out = bench.gald_eval_fn(bench.prepare_eval_model(model, levers), x, levers)()
    assert out.is_contiguous() and out.shape == (1, 5, 121, 127)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_train_step_levers_keep_the_loss_and_update_the_weights():
    plain = gald_tiny(num_classes=bench.NUM_CLASSES, mode="official")
    fast = gald_tiny(num_classes=bench.NUM_CLASSES, mode="official")
    fast.load_state_dict(plain.state_dict())
    fast = bench.prepare_train_model(fast, ("channels_last", "selective"), torch.device("cpu"), ("layer3", "layer4"))
    assert activation_checkpointing(fast.backbone) == (("layer3", "layer4"), "selective")
    x, y = bench.make_batch(193, torch.device("cpu"))
    assert (y == bench.IGNORE_INDEX).any() and y.shape == (1, 193, 193)
    before = fast.head.classifier.weight.detach().clone()
    losses = []
    for model in (plain, fast):
        torch.manual_seed(3)  # the aux head's dropout
        losses.append(bench.make_train_step(model, "gald", x, y)())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[0] > 0
    assert not torch.equal(fast.head.classifier.weight, before)


def test_memory_child_runs_in_a_fresh_process():
    res = bench.run_memory_child(
        {"impl": "tiny", "arch": "gald_tiny", "size": 193, "levers": [], "threads": 1, "device": "cpu"}
    )
    assert res["delta_mib"] > 0 and res["peak_mib"] > res["before_mib"]
    assert res["method"].startswith("VmHWM")


def test_train_configs_are_side_by_side_and_validated():
    assert bench.train_configs("eager, channels_last+selective,checkpointing") == [
        (), ("channels_last", "selective"), ("checkpointing",)]
    with pytest.raises(ValueError, match="turbo.*valid"):
        bench.train_configs("eager,turbo")
    with pytest.raises(ValueError, match="pick one"):
        bench.train_configs("checkpointing+selective")


def test_memory_child_rejects_an_unknown_impl():
    with pytest.raises(ValueError, match="unknown impl"):
        bench.memory_child({"impl": "nope", "arch": "gald_tiny", "size": 193, "threads": 1, "device": "cpu"})


def _row(config, median, ratio, mem=None):
    row = {"config": config, "times_s": [median], "median_s": median, "ratio": ratio,
           "max_abs_diff_vs_official": 0.0}
    if mem is not None:
        row["memory"] = {"delta_mib": mem[0]}
        row["memory_ratio"] = mem[1]
    return row


def test_verdicts_and_markdown():
    result = {
        "arch": "gald_resnet50",
        "parameters": {"official": 10, "gald": 10, "ratio": 1.0},
        "flops": [{"size": 257, "ratio": 1.0}],
        "eval": [{"size": 257, "compile_s": 12.5, "levers": ["fuse_bn"],
                  "rows": [{**_row("official", 1.0, 1.0), "gflop_per_s": 100.0},
                           {**_row("gald + fuse_bn", 0.7, 0.7), "gflop_per_s": 142.9}]}],
        "train": [{"size": 257, "configs": [[], ["checkpointing"], ["selective"]], "rows": [
            _row("official", 2.0, 1.0, (100, 1.0)),
            _row("gald eager", 1.9, 0.95, (98, 0.98)),
            _row("gald + checkpointing", 2.3, 1.15, (70, 0.7)),
            _row("gald + selective", 2.1, 1.05, (75, 0.75)),
        ]}],
    }
    verdicts = {v["what"]: v for v in bench.verdicts([result])}
    assert verdicts["eval latency 257, fastest (gald + fuse_bn)"]["met"]
    assert verdicts["train step time 257, fastest (gald eager)"]["met"]
    assert verdicts["train peak memory 257, leanest (gald + checkpointing)"]["met"]
    both = verdicts["train step time 257 at memory <= 0.8 (gald + selective, memory 0.750)"]
    assert not both["met"] and both["ratio"] == 1.05
    report = {"environment": {"device": "CPU", "threads": 2, "torch": "x", "conv_ceiling_gflop_per_s": 150.0}, "settings": {
        "repeats": 5, "warmup": 1, "checkpoint_stages": ["layer1"]}, "command": "c", "results": [result],
        "verdicts": list(verdicts.values())}
    md = bench.to_markdown(report)
    assert "| gald_resnet50 | train step time 257 at memory <= 0.8 (gald + selective, memory 0.750) | 1.050 | <= 1.0 | **no** |" in md
    assert "12.5 s" in md and "layer1" in md
    assert "runs at 100 GFLOP/s, gald's fastest row at 143; the 0.8 target needs 125" in md
    assert "reaches 150 GFLOP/s on this machine (`CEILING_SHAPES`, same run)." in md  # 143 < 150: no nnpack note
    report["environment"]["conv_ceiling_gflop_per_s"] = 120.0
    assert "rows above it compute some convolutions with fewer multiplications" in bench.to_markdown(report)


def test_conv_ceiling_is_a_positive_throughput():
    assert bench.conv_ceiling_gflop_per_s(torch.device("cpu"), side=9, repeats=1) > 0
