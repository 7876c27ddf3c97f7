"""gald vs the authors' GALD-Net, measured side by side: python benchmarks/official_speed.py --official-repo PATH

PATH is a checkout of github.com/lxtGH/GALD-Net; its ``libs/models/GALDNet.py`` is imported at run
time (nothing is copied). For each architecture (``--archs r50,r101``) the script builds the
authors' network with seeded random weights and BatchNorm statistics and ``gald``'s official mode
with the same weights (converted), then measures, in one process, on the same input tensor, with
the same number of threads:

* parameters (the models as built, aux head included) and forward FLOPs (eval mode,
  ``torch.utils.flop_counter.FlopCounterMode`` on the meta device) — the ratios must be 1.000;
* eval latency (``--sizes``, batch 1): image → logits at the input size. The authors' network is
  run as their ``eval.py`` runs it (``torch.no_grad()``, then a bilinear ``align_corners=True``
  upsampling of its 1/8 output); ``gald`` returns logits at the input size itself. ``gald`` is
  timed with its execution levers added one at a time (``--levers``, cumulative, in the order
  inference_mode → channels_last → fuse_bn → nnpack → compile; ``nnpack`` runs the head's wide
  3×3 convolutions through NNPACK's fast-convolution algorithms, see ``gald.deploy.nnpack``); each
  row also reports its largest absolute difference from the authors' output, and the verdict reads
  the fastest row;
* one training step (``--train-sizes``, batch 1, SGD momentum 0.9, weight decay 5e-4, the same
  criterion for both: cross-entropy on the main logits + 0.4 × cross-entropy on the aux logits,
  both at the label size) — its time, and its peak memory in a fresh process per measurement: on
  CPU the growth of the resident set over the step (VmHWM after the step minus VmRSS before it;
  the high-water mark is reset first where Linux allows it), on CUDA
  ``torch.cuda.max_memory_allocated`` minus the memory allocated before the step. ``gald`` rows
  (``--train-configs``, side by side): eager, channels_last, nnpack, activation checkpointing of
  whole blocks, selective checkpointing (3×3 convolution outputs kept), and selective checkpointing
  with nnpack, without and with channels_last. The verdicts read the fastest
  row, the leanest row, and the fastest row within the memory target.

Timing: every configuration of a measurement runs in turn in each round (A/B alternation, the order
reversed every other round), after ``--warmup`` untimed rounds; the figure is the median of
``--repeats`` rounds. ``torch.compile`` (inductor, with ``freezing``) is compiled once per input
size; its first call is reported separately as the compile time and never enters the medians.

Results go to ``--out`` + ``.json`` / ``.md`` (default benchmarks/results/official_speed). Develop
with tiny settings: ``--archs r50 --sizes 129 --train-sizes 129 --repeats 2 --levers inference_mode``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _official import authors_module, build_authors, build_pair  # noqa: E402

from gald.models import MODELS  # noqa: E402
from gald.deploy.fuse import fuse_conv_bn  # noqa: E402
from gald.deploy.nnpack import convert_to_nnpack  # noqa: E402
from gald.engine.memory import checkpointed_stages, set_activation_checkpointing  # noqa: E402
from gald.models.backbones import STAGES  # noqa: E402

log = logging.getLogger("official_speed")

HERE = os.path.dirname(os.path.abspath(__file__))
ARCH_NAMES = {"r50": "gald_resnet50", "r101": "gald_resnet101"}
EVAL_LEVERS = ("inference_mode", "channels_last", "fuse_bn", "nnpack", "compile")
# checkpointing: policy "full"; selective: policy "selective"
TRAIN_LEVERS = ("channels_last", "nnpack", "checkpointing", "selective")
TRAIN_CONFIGS = "eager,channels_last,nnpack,checkpointing,selective,nnpack+selective,channels_last+nnpack+selective"
NUM_CLASSES = 19
MIN_TRAIN_SIZE = 193  # the last unpadded LD conv still gives 2×2 at 193 px (1×1 below ~177)
IGNORE_INDEX = 255
TARGETS = {"eval_latency": 0.8, "train_peak_memory": 0.8, "train_step_time": 1.0}


# --------------------------------------------------------------------------------------------------
# timing and statistics


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    if not values:
        raise ValueError("median of no values: run at least one repeat (--repeats >= 1)")
    return float(statistics.median(values))


def ratio(gald: float, official: float) -> float:
    """``gald / official`` (the benchmark's figure of merit: < 1 means gald is cheaper)."""
    return gald / official


def time_alternating(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Wall-clock seconds of each callable, A/B alternated.

    Every round calls each function once; the order is reversed every other round so neither side
    always runs first (caches, turbo, a neighbour's load). ``warmup`` untimed rounds come first.

    Args:
        fns: name → zero-argument callable (one measured unit of work).
        repeats: timed rounds.
        warmup: untimed rounds before them.
        sync: called before reading the clock (``torch.cuda.synchronize`` on a GPU).

    Returns:
        name → list of ``repeats`` durations in seconds.
    """
    sync = sync or (lambda: None)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            sync()
            t0 = time.perf_counter()
            fns[n]()
            sync()
            if r >= warmup:
                times[n].append(time.perf_counter() - t0)
    return times


def lever_chain(levers: Sequence[str], order: Sequence[str]) -> list[tuple[str, ...]]:
    """The cumulative lever sets of an ablation: ``()``, ``(a,)``, ``(a, b)``, ... in ``order``.

    Unknown names raise a ``ValueError`` that lists the valid ones.
    """
    unknown = [x for x in levers if x not in order]
    if unknown:
        raise ValueError(f"unknown lever(s) {unknown}; valid: {list(order)}")
    chosen = [x for x in order if x in levers]
    return [tuple(chosen[:i]) for i in range(len(chosen) + 1)]


def config_name(levers: Sequence[str]) -> str:
    return "gald eager" if not levers else "gald + " + " + ".join(levers)


def train_configs(text: str) -> list[tuple[str, ...]]:
    """Training configurations from ``"eager,channels_last,channels_last+selective"``: each a set of
    ``TRAIN_LEVERS`` joined by ``+`` (``eager``: none), measured side by side — not cumulative, as
    the two checkpointing policies exclude each other and channels_last may slow training on CPU."""
    configs = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        names = [] if item == "eager" else item.split("+")
        unknown = [x for x in names if x not in TRAIN_LEVERS]
        levers = tuple(x for x in TRAIN_LEVERS if x in names)
        if unknown:
            raise ValueError(f"unknown training lever(s) {unknown}; valid: eager or '+'-joined {list(TRAIN_LEVERS)}")
        if {"checkpointing", "selective"} <= set(levers):
            raise ValueError(f"{item!r}: checkpointing and selective are two policies of one lever; pick one")
        configs.append(levers)
    return configs


# --------------------------------------------------------------------------------------------------
# memory


def read_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KiB, or ``None`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); ``False`` if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int:
    """Peak resident set of this process in KiB (VmHWM, else ``ru_maxrss``)."""
    hwm = read_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure_step_memory(
    model: nn.Module, step: Callable[[], Any], device: torch.device
) -> dict[str, float]:
    """Memory of one training step of ``model`` in this process (meant to be a fresh one).

    CPU: peak resident set during the step minus the resident set before it (MiB). CUDA: peak
    allocated during the step minus allocated before it (MiB).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"before_mib": before / 2**20, "peak_mib": peak / 2**20, "delta_mib": (peak - before) / 2**20,
                "method": "cuda max_memory_allocated"}
    before = read_status_kib("VmRSS")
    if before is None:
        import resource

        before = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    reset = reset_peak_rss()
    step()
    peak = peak_rss_kib()
    return {"before_mib": before / 1024, "peak_mib": peak / 1024, "delta_mib": (peak - before) / 1024,
            "method": "VmHWM - VmRSS" + (" (HWM reset)" if reset else " (HWM not resettable)")}


def run_memory_child(spec: dict[str, Any], timeout: float = 3600) -> dict[str, float]:
    """Run :func:`memory_child` in a fresh Python process and return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_child(spec: dict[str, Any]) -> dict[str, float]:
    """Build one model (``spec["impl"]``: ``"official"`` or ``"gald"``), take one training step and
    return its memory (see :func:`measure_step_memory`). Weights are seeded random values: memory
    does not depend on them."""
    if spec["impl"] not in ("official", "gald", "tiny"):
        raise ValueError(f"unknown impl {spec['impl']!r}; valid: official, gald, tiny")
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    arch, size = spec["arch"], spec["size"]
    if spec["impl"] == "official":
        model = build_authors(authors_module(spec["official_repo"]), arch, seed=0)
    elif spec["impl"] == "gald":
        torch.manual_seed(0)
        model = MODELS[arch](num_classes=NUM_CLASSES, mode="official")
    else:  # "tiny", for tests: a small gald model, no authors' code needed
        torch.manual_seed(0)
        model = MODELS["gald_tiny"](num_classes=NUM_CLASSES, mode="official")
    model = prepare_train_model(model, spec.get("levers", ()), device, spec.get("checkpoint_stages", STAGES))
    x, y = make_batch(size, device)
    step = make_train_step(model, "official" if spec["impl"] == "official" else "gald", x, y)
    return measure_step_memory(model, step, device)


# --------------------------------------------------------------------------------------------------
# the work being measured


def make_batch(size: int, device: torch.device, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded 1×3×size×size image and a 1×size×size label map with some ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size, size, generator=g)
    y = torch.randint(0, NUM_CLASSES, (1, size, size), generator=g)
    y[:, : size // 8] = IGNORE_INDEX
    return x.to(device), y.to(device)


def criterion(main: torch.Tensor, aux: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss for both implementations: CE(main) + 0.4 · CE(aux), logits at the label size."""
    return F.cross_entropy(main, y, ignore_index=IGNORE_INDEX) + 0.4 * F.cross_entropy(
        aux, y, ignore_index=IGNORE_INDEX
    )


def make_train_step(model: nn.Module, impl: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    """One SGD step (momentum 0.9, weight decay 5e-4, lr 0.01) of ``model`` on ``(x, y)``.

    ``impl="official"``: the authors' network returns ``[main, aux]`` at 1/8, upsampled to the label
    size as their ``CriterionDSN`` does (bilinear, ``align_corners=True``). ``impl="gald"``: the
    model returns ``{"out", "aux"}`` at the input size already.
    """
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    size = y.shape[-2:]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        if impl == "official":
            main, aux = model(x)
            up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=True)  # noqa: E731
            loss = criterion(up(main), up(aux), y)
        else:
            out = model(x)
            loss = criterion(out["out"], out["aux"], y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def prepare_train_model(
    model: nn.Module, levers: Sequence[str], device: torch.device, checkpoint_stages: Sequence[str] = STAGES
) -> nn.Module:
    """``model`` on ``device`` with the training levers applied (in place): ``checkpointing`` /
    ``selective`` recompute the blocks of ``checkpoint_stages`` in backward under the ``"full"`` /
    ``"selective"`` policy of :class:`gald.models.backbones.ResNetBackbone`."""
    unknown = [x for x in levers if x not in TRAIN_LEVERS]
    if unknown:
        raise ValueError(f"unknown training lever(s) {unknown}; valid: {list(TRAIN_LEVERS)}")
    model = model.to(device)
    if "channels_last" in levers:
        model = model.to(memory_format=torch.channels_last)
    if "nnpack" in levers:
        convert_to_nnpack(model)
    if {"checkpointing", "selective"} & set(levers):
        set_checkpointing(model, levers, checkpoint_stages)
    return model


def set_checkpointing(model: nn.Module, levers: Sequence[str], stages: Sequence[str]) -> None:
    """Switch ``model``'s activation checkpointing to what ``levers`` ask for (off without either)."""
    on = "checkpointing" in levers or "selective" in levers
    policy = "selective" if "selective" in levers else "full"
    set_activation_checkpointing(model.backbone, tuple(stages) if on else False, policy=policy)


def official_eval_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The authors' inference as their eval.py runs it: no_grad forward, upsample to the input."""
    model.eval()
    size = x.shape[-2:]

    def run() -> torch.Tensor:
        with torch.no_grad():
            return F.interpolate(model(x)[0], size=size, mode="bilinear", align_corners=True)

    return run


def prepare_eval_model(model: nn.Module, levers: Sequence[str]) -> nn.Module:
    """An eval copy of ``model`` with the model-side eval levers (channels_last, fuse_bn, nnpack) applied."""
    m = fuse_conv_bn(model) if "fuse_bn" in levers else copy.deepcopy(model).eval()
    if "channels_last" in levers:
        m = m.to(memory_format=torch.channels_last)
    if "nnpack" in levers:
        convert_to_nnpack(m)
    return m


def gald_eval_fn(model: nn.Module, x: torch.Tensor, levers: Sequence[str]) -> Callable[[], torch.Tensor]:
    """``gald`` inference on ``x`` under the call-side levers (inference_mode, compile).

    The output is returned as a contiguous NCHW tensor, the layout the authors' path returns.
    """
    grad_ctx = torch.inference_mode if "inference_mode" in levers else torch.no_grad
    model.eval()

    def run() -> torch.Tensor:
        with grad_ctx():
            return model(x)["out"].contiguous()

    return run


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` for inference: inductor with ``freezing`` (weights become constants, so BN
    folding and oneDNN weight prepacking happen at compile time). Static shapes: one compile per
    input size."""
    return torch.compile(model, dynamic=False, options={"freezing": True})


# --------------------------------------------------------------------------------------------------
# counting


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(build: Callable[[], nn.Module], size: int, call: Callable[[nn.Module, torch.Tensor], Any]) -> int:
    """Forward FLOPs (eval mode, batch 1) of the model ``build()`` makes, on the meta device."""
    with torch.device("meta"):
        model = build().eval()
        x = torch.empty(1, 3, size, size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            call(model, x)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------------
# the benchmark


def bench_arch(authors, arch: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    theirs, ours = build_pair(authors, arch, seed=0)
    result: dict[str, Any] = {"arch": arch}
    result["parameters"] = {"official": count_parameters(theirs), "gald": count_parameters(ours)}
    result["parameters"]["ratio"] = ratio(result["parameters"]["gald"], result["parameters"]["official"])

    # FLOPs: the network as built, and gald's inference path (BN folded) to show it computes the same.
    result["flops"] = []
    for size in args.sizes:
        official = count_flops(lambda: build_authors(authors, arch, random_stats=False), size, lambda m, x: m(x))
        gald = count_flops(lambda: MODELS[arch](num_classes=NUM_CLASSES, mode="official"), size, lambda m, x: m(x))
        fused = count_flops(
            lambda: fuse_conv_bn(MODELS[arch](num_classes=NUM_CLASSES, mode="official")), size, lambda m, x: m(x)
        )
        result["flops"].append({"size": size, "official_gflops": official / 1e9, "gald_gflops": gald / 1e9,
                                "gald_inference_path_gflops": fused / 1e9, "ratio": ratio(gald, official)})
        log.info("%s %d: FLOPs ratio %.4f (%.1f GF)", arch, size, gald / official, official / 1e9)

    theirs, ours = theirs.to(device), ours.to(device)
    result["eval"] = [bench_eval(theirs, ours, size, args, device, sync, ablation=size == args.ablation_size)
                      for size in args.sizes]
    for e, f in zip(result["eval"], result["flops"]):
        for row in e["rows"]:  # the same FLOPs for every row, so throughput is FLOPs / time
            row["gflop_per_s"] = f["official_gflops"] / row["median_s"]
    del theirs, ours
    gc.collect()
    result["train"] = [bench_train(authors, arch, size, args, device, sync) for size in args.train_sizes]
    return result


def bench_eval(theirs, ours, size, args, device, sync, *, ablation: bool) -> dict[str, Any]:
    x, _ = make_batch(size, device)
    chains = lever_chain(args.levers, EVAL_LEVERS)
    if not ablation:
        chains = chains[-1:]
    fns = {"official": official_eval_fn(theirs, x)}
    compile_s = None
    for levers in chains:
        model = prepare_eval_model(ours, levers)
        if "compile" in levers:
            model = compile_model(model)
            run = gald_eval_fn(model, x, levers)
            t0 = time.perf_counter()
            run()  # compiles
            if sync:
                sync()
            compile_s = time.perf_counter() - t0
            log.info("  compiled in %.1f s (first call)", compile_s)
        fns[config_name(levers)] = gald_eval_fn(model, x, levers)
    reference = fns["official"]()
    diffs = {name: float((fn() - reference).abs().max()) for name, fn in fns.items()}
    log.info("eval %s %d×%d: %d configurations, %d warm-up + %d timed rounds", ours.config["arch"], size, size,
             len(fns), args.warmup, args.repeats)
    times = time_alternating(fns, repeats=args.repeats, warmup=args.warmup, sync=sync)
    base = median(times["official"])
    rows = []
    for name, ts in times.items():
        rows.append({"config": name, "times_s": ts, "median_s": median(ts), "ratio": ratio(median(ts), base),
                     "max_abs_diff_vs_official": diffs[name]})
        log.info("  %-55s median %.3f s  ratio %.3f  max|diff| %.1e", name, median(ts), rows[-1]["ratio"], diffs[name])
    return {"size": size, "rows": rows, "compile_s": compile_s, "levers": list(chains[-1])}


def bench_train(authors, arch, size, args, device, sync) -> dict[str, Any]:
    x, y = make_batch(size, device)
    chains = args.train_configs
    theirs, ours = build_pair(authors, arch, seed=0)
    steps = {"official": make_train_step(theirs.to(device), "official", x, y)}
    # One model per memory layout and convolution path; checkpointing is a switch on it, set by the
    # step function of each configuration.
    copies: dict[tuple[str, ...], nn.Module] = {}
    for levers in chains:
        structural = tuple(x for x in ("channels_last", "nnpack") if x in levers)
        if structural not in copies:
            copies[structural] = prepare_train_model(copy.deepcopy(ours), structural, device)
        model = copies[structural]
        inner = make_train_step(model, "gald", x, y)

        def step(inner=inner, model=model, levers=levers) -> float:
            set_checkpointing(model, levers, args.checkpoint_stages)
            return inner()

        steps[config_name(levers)] = step
    log.info("train %s %d×%d: %d configurations, %d warm-up + %d timed rounds", arch, size, size, len(steps),
             args.warmup, args.repeats)
    times = time_alternating(steps, repeats=args.repeats, warmup=args.warmup, sync=sync)
    del theirs, ours, copies, steps
    gc.collect()
    base = median(times["official"])
    rows = []
    for name, ts in times.items():
        levers = next((c for c in chains if config_name(c) == name), ())
        spec = {"impl": "official" if name == "official" else "gald", "arch": arch, "size": size,
                "levers": list(levers), "threads": args.threads, "device": str(device),
                "official_repo": args.official_repo, "checkpoint_stages": args.checkpoint_stages}
        mem = run_memory_child(spec)
        rows.append({"config": name, "times_s": ts, "median_s": median(ts), "ratio": ratio(median(ts), base),
                     "memory": mem})
        log.info("  %-40s step median %.3f s  ratio %.3f  peak memory +%.0f MiB", name, median(ts),
                 rows[-1]["ratio"], mem["delta_mib"])
    official_mem = rows[0]["memory"]["delta_mib"]
    for r in rows:
        r["memory_ratio"] = ratio(r["memory"]["delta_mib"], official_mem)
    return {"size": size, "rows": rows, "configs": [list(c) for c in chains]}


# Large convolutions of the network's own shapes at 1/8 of a 513² input (65²): the dilated 3×3s
# of layer3 / layer4 and a wide 1×1. Their best throughput is the ceiling for the whole network.
CEILING_SHAPES = ((256, 3, 2), (512, 3, 4), (1024, 1, 1))


def conv_ceiling_gflop_per_s(device: torch.device, side: int = 65, repeats: int = 5) -> float:
    """The best fp32 throughput of single large convolutions (``CEILING_SHAPES``, channels_last,
    inference_mode, median of ``repeats``): what this machine's convolution kernels reach at best,
    a practical ceiling for a whole network made of them."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    best = 0.0
    with torch.inference_mode():
        for channels, k, dilation in CEILING_SHAPES:
            x = torch.randn(1, channels, side, side, device=device).contiguous(memory_format=torch.channels_last)
            w = torch.randn(channels, channels, k, k, device=device).contiguous(memory_format=torch.channels_last)
            run = lambda x=x, w=w, k=k, d=dilation: F.conv2d(x, w, padding=d * (k // 2), dilation=d)  # noqa: E731
            run()
            sync()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                sync()
                times.append(time.perf_counter() - t0)
            best = max(best, 2 * channels * channels * k * k * side * side / median(times) / 1e9)
    return best


def verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target, per arch and size, with the measured ratio of the full-lever configuration."""
    out = []
    for r in results:
        out.append({"arch": r["arch"], "what": "parameters", "ratio": r["parameters"]["ratio"], "target": "== 1.000",
                    "met": r["parameters"]["official"] == r["parameters"]["gald"]})
        for f in r["flops"]:
            out.append({"arch": r["arch"], "what": f"FLOPs {f['size']}", "ratio": f["ratio"], "target": "== 1.000",
                        "met": abs(f["ratio"] - 1) < 5e-4})
        for e in r["eval"]:
            row = fastest_gald_row(e["rows"])
            out.append(_verdict(r["arch"], f"eval latency {e['size']}, fastest ({row['config']})", row["ratio"],
                                "eval_latency"))
        for t in r["train"]:
            ours = [row for row in t["rows"] if row["config"] != "official"]
            fastest = min(ours, key=lambda row: row["ratio"])
            leanest = min(ours, key=lambda row: row["memory_ratio"])
            out.append(_verdict(r["arch"], f"train step time {t['size']}, fastest ({fastest['config']})",
                                fastest["ratio"], "train_step_time"))
            out.append(_verdict(r["arch"], f"train peak memory {t['size']}, leanest ({leanest['config']})",
                                leanest["memory_ratio"], "train_peak_memory"))
            # Both at once: the fastest configuration within the memory target.
            lean = [row for row in ours if row["memory_ratio"] <= TARGETS["train_peak_memory"]]
            if lean:
                both = min(lean, key=lambda row: row["ratio"])
                out.append(_verdict(r["arch"], f"train step time {t['size']} at memory <= "
                                    f"{TARGETS['train_peak_memory']} ({both['config']}, memory {both['memory_ratio']:.3f})",
                                    both["ratio"], "train_step_time"))
    return out


def fastest_gald_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest ``gald`` row of an eval measurement (row 0 is the authors' network)."""
    return min(rows[1:], key=lambda row: row["ratio"])


def _verdict(arch: str, what: str, value: float, target: str) -> dict[str, Any]:
    return {"arch": arch, "what": what, "ratio": value, "target": f"<= {TARGETS[target]}",
            "met": value <= TARGETS[target]}


def to_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        (
            f"gald (official mode) vs the authors' GALDNet.py, same process, same weights and inputs "
            f"({env['device']}, {env['threads']} threads, torch {env['torch']}, fp32, batch 1; median of "
            f"{report['settings']['repeats']} A/B-alternated rounds after {report['settings']['warmup']} warm-up). "
            f"Ratios are gald / official."
        ),
        "",
        f"Command: `{report['command']}`",
        "",
        "| arch | what | gald / official | target | met |",
        "|---|---|---|---|---|",
    ]
    for v in report["verdicts"]:
        lines.append(f"| {v['arch']} | {v['what']} | {v['ratio']:.3f} | {v['target']} | {'yes' if v['met'] else '**no**'} |")
    for r in report["results"]:
        for e in r["eval"]:
            lines += ["", f"Eval forward, {r['arch']}, 1×3×{e['size']}×{e['size']} (levers added cumulatively):", "",
                      "| configuration | median (s) | ratio | GFLOP/s | max abs diff vs official |", "|---|---|---|---|---|"]
            for row in e["rows"]:
                lines.append(f"| {row['config']} | {row['median_s']:.3f} | {row['ratio']:.3f} | "
                             f"{row.get('gflop_per_s', float('nan')):.0f} | {row['max_abs_diff_vs_official']:.1e} |")
            ceiling = env.get("conv_ceiling_gflop_per_s")
            if ceiling and "gflop_per_s" in e["rows"][0]:
                official, ours = e["rows"][0]["gflop_per_s"], fastest_gald_row(e["rows"])["gflop_per_s"]
                need = official / TARGETS["eval_latency"]
                lines.append(f"\nAt equal FLOPs the ratio is a throughput ratio: the authors' network runs at {official:.0f} "
                             f"GFLOP/s, gald's fastest row at {ours:.0f}; the {TARGETS['eval_latency']} target needs "
                             f"{need:.0f} for the whole network. The best single direct convolution of its shapes reaches "
                             f"{ceiling:.0f} GFLOP/s on this machine (`CEILING_SHAPES`, same run)"
                             + ("; rows above it compute some convolutions with fewer multiplications than the FLOPs "
                                "counted (nnpack's fast-convolution algorithms)." if ours > ceiling else "."))
            if e["compile_s"] is not None:
                lines.append(f"\ntorch.compile: {e['compile_s']:.1f} s for the first call at this size (not in the medians).")
        for t in r["train"]:
            lines += ["", f"Training step, {r['arch']}, 1×3×{t['size']}×{t['size']} (memory: fresh process per row):", "",
                      "| configuration | step median (s) | time ratio | peak memory growth (MiB) | memory ratio |",
                      "|---|---|---|---|---|"]
            for row in t["rows"]:
                lines.append(f"| {row['config']} | {row['median_s']:.3f} | {row['ratio']:.3f} | "
                             f"{row['memory']['delta_mib']:.0f} | {row['memory_ratio']:.3f} |")
            if any("checkpointing" in c or "selective" in c for c in t["configs"]):
                lines.append(f"\ncheckpointing / selective recompute the residual blocks of "
                             f"{', '.join(report['settings']['checkpoint_stages'])} in backward: whole blocks "
                             f"(policy \"full\"), or all but their 3×3 convolutions, whose outputs are kept "
                             f"(policy \"selective\").")
    return "\n".join(lines)


def cpu_name() -> str:
    """``CPU (<model name>, <n> cores)`` from /proc/cpuinfo where it exists."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    return f"CPU ({name}, {os.cpu_count()} cores)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-repo", help="checkout of github.com/lxtGH/GALD-Net")
    parser.add_argument("--archs", default="r50,r101", help="comma list of r50, r101")
    parser.add_argument("--sizes", type=int, nargs="+", default=[513, 769], help="eval input sides")
    parser.add_argument("--ablation-size", type=int, default=None,
                        help="eval size with one row per cumulative lever set (default: the first of --sizes)")
    parser.add_argument("--train-sizes", type=int, nargs="*", default=[513], help="training-step input sides")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--levers", default=",".join(EVAL_LEVERS), help=f"eval levers, comma list of {EVAL_LEVERS}")
    parser.add_argument("--train-configs", default=TRAIN_CONFIGS,
                        help=f"training configurations, comma list; each 'eager' or '+'-joined levers of {TRAIN_LEVERS}")
    parser.add_argument("--checkpoint-stages", default=",".join(STAGES),
                        help="backbone stages the checkpointing lever recomputes (comma list)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "official_speed"),
                        help="output path without extension (.json and .md are written)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return args
    if not args.official_repo:
        parser.error("--official-repo PATH is required (a checkout of github.com/lxtGH/GALD-Net)")
    bad = [a for a in args.archs.split(",") if a not in ARCH_NAMES]
    if bad:
        parser.error(f"unknown arch(s) {bad}; valid: {sorted(ARCH_NAMES)}")
    args.archs = [ARCH_NAMES[a] for a in args.archs.split(",")]
    args.levers = [x for x in args.levers.split(",") if x]
    try:
        args.checkpoint_stages = list(checkpointed_stages([x for x in args.checkpoint_stages.split(",") if x]))
    except ValueError as e:
        parser.error(str(e))
    try:
        lever_chain(args.levers, EVAL_LEVERS)
        args.train_configs = train_configs(args.train_configs)
    except ValueError as e:
        parser.error(str(e))
    if any(s < MIN_TRAIN_SIZE for s in args.train_sizes):
        parser.error(
            f"--train-sizes must be >= {MIN_TRAIN_SIZE}: below that the authors' LD reaches a 1×1 map, on which "
            "BatchNorm cannot train at batch 1"
        )
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    args.ablation_size = args.ablation_size or args.sizes[0]
    if args.ablation_size not in args.sizes:
        parser.error(f"--ablation-size {args.ablation_size} is not one of --sizes {args.sizes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    authors = authors_module(args.official_repo)
    ceiling = conv_ceiling_gflop_per_s(device)
    log.info("best single convolution: %.0f GFLOP/s", ceiling)
    results = [bench_arch(authors, arch, args, device) for arch in args.archs]
    report = {
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "conv_ceiling_gflop_per_s": ceiling,
        },
        "command": "python benchmarks/official_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "sizes": args.sizes,
                     "train_sizes": args.train_sizes, "levers": args.levers,
                     "train_configs": [list(c) for c in args.train_configs],
                     "checkpoint_stages": args.checkpoint_stages,
                     "ablation_size": args.ablation_size},
        "results": results,
    }
    report["verdicts"] = verdicts(results)
    md = to_markdown(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    log.info("\n%s", md)
    log.info("wrote %s.json and %s.md", args.out, args.out)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    sys.exit(main())
