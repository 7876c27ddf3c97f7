"""Peak memory of ``python -m gald.predict`` at the pixel limit: python benchmarks/predict_memory.py

Writes one image of ``MAX_PIXELS`` (40 MP, 5000 × 8000, a smooth gradient with noise) and runs
``python -m gald.predict`` on it in a fresh process per mode (``auto``, the default, and
``whole``) with the shipped model, one thread, recording each child's own peak resident memory
(``ru_maxrss`` from ``os.wait4``) and wall time. The target of the reliability issue: at most 4 GiB. Writes
``benchmarks/results/predict_memory.json``; ``--smoke`` runs a 0.25 MP image for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from gald.data.images import MAX_PIXELS

HERE = os.path.dirname(os.path.abspath(__file__))


def run(image: str, mode: str, out: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gald.predict", image, "--out", out, "--mode", mode, "--no-progress", "--force"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the running maximum
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"gald.predict --mode {mode} failed: {err.read().decode()[-2000:]}")
    return {"mode": mode, "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a 0.25 MP image, for CI")
    parser.add_argument("--modes", nargs="+", default=["whole", "auto"])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "predict_memory.json"))
    args = parser.parse_args()
    h, w = (400, 640) if args.smoke else (5000, 8000)
    assert h * w <= MAX_PIXELS
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    image = np.clip(ramp + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.png")
        Image.fromarray(image).save(path)
        del image, ramp
        rows = [run(path, mode, os.path.join(tmp, f"out-{mode}")) for mode in args.modes]
    record = {
        "command": "python benchmarks/predict_memory.py" + (" --smoke" if args.smoke else ""),
        "image": {"height": h, "width": w, "pixels": h * w, "max_pixels": MAX_PIXELS},
        "model": "the shipped default (gald/assets)", "threads": 1,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": rows, "target_gib": 4.0,
    }
    if not args.smoke:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
