"""One call at the top of a notebook, so that every machine prints the same numbers.

Example (the first cell of each notebook in ``notebooks/``)::

    from gald.viz.notebook import asset_card, setup_notebook
    WORK = setup_notebook("01_training")   # a fresh runs/01_training/ for the notebook's live runs
    card = asset_card("gald")              # assets/gald.json: command, config, history, metrics
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from gald.engine.runtime import log_to_stdout

__all__ = ["setup_notebook", "asset_card"]


def setup_notebook(name: str | None = None, *, seed: int = 0, threads: int = 1, root: str | os.PathLike = "runs") -> Path | None:
    """Make a notebook reproducible on CPU and quiet, and give it a fresh working folder.

    * one torch thread (reductions in a fixed order), ``seed`` for Python, NumPy and torch,
      deterministic algorithms;
    * no progress bars (``TQDM_DISABLE``, read by every later tqdm bar);
    * gald's log lines on stdout without the time of day;
    * the known harmless warning of tqdm without ipywidgets silenced;
    * figures inline (in IPython), saved at 300 dpi by default.

    Args:
        name: the notebook's name; its live runs go to ``root/name``, emptied first (a run that
            stopped half-way must not be resumed). ``None``: no folder.
        seed: the seed of every generator.
        threads: torch CPU threads.
        root: where the working folders live (git-ignored in this repository).

    Returns:
        The working folder, or ``None``.
    """
    os.environ["TQDM_DISABLE"] = "1"
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto (captum) without ipywidgets
    log_to_stdout(times=False)
    try:
        import matplotlib

        matplotlib.rcParams["savefig.dpi"] = 300
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:  # outside Jupyter: nothing to configure
        pass
    if name is None:
        return None
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\")):
        raise ValueError(f"setup_notebook: name must be a plain folder name, got {name!r}")
    work = Path(root) / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def asset_card(name: str, assets: str | os.PathLike = "assets") -> dict:
    """The JSON card of a committed notebook asset (``assets/<name>.json``): the command that made
    it, its config, history and recorded metrics."""
    return json.loads((Path(assets) / f"{name}.json").read_text())
