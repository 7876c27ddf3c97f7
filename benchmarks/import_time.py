"""Start-up time of ``import gald`` and of every command's ``--help``: python benchmarks/import_time.py

Each measurement is a fresh ``python`` process (one thread), timed from the outside, repeated
``--repeats`` times; the median is reported, side by side for every checkout given with ``--repo``
(default: this one), so a before/after comparison is one run on one machine. Also reports, per
command, which optional heavy packages (gradio, matplotlib, captum, huggingface_hub, tensorboard,
onnx) the process imported. Writes ``benchmarks/results/import_time.json``; ``--smoke`` runs one
repeat of ``import gald`` only, for CI.

    python benchmarks/import_time.py --repo before=/path/to/old/checkout --repo after=.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HEAVY = ("gradio", "matplotlib", "captum", "huggingface_hub", "tensorboard", "onnx", "onnxruntime", "safetensors")
COMMANDS = {
    "import gald": ["-c", "import gald"],
    "gald.train --help": ["-m", "gald.train", "--help"],
    "gald.evaluate --help": ["-m", "gald.evaluate", "--help"],
    "gald.predict --help": ["-m", "gald.predict", "--help"],
    "gald.app --help": ["-m", "gald.app", "--help"],
}
# the top-level packages of HEAVY the process imported, printed to stderr at exit
PROBE = ("import atexit, sys, json; atexit.register(lambda: sys.stderr.write('\\nHEAVY ' + json.dumps(sorted("
         "{m.split('.')[0] for m in sys.modules} & set(%r))) + '\\n'))" % (HEAVY,))


def measure(repo: str, args: list[str], repeats: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.abspath(repo)}
    times, heavy = [], None
    for _ in range(repeats):
        cmd = [sys.executable, "-c", f"{PROBE}\nimport runpy, sys\n" + _runner(args)]
        t0 = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo)
        times.append(time.perf_counter() - t0)
        if result.returncode != 0:
            raise SystemExit(f"{args} failed in {repo}: {result.stderr[-1000:]}")
        heavy = json.loads(result.stderr.rsplit("HEAVY ", 1)[1])
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "heavy_modules": heavy}


def _runner(args: list[str]) -> str:
    if args[0] == "-c":
        return args[1]
    module, argv = args[1], args[2:]
    return (f"sys.argv = [{module!r}, *{argv!r}]\n"
            f"try:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="append", default=None, metavar="NAME=PATH",
                        help="a checkout to time (repeatable; default: this one, as 'current')")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per measurement")
    parser.add_argument("--smoke", action="store_true", help="one repeat of 'import gald', nothing written")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "import_time.json"))
    args = parser.parse_args()
    repos = dict(r.split("=", 1) for r in (args.repo or [f"current={os.path.dirname(HERE)}"]))
    commands = {"import gald": COMMANDS["import gald"]} if args.smoke else COMMANDS
    repeats = 1 if args.smoke else args.repeats
    rows = {name: {label: measure(path, argv, repeats) for label, path in repos.items()} for name, argv in commands.items()}
    record = {
        "command": "python benchmarks/import_time.py " + " ".join(f"--repo {r}" for r in (args.repo or [])),
        "repeats": repeats, "threads": 1, "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "repos": repos, "results": rows,
    }
    if not args.smoke:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
