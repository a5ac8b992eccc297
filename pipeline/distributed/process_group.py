"""Process-group membership under `torchrun` (one process or several, one node or many),
and the few collectives the stages need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

# A data stage's ranks meet at a barrier once their chunks are done; at COCO scale on CPU
# one rank can finish hours before the slowest (the default is 30 minutes).
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group `torchrun` set up (WORLD_SIZE > 1), else a single process.
    NCCL between GPUs, gloo between CPU processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=BARRIER_TIMEOUT)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def barrier(ddp: Distributed) -> None:
    if ddp.world > 1:
        dist.barrier()


def main_first(ddp: Distributed, compute):
    """`compute()` on rank 0, then, after a barrier, on the other ranks: for work that
    caches its result on a shared disk (the text features), so it is done once rather than
    by every rank, and the others read it."""
    if ddp.main:
        out = compute()
    barrier(ddp)
    if not ddp.main:
        out = compute()
    return out


def all_reduce_sum(ddp: Distributed, x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over every rank (in place; exact for integer tensors, so a count
    summed over ranks is the single process's count)."""
    if ddp.world > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def sum_over_ranks(ddp: Distributed, counts: np.ndarray, device: torch.device) -> np.ndarray:
    """An int64 count array summed over every rank (via `device`: NCCL reduces GPU tensors)."""
    if ddp.world == 1:
        return counts
    return all_reduce_sum(ddp, torch.from_numpy(counts).to(device)).cpu().numpy()


def gather_to_main(ddp: Distributed, obj) -> list:
    """Every rank's `obj`, in rank order, on rank 0 (other ranks get an empty list)."""
    if ddp.world == 1:
        return [obj]
    out = [None] * ddp.world if ddp.main else None
    dist.gather_object(obj, out, dst=0)
    return out or []
