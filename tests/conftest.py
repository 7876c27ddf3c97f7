"""Shared test fixtures: offline guard, determinism, tiny models."""

from __future__ import annotations

import socket

import pytest
import torch


class DownloadAttempted(RuntimeError):
    """Raised when a test tries to reach the network (weights, datasets)."""


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """Make any download attempt fail loudly: torch.hub, torchvision weights and raw sockets."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise DownloadAttempted(f"a test tried to download: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or "/" in host):
            return real_connect(self, address)
        raise DownloadAttempted(f"a test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def restore_threads():
    """Scripts under test (benchmarks/*.py) set torch's thread count; later tests get it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script, not a package module) for its functions."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
