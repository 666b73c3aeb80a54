"""torch.distributed helpers: who am I, which share of the work is mine, and summing results.

Launch any command under ``torchrun`` (or ``accelerate launch``): the process group is created from
the environment, each rank takes a deterministic shard, float32 sums are combined with
``all_reduce(SUM)``, and rank 0 writes the outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (no-op without one).

    NCCL on CUDA, gloo on CPU. Under CUDA each rank takes the GPU of its ``LOCAL_RANK``.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return world()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not str(device or "").startswith("cpu")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return world()


def local_device(device: str | None) -> str | None:
    """Under torchrun with CUDA, ``cuda`` means this rank's own GPU."""
    if device in (None, "cuda") and torch.cuda.is_available() and world()[1] > 1:
        return f"cuda:{torch.cuda.current_device()}"
    return device


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside a process group).

    Used where every rank must take the same decision from state only rank 0 holds (which steps of
    a run are done, what it wrote), so that all ranks enter the same collectives.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def leave() -> None:
    """Leave the process group together: wait for every rank, then destroy the group (no-op without one).

    Without it a rank that finishes first exits while rank 0 is still printing, and gloo can abort the
    other rank at interpreter exit when its peer's sockets are already gone.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Round-robin share of ``items`` for ``rank``: deterministic, sizes differ by at most one."""
    return list(items[rank::world_size])


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over all ranks, in place. CPU tensors go through gloo unchanged."""
    import torch.distributed as dist

    if world()[1] == 1:
        return
    backend = dist.get_backend()
    for t in tensors:
        if backend == "nccl" and t.device.type != "cuda":
            moved = t.to(f"cuda:{torch.cuda.current_device()}")
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            t.copy_(moved.cpu())
        elif backend == "gloo" and t.device.type != "cpu":
            moved = t.cpu()
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            t.copy_(moved)
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def gather_in_order(local: Sequence[tuple[int, T]], total: int, what: str = "rows") -> list[T]:
    """Collect ``(index, item)`` pairs from every rank into one list ordered by index, on every rank.

    Raises if an index is missing or claimed twice, so a sharding bug can never drop or double-count
    an example silently.
    """
    import torch.distributed as dist

    from .errors import CultureNeuronsError

    if world()[1] == 1:
        parts = [list(local)]
    else:
        parts = [None] * world()[1]
        dist.all_gather_object(parts, list(local))
    out: list = [None] * total
    seen = [False] * total
    for part in parts:
        for index, item in part:
            if seen[index]:
                raise CultureNeuronsError(f"distributed {what}: index {index} came from two ranks")
            seen[index] = True
            out[index] = item
    if not all(seen):
        raise CultureNeuronsError(f"distributed {what}: {seen.count(False)} of {total} missing after gathering")
    return out
