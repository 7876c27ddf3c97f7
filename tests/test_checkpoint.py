import os
import random

import numpy as np
import pytest
import torch

from gald.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from gald.errors import CheckpointWriteError


def test_roundtrip_is_weights_only_loadable(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "step": 3, "config": {"a": [1, 2], "b": None}, "rng": rng_state()}
    path = tmp_path / "c.pt"
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))


def test_rng_state_restores_all_generators():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(CheckpointWriteError, match=r"c\.pt \(\d+ MiB free in .*\): boom; the previous file is unchanged"):
        save_checkpoint({"step": 2, "bad": Boom()}, path)  # a full disk is told apart by the free space
    assert load_checkpoint(path)["step"] == 1
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
