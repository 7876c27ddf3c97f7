"""How long the app's actions take on this CPU: python benchmarks/app_latency.py

Times :class:`gald.app.Page`'s handlers — the functions the page runs — with the shipped model on
two sizes: a benchmark scene (128×256) and the largest view (1024 px longest side; a 512×1024
scene). Per size, in one process: ``segment`` (every view of a new image), ``click`` (the context
probe at a ground pixel) and ``swap_sky`` (the counterfactual). The first call of each is reported
apart (``first_s``: lazy imports and allocator warm-up), then the median and maximum of
``--repeats`` calls, interleaved. ``--threads`` torch threads (default 2, the issue's "2 cores").
Writes ``benchmarks/results/app_latency.json``; ``--smoke`` runs one repeat on the small size and
writes nothing (for CI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # _results, beside this script
from _results import machine, report  # noqa: E402
SIZES = {"benchmark scene 128×256": (128, 256), "largest view 512×1024": (512, 1024)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="one repeat, the small size only, nothing written")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "app_latency.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from gald.app import Page, load_predictor
    from gald.data.synthetic import make_scene

    predictor = load_predictor()
    page = Page(predictor)
    repeats = 1 if args.smoke else args.repeats
    sizes = dict(list(SIZES.items())[:1]) if args.smoke else SIZES
    rows = {}
    for name, size in sizes.items():
        image = make_scene(0, 4, split="val", size=size).image  # a day scene: the swap turns it to dusk
        times: dict[str, list[float]] = {"segment": [], "click": [], "swap_sky": []}
        first = {}
        state = None
        for r in range(repeats + 1):  # round 0: the first calls
            for action in times:
                t0 = time.perf_counter()
                if action == "segment":
                    state = page.segment(image)["state"]
                elif action == "click":
                    k = page.zoom(state)
                    page.click(state, (size[1] // 3) * k, (size[0] * 7 // 8) * k)  # a ground pixel
                else:
                    page.swap_sky(state)
                elapsed = time.perf_counter() - t0
                if r == 0:
                    first[action] = round(elapsed, 3)
                else:
                    times[action].append(elapsed)
        rows[name] = {
            action: {"first_s": first[action], "median_s": round(statistics.median(t), 3), "max_s": round(max(t), 3)}
            for action, t in times.items()
        }
    record = {
        "command": "python benchmarks/app_latency.py",
        "model": "the shipped default (gald/assets)",
        "threads": args.threads,
        "repeats": repeats,
        "torch": torch.__version__,
        "machine": machine(),
        "target_s": {"click": 2.0},
        "results": rows,
    }
    report(record, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
