"""What every run needs around its loop: seeds, the device, autocast, and logging to stdout and ``train.log``."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

from gald.config import TrainConfig
from gald.errors import ConfigError

__all__ = ["seed_everything", "resolve_device", "autocast", "log_to_stdout", "run_logging"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (this process's GPU under torchrun, else the CPU) or a torch device string, checked.

    Raises:
        ConfigError: not a device string, or a device this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()  # 0 without a driver
        if (device.index or 0) >= count:
            raise ConfigError(f"--device {name!r} is not available on this machine ({count} CUDA devices)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name!r} is not available on this machine")
    return device


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


_TIMED_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


def _stdout_handler(root: logging.Logger) -> logging.Handler | None:
    return next((h for h in root.handlers if getattr(h, "_gald_stream", False)), None)


def log_to_stdout(times: bool = True) -> None:
    """Show ``gald.*`` log records (INFO and up) on stdout, through one handler per process.

    Training installs it itself, with times (:func:`run_logging`); call this first to choose the
    format. Calling it again changes the format of the existing handler instead of adding a second one.

    Args:
        times: Start each line with the time of day (``19:37:05 INFO gald.train: ...``). The notebooks
            pass ``False`` so that their stored outputs are the same on every run.
    """
    root = logging.getLogger("gald")
    root.setLevel(logging.INFO)
    root.propagate = False  # the handler lives here; avoid duplicates via the root logger
    handler = _stdout_handler(root)
    if handler is None:
        handler = logging.StreamHandler(sys.stdout)
        handler._gald_stream = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(_TIMED_FORMAT if times else logging.Formatter("%(levelname)s %(name)s: %(message)s"))


@contextlib.contextmanager
def run_logging(run_dir: str) -> Iterator[None]:
    """Log ``gald.*`` to stdout (handler added once per process) and, while open, to ``run_dir/train.log``.

    The stdout handler keeps the format an earlier :func:`log_to_stdout` chose; ``train.log`` always
    has times. The file handler is closed on exit, so later logging from the same process never lands
    in the log of a finished run (or fails because its folder was deleted).
    """
    root = logging.getLogger("gald")
    if _stdout_handler(root) is None:
        log_to_stdout()
    os.makedirs(run_dir, exist_ok=True)
    fh = logging.FileHandler(os.path.join(run_dir, "train.log"))
    fh.setFormatter(_TIMED_FORMAT)
    root.addHandler(fh)
    try:
        yield
    finally:
        root.removeHandler(fh)
        fh.close()
