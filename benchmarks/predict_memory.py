"""Peak memory of ``python -m gald.predict`` at its pixel limits: python benchmarks/predict_memory.py

Writes images of ``MAX_PIXELS`` (40 MP, 5000 × 8000) and of ``WHOLE_MAX_PIXELS`` (16 MP,
3200 × 5000), smooth gradients with noise, and runs ``python -m gald.predict`` with the shipped
model in a fresh process per case, one thread, recording each child's own peak resident memory
(``ru_maxrss`` from ``os.wait4``) and wall time:

* the default protocol (the shipped model's: the whole image) at its own limit, 16 MP;
* ``--mode auto`` (sliding windows) at 40 MP;
* ``--mode whole`` at 40 MP, with the whole-image limit raised to allow it.

The target of the reliability issue: at most 4 GiB at the limit. Writes
``benchmarks/results/predict_memory.json``; ``--smoke`` runs small images for CI.
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

from gald.data.images import MAX_PIXELS, WHOLE_MAX_PIXELS

HERE = os.path.dirname(os.path.abspath(__file__))


def run(image: str, case: str, flags: list[str], out: str, pixels: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gald.predict", image, "--out", out, "--no-progress", "--force", *flags]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the running maximum
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"gald.predict {' '.join(flags)} failed: {err.read().decode()[-2000:]}")
    return {"case": case, "flags": flags, "pixels": pixels, "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3),
            "seconds": round(seconds, 1)}


def write_image(path: str, h: int, w: int) -> None:
    """In a child process: Linux counts a parent's peak memory at fork in its children's ``ru_maxrss``,
    so this process must never hold the image (gigabytes while it is made)."""
    code = (
        "import numpy as np, sys\nfrom PIL import Image\n"
        f"h, w = {h}, {w}\nrng = np.random.default_rng(0)\n"
        "ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)\n"
        "Image.fromarray(np.clip(ramp + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)).save(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, path], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small images, for CI; nothing written")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "predict_memory.json"))
    args = parser.parse_args()
    big, whole = ((400, 640), (200, 320)) if args.smoke else ((5000, 8000), (3200, 5000))
    assert big[0] * big[1] <= MAX_PIXELS and whole[0] * whole[1] <= WHOLE_MAX_PIXELS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (h, w) in (("big", big), ("whole", whole)):
            write_image(os.path.join(tmp, f"{name}.png"), h, w)
        cases = [
            ("default protocol (whole image) at its limit", "whole", [], whole),
            ("--mode auto at the pixel limit", "big", ["--mode", "auto"], big),
            ("--mode whole at the pixel limit", "big", ["--mode", "whole", "--max-whole-pixels", str(MAX_PIXELS)], big),
        ]
        for i, (case, image, flags, (h, w)) in enumerate(cases):
            rows.append(run(os.path.join(tmp, f"{image}.png"), case, flags, os.path.join(tmp, f"out-{i}"), h * w))
    record = {
        "command": "python benchmarks/predict_memory.py" + (" --smoke" if args.smoke else ""),
        "limits": {"max_pixels": MAX_PIXELS, "whole_max_pixels": WHOLE_MAX_PIXELS},
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
