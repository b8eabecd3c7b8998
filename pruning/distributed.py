"""The few collectives the pruning methods need when a launcher (torchrun, accelerate) runs them on
several processes. torch.distributed only; every function is a no-op (or the identity) when no process
group is initialised, so the single-process path is unchanged.

Failing together: a collective waits for every rank, so a rank that raises before one would leave the
others waiting. :func:`together` runs a rank's local work and then tells every rank whether any rank
failed: the failing rank re-raises its own error, the others raise :class:`PeerFailed` naming it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

__all__ = [
    "OutOfStep",
    "PeerFailed",
    "active",
    "broadcast_",
    "rank_world",
    "sum_floats",
    "sum_grads_",
    "together",
]


class PeerFailed(RuntimeError):
    """Another rank failed in a section this rank finished; the failing rank raises the cause itself."""

    def __init__(self, ranks: list[int], what: str):
        self.ranks = ranks
        super().__init__(f"rank {', '.join(map(str, ranks))} failed during {what}")


class OutOfStep(RuntimeError):
    """The ranks reached different sections: the run cannot go on consistently and should stop."""


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if not active():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _device() -> torch.device:
    """Where collective buffers live: NCCL moves CUDA tensors only."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_grads_(params: Iterable[torch.Tensor]) -> None:
    """Sum the gradients of ``params`` over the ranks, in place; a rank that computed none adds zeros."""
    if not active():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)


def sum_floats(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks of a short list of floats (float64 on the wire)."""
    if not active():
        return list(values)
    buf = torch.tensor(values, dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(buf)
    return buf.tolist()


def broadcast_(tensor: torch.Tensor, src: int) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with ``src``'s (same shape and dtype everywhere)."""
    if not active():
        return tensor
    buf = tensor.to(_device())
    torch.distributed.broadcast(buf, src)
    if buf is not tensor:
        tensor.copy_(buf)
    return tensor


@contextmanager
def together(what: str) -> Iterator[None]:
    """Run this rank's local work; afterwards every rank learns whether any rank failed in it.

    Use it around the work between two collectives (sections may nest). Every rank must reach the same
    section: a rank elsewhere means the ranks are out of step, and all raise :class:`OutOfStep` rather
    than pair unrelated collectives. Single process: a plain pass-through.
    """
    if not active():
        yield
        return
    error: BaseException | None = None
    try:
        yield
    except Exception as exc:  # re-raised below, after the others know
        error = exc
    rank, world = rank_world()
    site = zlib.crc32(what.encode())
    buf = torch.zeros(world + 2, dtype=torch.int64, device=_device())
    buf[rank] = int(error is not None)
    buf[world], buf[world + 1] = site, -site  # max and -min of the sections the ranks are in
    torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.MAX)
    if int(buf[world]) != -int(buf[world + 1]):
        raise OutOfStep(f"rank {rank} finished {what!r} while another rank was in a different section")
    failed = [r for r, f in enumerate(buf[:world].tolist()) if f]
    if error is not None:
        raise error
    if failed:
        raise PeerFailed(failed, what)
