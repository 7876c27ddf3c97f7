"""The notebooks keep the settings that make `pytest --nbval notebooks/` pass on any machine.

nbval itself re-runs the notebooks (``make test`` ends with it); these checks are static and fast:
thread count, seeds and log lines without clock times set first, stored outputs complete and free
of stderr and local paths, live training cells ignored by nbval and followed by assertions, only
``gald`` (plus numpy, torch, matplotlib and the standard library) imported, and every asset they
read committed with its card. ``test_notebooks_outputs.py`` checks the outputs hold nothing that
changes between runs.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra (nbformat) is not installed")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ASSETS = ROOT / "notebooks" / "assets"
LIVE_TRAINING = re.compile(r"\b(train\.main|run_cell|train_detection|train_detection_main)\(")
ALLOWED_IMPORTS = {"gald", "numpy", "torch", "matplotlib", "IPython", "PIL"} | set(sys.stdlib_module_names)
LOCAL_PATH = re.compile(r"(/work/|/home/|/root/|/Users/|C:\\\\|/tmp/)")


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_pins_threads_seeds_and_progress_bars(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3", "use the plain python3 kernel (CI has no named env)"
    first = code_cells(path)[0].source
    # one library call pins threads, seeds, determinism, progress bars and log format (tests/test_figures.py)
    assert f'setup_notebook("{path.stem}")' in first, f"{path.name}: the first code cell must call setup_notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_complete_and_portable(path):
    cells = code_cells(path)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), (
        f"{path.name}: re-run the whole notebook (make notebooks) so the stored outputs are in order")
    figures = 0
    for i, cell in enumerate(cells, 1):
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name} cell {i} stored an error: {out.get('evalue')}"
            assert out.get("name") != "stderr", f"{path.name} cell {i} stored stderr, which nbval would compare"
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            assert not LOCAL_PATH.search(text), f"{path.name} cell {i} prints a local path: {LOCAL_PATH.search(text)[0]}"
            figures += "image/png" in out.get("data", {})
    assert figures >= 1, f"{path.name} shows no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_live_training_is_ignored_and_followed_by_assertions(path):
    cells = code_cells(path)
    for i, cell in enumerate(cells):
        if LIVE_TRAINING.search(cell.source) and "assert" not in cell.source.split("\n")[0]:
            if cell.source.lstrip().startswith("# NBVAL_IGNORE_OUTPUT"):
                assert i + 1 < len(cells) and "assert" in cells[i + 1].source, (
                    f"{path.name}: the live cell {i + 1} needs a following cell that asserts what must hold")
            else:  # a re-run of a stored cell (no training) may be compared
                assert "again" in cell.source, f"{path.name}: live training in cell {i + 1} must be # NBVAL_IGNORE_OUTPUT"
    for cell in cells:
        assert "NBVAL_SKIP" not in cell.source and "nbval-lax" not in cell.source, f"{path.name}: no skipped cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_only_call_gald(path):
    for cell in code_cells(path):
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_IMPORTS, f"{path.name} imports {name}: put that logic in gald"


def test_assets_are_small_carded_and_referenced():
    assets = sorted(ASSETS.glob("*.pt"))
    total = sum(p.stat().st_size for p in assets)
    assert total <= 8 * 2**20, f"notebook assets take {total / 2**20:.1f} MB (limit 8 MB)"
    for pt in assets:
        card = json.loads(pt.with_suffix(".json").read_text())
        assert card["command"].startswith("python scripts/make_notebook_assets.py"), pt.name
        assert card["bytes"] == pt.stat().st_size, f"{pt.name} changed since its card was written: re-run the command"
    referenced = set()
    for path in NOTEBOOKS:
        for cell in code_cells(path):
            referenced |= set(re.findall(r'ASSETS / f?"([\w{}]+)\.pt"', cell.source))
            referenced |= set(re.findall(r'card\("(\w+)"\)', cell.source))
    for name in referenced:
        if "{" not in name:
            assert (ASSETS / f"{name}.json").is_file(), f"a notebook reads assets/{name}, which is not committed"
