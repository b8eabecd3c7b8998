"""Sharding generation and metric states across processes (torchrun / accelerate launch).

Each process generates its shard of the (prompt, seed) list and updates its metrics with its own
images; torchmetrics sums the metric states across processes on ``compute()``, so FID, the Fréchet
distance, CLIP score and SSIM/PSNR come out as if one process had seen every image. Every rank must
call ``compute()`` (it is a collective).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch

__all__ = ["init_distributed", "rank_world", "shard", "shard_range"]

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when initialized, else the launcher's RANK/WORLD_SIZE
    environment (torchrun and accelerate set both), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group a launcher prepared (env:// rendezvous). No-op for a single process.
    ``backend`` defaults to NCCL with CUDA, else gloo. Returns whether a process group is active."""
    if torch.distributed.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.distributed.init_process_group(backend=backend)
    return True


def shard_range(n: int, rank: int | None = None, world: int | None = None) -> range:
    """Contiguous block of ``range(n)`` for this rank; blocks differ in size by at most one."""
    if rank is None or world is None:
        r, w = rank_world()
        rank = r if rank is None else rank
        world = w if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank/world: need 0 <= rank < world, got rank={rank}, world={world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard(items: Sequence[T], rank: int | None = None, world: int | None = None) -> list[T]:
    """This rank's contiguous block of ``items`` (e.g. the (prompt, seed) pairs to generate)."""
    return [items[i] for i in shard_range(len(items), rank, world)]
