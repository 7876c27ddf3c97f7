"""CPU inference: gald's in-process paths against ONNX Runtime on gald's own export.

    python benchmarks/cpu_inference.py [--rows tiny,r50-paper-513,...] [--repeats 10] [--threads 2]

Rows: the shipped tiny model at 128×256, and GALD-R50 / R101 (CGNL, d = 8, 19 classes, random
weights: speed does not depend on their values) in the paper's and the official mode at 513² and
769², batch 1. Paths, in one process, interleaved round by round, median of ``--repeats``:

* ``eager`` — ``model.eval()`` under ``torch.inference_mode()``;
* ``optimized`` — :func:`gald.deploy.fuse.optimize_for_inference` (BatchNorm folded, channels-last);
* ``optimized + nnpack`` — and the head's wide 3×3 convolutions on NNPACK;
* ``compiled`` (with ``--compile``) — ``torch.compile`` of ``optimized`` with Inductor's freezing
  (weights folded into the graph as constants); its compile time is reported apart;
* ``onnxruntime`` — gald's ONNX export (:func:`gald.deploy.export.export_onnx`) of the same model,
  re-exported with this row's static shape, graph optimisation level ALL, ``intra_op_num_threads``
  = ``--threads``, one inter-op thread.

The network, its parameters and its FLOPs are the same on every path. Export times are reported
apart. Writes ``benchmarks/results/cpu_inference.json``; ``--smoke`` runs the tiny row with two
repeats and writes nothing (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # _results, beside this script
from _results import machine, write_json  # noqa: E402
ROWS = {
    "tiny-128x256": ("tiny", None, (128, 256)),
    "r50-paper-513": ("gald_resnet50", "paper", (513, 513)),
    "r50-official-513": ("gald_resnet50", "official", (513, 513)),
    "r101-paper-513": ("gald_resnet101", "paper", (513, 513)),
    "r101-official-513": ("gald_resnet101", "official", (513, 513)),
    "r50-paper-769": ("gald_resnet50", "paper", (769, 769)),
    "r50-official-769": ("gald_resnet50", "official", (769, 769)),
    "r101-paper-769": ("gald_resnet101", "paper", (769, 769)),
    "r101-official-769": ("gald_resnet101", "official", (769, 769)),
}


def build(arch: str, mode: str | None):
    import torch

    from gald.engine.predictor import load_predictor
    from gald.models import get_model

    if arch == "tiny":
        return load_predictor().model.eval()
    torch.manual_seed(0)
    return get_model(arch, num_classes=19, mode=mode, pretrained_backbone=None, aux=False).eval()


def ort_session(model, size, threads: int, folder: str):
    import onnxruntime as ort

    from gald.deploy.export import export_onnx

    path = os.path.join(folder, "model.onnx")
    t0 = time.perf_counter()
    export_onnx(model, path, example_size=size)
    export_s = time.perf_counter() - t0
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session, export_s


def run_row(name: str, repeats: int, threads: int, compile: bool = False) -> dict:
    import numpy as np
    import torch

    from gald.deploy.fuse import optimize_for_inference

    arch, mode, size = ROWS[name]
    model = build(arch, mode)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    paths = {
        "eager": model,
        "optimized": optimize_for_inference(model),
        "optimized + nnpack": optimize_for_inference(model, nnpack=True),
    }
    compile_s = None
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # parameters become graph constants: eval-only, as here
        compiled = torch.compile(paths["optimized"])
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        compile_s = time.perf_counter() - t0
        paths["compiled"] = compiled
    with tempfile.TemporaryDirectory() as folder:
        session, export_s = ort_session(model, size, threads, folder)
        feed = {"images": x.numpy()}
        with torch.inference_mode():
            ref = model(x)["out"]
            calls = {k: (lambda m=m: m(x)["out"]) for k, m in paths.items()}
            calls["onnxruntime"] = lambda: session.run(["logits"], feed)[0]
            agree = {}
            for k, call in calls.items():  # warm-up, and every path's labels against eager's
                out = call()
                out = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
                agree[k] = float((out.argmax(1) == ref.argmax(1)).float().mean())
            times = {k: [] for k in calls}
            for _ in range(repeats):
                for k, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    times[k].append(time.perf_counter() - t0)
    medians = {k: round(statistics.median(v), 4) for k, v in times.items()}
    best = min((k for k in medians if k != "onnxruntime"), key=medians.get)
    return {
        "size": list(size), "median_s": medians, "min_s": {k: round(min(v), 4) for k, v in times.items()},
        "labels_equal_to_eager": {k: round(v, 6) for k, v in agree.items()},
        "best_gald_path": best, "best_over_onnxruntime": round(medians[best] / medians["onnxruntime"], 3),
        "onnx_export_s": round(export_s, 1),
        **({"compile_s": round(compile_s, 1)} if compile_s is not None else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (freezing) of the optimized model")
    parser.add_argument("--smoke", action="store_true", help="the tiny row, two repeats, nothing written")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cpu_inference.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = ["tiny-128x256"] if args.smoke else args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    command = "python benchmarks/cpu_inference.py" + (" --compile" if args.compile else "") + (
        f" --rows {args.rows}" if args.rows != ",".join(ROWS) else "") + (f" --repeats {args.repeats}" if args.repeats != 10 else "")
    results = {}
    for name in rows:
        results[name] = {"command": command, **run_row(name, 2 if args.smoke else args.repeats, args.threads, args.compile)}
        print(name, json.dumps(results[name]["median_s"]), results[name]["best_over_onnxruntime"], flush=True)
        if not args.smoke:  # each row as it finishes: a long run keeps what it measured
            _write(args, results, torch)
    return 0


def _write(args, results: dict, torch) -> None:
    """Merge this run's rows into the result file (each row names the command that measured it)."""
    import onnxruntime as ort

    previous = {}
    if os.path.isfile(args.out):
        with open(args.out) as f:
            old = json.load(f)
        previous = {k: {"command": old.get("command"), **v} for k, v in old.get("rows", {}).items()}
    record = {
        "threads": args.threads, "batch": 1,
        "torch": torch.__version__, "onnxruntime": ort.__version__,
        "machine": machine(),
        "rows": {**previous, **results},
    }
    write_json(record, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
