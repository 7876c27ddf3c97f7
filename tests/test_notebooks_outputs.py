"""`pytest --nbval notebooks/`, typed as is, passes: stable stored outputs and the right kernel.

nbval compares each cell's fresh output with the stored one, and without a sanitize file any text that
changes from run to run fails it: a log line's time of day (``19:37:05 INFO gald.evaluate: ...``) or a
random temporary folder (``/tmp/gald-nb-bct856uq/results``). Cells whose output nbval ignores are
checked too: a user reads them, and they should not tell the next reader where someone's temp dir was.
Without ``--nbval-current-env`` nbval starts the kernel the notebooks name (``python3``), so that name
must resolve to the interpreter running the tests (the venv's), not to some other Python.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# A time of day, HH:MM:SS (also inside an ISO timestamp); not durations like 1:05 or ratios like 1:2:3.
CLOCK_TIME = re.compile(r"(?<!\d)(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?!\d)")
# An absolute path into a temp dir: POSIX, macOS (mkdtemp's /var/folders/..), Windows, and this machine's
# own (TMPDIR). Only at the start of a path, so a relative folder named tmp (runs/tmp/x) is fine.
_TEMP_DIRS = sorted({"/tmp", "/var/tmp", "/var/folders", "/private/var/folders", tempfile.gettempdir()})
TEMP_PATH = re.compile(
    "|".join(r"(?<![\w.~-])" + re.escape(d.rstrip("/\\")) + r"[/\\]" for d in _TEMP_DIRS)
    + r"|\\AppData\\Local\\Temp\\",
    re.IGNORECASE,
)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else json.dumps(value)


def unstable_outputs(notebook: dict) -> list[tuple[int, str]]:
    """Clock times and temp paths in a notebook's stored outputs.

    Args:
        notebook: The notebook as JSON (``json.load`` of the ``.ipynb``).

    Returns:
        ``(code cell number from 1, matched text)`` for each finding, cell by cell; images are skipped
        (base64 may spell ``/tmp/`` by chance, and nbval does not compare them).
    """
    found = []
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    for number, cell in enumerate(code_cells, 1):
        for out in cell.get("outputs", []):
            texts = [_text(out.get("text", ""))]
            texts += [_text(v) for k, v in out.get("data", {}).items() if not k.startswith("image/")]
            for text in texts:
                found += [(number, m[0]) for pattern in (CLOCK_TIME, TEMP_PATH) for m in pattern.finditer(text)]
    return found


def _notebook(*outputs: dict) -> dict:
    return {"cells": [{"cell_type": "markdown", "source": "# 19:37:05 in /tmp/ prose is not output"}]
            + [{"cell_type": "code", "source": "", "outputs": [o]} for o in outputs]}


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_hold_no_clock_time_or_temp_path(path):
    found = unstable_outputs(json.loads(path.read_text()))
    assert not found, f"{path.name}: (code cell, text) that differ between runs; re-run make notebooks: {found}"


def test_checker_finds_what_broke_nbval():
    bad = _notebook(
        {"output_type": "stream", "name": "stdout",
         "text": ["19:37:05 INFO gald.evaluate: wrote 8 prediction PNGs to /tmp/gald-nb-bct856uq/results\n"]},
        {"output_type": "execute_result", "data": {"text/plain": "PosixPath('/var/folders/x1/T/tmpab_12/m.pt')"}},
        {"output_type": "display_data", "data": {"text/markdown": "written 2026-11-29T23:59:59Z"}},
        {"output_type": "stream", "name": "stdout", "text": "C:\\Users\\me\\AppData\\Local\\Temp\\tmp1\\m.pt"},
    )
    assert unstable_outputs(bad) == [
        (1, "19:37:05"), (1, "/tmp/"), (2, "/var/folders/"), (3, "23:59:59"), (4, "\\AppData\\Local\\Temp\\"),
    ]


def test_checker_accepts_what_the_notebooks_print_now():
    good = _notebook(
        {"output_type": "stream", "name": "stdout",
         "text": "INFO gald.evaluate: wrote 8 prediction PNGs to runs/07_real_data/results\n"
                 "val mIoU after 40 iterations: 22.37 (6 s of training), lr 0.02, 1:05 min, ratio 1:2:3, runs/tmp/x\n"},
        {"output_type": "display_data", "data": {"text/plain": "<Figure size 1000x320 with 2 Axes>",
                                                 "image/png": "iVBORw0KGgo/tmp/AAA"}},
    )
    assert unstable_outputs(good) == []


def test_checker_knows_this_machines_temp_dir():
    path = str(Path(tempfile.gettempdir()) / "gald-nb-x" / "m.pt")
    assert unstable_outputs(_notebook({"output_type": "stream", "name": "stdout", "text": path}))


def _python3_kernel_bin_dir() -> Path:
    manager = pytest.importorskip("jupyter_client.manager", reason="the notebooks extra is not installed")
    command = manager.KernelManager(kernel_name="python3").format_kernel_cmd()  # what nbval launches
    return Path(command[0]).absolute().parent


def test_python3_kernel_is_this_interpreter():
    # The same bin/ folder means the same venv; resolving links would equate the venv with the system Python.
    assert _python3_kernel_bin_dir() == Path(sys.executable).absolute().parent


def test_a_users_own_python3_kernel_does_not_shadow_the_venvs(tmp_path, monkeypatch):
    # A developer's ~/.local/share/jupyter/kernels/python3 may point at another Python; inside a venv
    # jupyter prefers the venv's kernelspec (ipykernel installs one there), so the notebooks still run here.
    spec = tmp_path / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": ["/opt/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f",
                                         "{connection_file}"], "display_name": "other", "language": "python"}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    assert _python3_kernel_bin_dir() == Path(sys.executable).absolute().parent
