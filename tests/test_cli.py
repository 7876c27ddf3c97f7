"""Every ``python -m gald.X`` command answers ``--help`` (one interpreter runs them all, as ``-m`` does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_import_graph import ENTRY_POINTS

_RUN_ALL = """
import contextlib, io, json, runpy, sys
out = {}
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
            code = None
        except SystemExit as exit:
            code = exit.code
    out[" ".join(argv)] = [code, text.getvalue()]
print(json.dumps(out))
"""

COMMANDS = [[name, "--help"] for name in sorted(ENTRY_POINTS)] + [["gald.train", "--task", "detection", "--help"]]


@pytest.fixture(scope="module")
def helps():
    done = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", _RUN_ALL, json.dumps(COMMANDS)],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS])
def test_help_exits_0_with_a_usage(helps, command):
    code, text = helps[command]
    assert code == 0 and text.startswith("usage:"), (code, text[:200])


def test_train_help_names_the_detection_task(helps):
    assert "--task {segmentation,detection}" in helps["gald.train --help"][1]
    detection = helps["gald.train --task detection --help"][1]
    assert detection.startswith("usage: python -m gald.train --task detection") and "--placement" in detection
