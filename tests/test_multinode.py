"""Multi-node torchrun on one machine, rank-0-only writing, elastic restarts that resume exactly,
and a rendezvous that cannot form (issue #23). CPU, gloo, subprocesses; about a minute in all.

Every worker runs with a ``sitecustomize`` (test-only, on ``PYTHONPATH``) whose audit hook records
which rank opens which file for writing and renames which, and, when asked, SIGKILLs rank 0 as it is
about to rename its second ``last.pt`` into place: a worker dying mid-run, after a checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gald.engine.checkpoint import load_checkpoint

SITECUSTOMIZE = r'''
import os, signal, sys

_RUN = os.environ.get("GALD_AUDIT_RUN_DIR")
_LOG = os.environ.get("GALD_AUDIT_LOG")
_KILL = os.environ.get("GALD_KILL_AT_CHECKPOINT")
_renames = 0

def _hook(event, args):
    global _renames
    if event == "open" and _RUN and _LOG:
        path, mode = str(args[0]), args[1]
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        if isinstance(mode, int):
            writing = bool(mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and os.path.abspath(path).startswith(_RUN):
            with open(_LOG, "a") as f:  # the log lives outside the run folder
                f.write(f"{os.environ.get('RANK')} open {os.path.relpath(path, _RUN)}\n")
    elif event == "os.rename" and _RUN and _LOG:
        dst = str(args[1])
        if os.path.abspath(dst).startswith(_RUN):
            with open(_LOG, "a") as f:
                f.write(f"{os.environ.get('RANK')} rename {os.path.relpath(dst, _RUN)}\n")
            if dst.endswith("last.pt"):
                _renames += 1
                if (_KILL and _renames == int(_KILL) and os.environ.get("RANK") == "0"
                        and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"):
                    os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(_hook)
'''

SEG = ["--iterations", "6", "--checkpoint-interval", "2", "--eval-interval", "100", "--num-train", "8",
       "--num-val", "2", "--crop-size", "48", "64", "--depths", "1", "1", "1", "1", "--widths", "8", "8", "16", "16",
       "--head-channels", "16", "--aux-channels", "16", "--batch-size", "4", "--ohem-min-kept", "200",
       "--stage-iterations", "1", "--eval-batch-size", "2", "--ld-effect", "false"]
DET = ["--task", "detection", "--iterations", "4", "--checkpoint-interval", "2", "--num-train", "8", "--num-val", "2",
       "--image-size", "64", "96", "--depths", "1", "1", "1", "1", "--widths", "4", "8", "8", "16",
       "--fpn-channels", "16", "--batch-size", "4", "--warmup-iters", "1", "--log-interval", "1",
       "--eval-batch-size", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, run_dir: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "GALD_AUDIT_RUN_DIR": str(run_dir),
            "GALD_AUDIT_LOG": str(tmp_path / f"audit-{run_dir.name}.log"), **extra}


def _torchrun(launcher: list[str], args: list[str], out: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "gald.train", *args,
            "--output-dir", str(out), "--name", name]


def _single_node(tmp_path, args, name, **env):
    cmd = _torchrun(["--nproc_per_node=2", "--master_port", str(_free_port())], args, tmp_path / "runs", name)
    return subprocess.run(cmd, env=_env(tmp_path, tmp_path / "runs" / name, **env), capture_output=True, text=True,
                          timeout=200)


def _two_nodes(tmp_path, args, name):
    port = _free_port()
    launcher = ["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id", name]
    env = _env(tmp_path, tmp_path / "runs" / name)
    procs = [subprocess.Popen(_torchrun(launcher, args, tmp_path / "runs", name), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=200)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "model.pt")["model"]


def _audit(tmp_path: Path, name: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split(" ", 2)) for line in (tmp_path / f"audit-{name}.log").read_text().splitlines()]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("task, args", [("segmentation", SEG), ("detection", DET)])
def test_two_nodes_equal_one_node_bit_for_bit_and_only_rank_0_writes(tmp_path, task, args):
    """Two torchrun "nodes" on 127.0.0.1 (c10d rendezvous, one process each) train exactly what one
    node with two processes trains: the same ranks, batches and reductions."""
    result = _single_node(tmp_path, args, "one-node")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _two_nodes(tmp_path, args, "two-nodes")
    one, two = _weights(tmp_path / "runs" / "one-node"), _weights(tmp_path / "runs" / "two-nodes")
    assert one.keys() == two.keys()
    for k in one:
        assert torch.equal(one[k], two[k]), k
    metrics = json.loads((tmp_path / "runs" / "two-nodes" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    for name in ("one-node", "two-nodes"):
        events = _audit(tmp_path, name)
        assert events and {rank for rank, _, _ in events} == {"0"}, events  # rank 1 writes nothing
        # checkpoints are never opened for writing in place: a temp file, then an atomic rename
        opened = {path for _, kind, path in events if kind == "open"}
        assert not opened & {"last.pt", "model.pt"}, opened
        renamed = {path for _, kind, path in events if kind == "rename"}
        assert {"last.pt", "model.pt"} <= renamed


@pytest.mark.timeout(600)
@pytest.mark.parametrize("task, args", [("segmentation", SEG), ("detection", DET)])
def test_a_worker_killed_mid_run_is_restarted_and_the_run_ends_bit_identical(tmp_path, task, args):
    """torchrun --max-restarts=1; rank 0 is SIGKILLed as it renames its second last.pt (step 4) into
    place, so last.pt still holds step 2. The group restarts, every worker resumes from last.pt on
    its own (no --resume flag), and the final weights equal an uninterrupted run's."""
    straight = _single_node(tmp_path, args, "straight")
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    # the c10d rendezvous, as in scripts/slurm_train.sh. (Restarted processes once read their dead
    # peers' addresses from the store and failed to connect in 5 of 8 restarts;
    # init_distributed now gives every restart its own key prefix.)
    cmd = _torchrun(["--nnodes=1", "--nproc_per_node=2", "--max-restarts=1", "--rdzv-backend=c10d",
                     f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--rdzv-id=killed"], args, tmp_path / "runs", "killed")
    killed = subprocess.run(cmd, env=_env(tmp_path, tmp_path / "runs" / "killed", GALD_KILL_AT_CHECKPOINT="2"),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 0, killed.stdout[-3000:] + killed.stderr[-3000:]
    log = (tmp_path / "runs" / "killed" / "train.log").read_text()
    assert "resumed from" in log and "at step 2 (torchrun restart 1)" in log, log[-2000:]
    a, b = _weights(tmp_path / "runs" / "straight"), _weights(tmp_path / "runs" / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(120)
def test_a_process_group_that_never_forms_times_out_with_one_line(tmp_path):
    """Rank 0 of two, started alone: bounded by dist_timeout, one line naming the address, exit 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gald.train", *SEG, "--output-dir", str(tmp_path),
                             "--dist-timeout", "3"], env=env, capture_output=True, text=True, timeout=100)
    assert time.monotonic() - t0 < 60
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not form within 3 s at 127.0.0.1:" in lines[0], result.stderr[-2000:]


@pytest.mark.timeout(120)
def test_a_rendezvous_that_never_completes_is_bounded(tmp_path):
    """One node of a two-node job: torchrun's rendezvous gives up after join_timeout, not never."""
    port = _free_port()
    cmd = _torchrun(["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                     "--rdzv-conf", "join_timeout=5"], SEG, tmp_path, "alone")
    t0 = time.monotonic()
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=100)
    assert time.monotonic() - t0 < 60
    assert result.returncode != 0 and "RendezvousTimeoutError" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "alone").exists()  # no worker ever started
