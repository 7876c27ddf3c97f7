"""Process-group helpers for ``torchrun``: one process on CPU or GPU by default, DDP when launched
with several. BatchNorm becomes SyncBatchNorm only on CUDA with world size > 1."""

from __future__ import annotations

import datetime
import gc
import logging
import os
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gald.errors import GroupTimeoutError

log = logging.getLogger(__name__)

_STORE: dist.Store | None = None  # this process's store while in a group (see cleanup)
_HOSTS_STORE = False  # whether this process serves it (rank 0 outside torchrun)

__all__ = [
    "init_distributed", "world_size", "rank", "is_main", "maybe_sync_batchnorm", "all_reduce_sum", "all_gather_object",
    "elastic_restart_count", "cleanup",
]


def init_distributed(device: torch.device, timeout: float = 1800.0) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); NCCL on CUDA, gloo on CPU.

    ``timeout`` (seconds) bounds the wait for every process to join and any later collective; a
    group that does not form in time raises ``TimeoutError`` naming the address and the sizes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    world, rank_ = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    limit = datetime.timedelta(seconds=timeout)
    try:
        # torchrun's agent hosts the store and keeps it across restarts; outside torchrun rank 0 does.
        # Each restart gets its own key prefix: with the same keys, a restarted process could read
        # its dead peer's address before the new peer wrote its own, and fail to connect.
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                              is_master=not agent and rank_ == 0, timeout=limit)
        store = dist.PrefixStore(f"gald/restart_{elastic_restart_count()}", store)
        dist.init_process_group(backend=backend, store=store, rank=rank_, world_size=world, timeout=limit)
        global _STORE, _HOSTS_STORE
        _STORE, _HOSTS_STORE = store, not agent and rank_ == 0
    except dist.DistError as err:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        if "timeout" not in str(err).lower() and "timed out" not in str(err).lower():
            raise GroupTimeoutError(f"the process group could not form at {where} (this is rank "
                                    f"{os.environ.get('RANK', '?')}): {str(err).splitlines()[0]}") from None
        raise GroupTimeoutError(
            f"the process group of {os.environ['WORLD_SIZE']} processes did not form within {timeout:g} s at {where} "
            f"(this is rank {os.environ.get('RANK', '?')}): start every node with the same rendezvous endpoint, "
            f"or raise dist_timeout ({type(err).__name__})"
        ) from None
    log.info("process group: backend=%s rank=%d world_size=%d", backend, rank(), world_size())
    return True


def elastic_restart_count() -> int:
    """How many times ``torchrun`` has restarted this worker group (0 outside ``torchrun``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def all_gather_object(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` in one process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def maybe_sync_batchnorm(model: nn.Module, device: torch.device, enabled: bool = True) -> nn.Module:
    """Convert BatchNorm to SyncBatchNorm when it can run: CUDA and more than one process."""
    if enabled and device.type == "cuda" and world_size() > 1:
        log.info("converting BatchNorm to SyncBatchNorm (world size %d)", world_size())
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (a no-op in one process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup(wait: float = 30.0) -> None:
    """Leave the process group. The barrier first keeps a rank from tearing gloo down while its
    peer is still in a collective, and the process that hosts the store (rank 0 outside torchrun)
    waits, at most ``wait`` seconds, until every rank has left before it can exit: either early exit
    was seen to abort the other worker with "terminate called ...")."""
    global _STORE
    if dist.is_initialized():
        dist.barrier()
        world = dist.get_world_size()
        gc.collect()  # a dropped DDP wrapper (reference cycles) and its reducer go before their group
        dist.destroy_process_group()
        store, _STORE = _STORE, None
        if store is None:
            return
        try:
            store.add("left", 1)
            deadline = time.monotonic() + wait
            while _HOSTS_STORE and store.add("left", 0) < world and time.monotonic() < deadline:
                time.sleep(0.01)
        except dist.DistError as err:  # the host gave up waiting: the run itself went well
            log.debug("leaving the store: %s", err)
