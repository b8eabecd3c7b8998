"""One suite on several processes: ``torchrun`` / ``accelerate launch ... -m ecodiff_bench run|prune``.

The launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) says how
many processes there are; :func:`init_from_env` joins their process group (NCCL on CUDA, gloo on the
CPU) with a timeout on every collective (``ECODIFF_BENCH_DIST_TIMEOUT_S``, default 1800 s), so a rank
that died makes the others fail instead of waiting forever. Without a launcher nothing here does
anything and :func:`world` is ``World()``: one process, rank 0, the only writer.

Rules the runner follows: rank 0 alone writes (store, models, caches, artifacts, report) and decides
what is pending; the other ranks compute their share and hand results to rank 0 through the helpers
below. Every rank takes the same path through the collectives; after each spec the ranks :func:`agree`
on its outcome, so a failure on any rank fails the spec on all of them with that rank's reason.
Messages between ranks are JSON or tensors, never pickles.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ecodiff_bench.core.values import Value
from pruning.distributed import OutOfStep, PeerFailed, _device, active, sum_floats, together

if TYPE_CHECKING:
    from ecodiff_bench.measure.energy import EnergyMonitor

__all__ = [
    "OutOfStep",
    "PeerFailed",
    "World",
    "agree",
    "broadcast_json",
    "broadcast_tensor",
    "gather_json",
    "gather_rows",
    "init_from_env",
    "shutdown",
    "sum_floats",
    "together",
    "world",
]

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def writer(self) -> bool:
        """Whether this process writes files (rank 0 only)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def device(self, wanted: torch.device) -> torch.device:
        """A spec's device for this rank: each rank takes its own GPU (``cuda:LOCAL_RANK``)."""
        if self.active and wanted.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return wanted


def world() -> World:
    if not active():
        return World()
    return World(
        torch.distributed.get_rank(),
        torch.distributed.get_world_size(),
        int(os.environ.get("LOCAL_RANK", 0)),
        torch.distributed.get_backend(),
    )


def launched() -> bool:
    """Whether a launcher started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> World:
    """Join the launcher's process group (a no-op for one process); returns this process's place."""
    if not launched() or torch.distributed.is_initialized():
        return world()
    timeout = float(os.environ.get("ECODIFF_BENCH_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    return world()


def shutdown() -> None:
    if active():
        torch.distributed.destroy_process_group()


def _bytes_tensor(data: bytes, size: int) -> torch.Tensor:
    buf = torch.zeros(size, dtype=torch.uint8)
    if data:
        buf[: len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    return buf.to(_device())


def broadcast_json(obj=None):
    """Rank 0's ``obj`` (anything JSON can hold) on every rank."""
    if not world().active:
        return obj
    data = json.dumps(obj).encode() if world().writer else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=_device())
    torch.distributed.broadcast(size, 0)
    buf = _bytes_tensor(data, int(size))
    torch.distributed.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


def gather_json(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    w = world()
    if not w.active:
        return [obj]
    data = json.dumps(obj).encode()
    sizes = [torch.zeros(1, dtype=torch.int64, device=_device()) for _ in range(w.size)]
    torch.distributed.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64, device=_device()))
    longest = max(int(s) for s in sizes)
    bufs = [torch.zeros(longest, dtype=torch.uint8, device=_device()) for _ in range(w.size)]
    torch.distributed.all_gather(bufs, _bytes_tensor(data, longest))
    return [json.loads(bytes(b[: int(s)].cpu().tolist()).decode()) for b, s in zip(bufs, sizes, strict=True)]


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """The ranks' row blocks (dim 0, sizes may differ) concatenated in rank order, on every rank."""
    w = world()
    if not w.active:
        return local
    counts = gather_json(int(local.shape[0]))
    longest = max(counts)
    dev = _device()
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.to(dev)
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]).to(local.device)


def broadcast_tensor(tensor: torch.Tensor | None, like: tuple[tuple[int, ...], torch.dtype]) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank; the others pass None and the (shape, dtype) it has."""
    if not world().active:
        return tensor
    shape, dtype = like
    buf = (tensor if world().writer else torch.empty(shape, dtype=dtype)).to(_device()).contiguous()
    torch.distributed.broadcast(buf, 0)
    return buf.cpu()


def agree(error: BaseException | None) -> tuple[int, str] | None:
    """Every rank's outcome of the same work (a collective): None when all succeeded, else (rank,
    reason) of the first rank that failed by itself (ranks that only saw a peer fail come last)."""
    mine = None if error is None else f"{type(error).__name__}: {error}"
    outcomes = gather_json([mine, isinstance(error, PeerFailed)])
    failed = [(peer, r, why) for r, (why, peer) in enumerate(outcomes) if why]
    if not failed:
        return None
    _, rank, why = min(failed)
    return rank, why


def provenance(device: torch.device) -> dict:
    """What a record says about the processes that measured it: world size, backend, and per rank its
    host and device (one entry when not distributed)."""
    w = world()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    me = {
        "rank": w.rank,
        "local_rank": w.local_rank,
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": name,
    }
    ranks = gather_json(me)
    launcher = None  # accelerate launch runs torchrun underneath: look for its own variables first
    if w.active and any(k.startswith("ACCELERATE_") for k in os.environ):
        launcher = "accelerate"
    elif w.active and "TORCHELASTIC_RUN_ID" in os.environ:
        launcher = "torchrun"
    return {"world_size": w.size, "distributed": {"backend": w.backend, "launcher": launcher, "ranks": ranks}}


def energy_monitor() -> EnergyMonitor:
    """This rank's energy monitor: its own GPU only; the CPU by process (codecarbon's estimate counts
    this process's CPU time) or, when RAPL's machine-wide counters are readable, by local rank 0 alone.
    Summing the ranks' windows then counts every device once."""
    from ecodiff_bench.measure.energy import EnergyMonitor

    w = world()
    monitor = EnergyMonitor()
    if not w.active:
        return monitor
    if monitor.rapl is not None and w.local_rank != 0:
        monitor.close()
        monitor = EnergyMonitor(cpu="off")
    if torch.cuda.is_available():
        monitor.session.gpus = [g for g in monitor.session.gpus if g.visible_index == w.local_rank]
    return monitor


def broadcast_tensors(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Rank 0's named tensors (e.g. cached scores) on every rank; the others pass None."""
    if not world().active:
        return tensors
    header = broadcast_json(
        {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in tensors.items()}
        if world().writer
        else None
    )
    return {
        k: broadcast_tensor(tensors[k] if world().writer else None, (tuple(shape), getattr(torch, dtype)))
        for k, (shape, dtype) in header.items()
    }


def share_folder(src: Path, dst: Path | None) -> Path:
    """The files of rank 0's folder ``src`` (not its subfolders) copied into ``dst`` on the other ranks,
    which pass their own ``dst``; returns the folder this rank should use. A resumable computation's
    checkpoint reaches every rank this way, on one machine or several."""
    if not world().active:
        return src
    files = sorted(p for p in src.iterdir() if p.is_file()) if world().writer and src.is_dir() else []
    names = broadcast_json([[p.name, p.stat().st_size] for p in files] if world().writer else None)
    for name, size in names:
        data = (src / name).read_bytes() if world().writer else None
        buf = broadcast_tensor(
            torch.tensor(list(data), dtype=torch.uint8) if data is not None else None,
            ((size,), torch.uint8),
        )
        if not world().writer:
            (dst / name).write_bytes(bytes(buf.tolist()))
    return src if world().writer else dst


def sum_value(value: Value) -> Value:
    """A measured total (energy in J) summed over the ranks: each rank measured its own devices over the
    same work. Unavailable on any rank makes the sum unavailable, naming the rank."""
    if not world().active:
        return value
    parts = gather_json(value.to_dict())
    missing = [r for r, p in enumerate(parts) if p["status"] == "unavailable" or p["value"] is None]
    if missing:
        why = parts[missing[0]].get("note") or "unavailable"
        return Value.unavailable(value.name, value.unit, f"rank {missing[0]}: {why}", value.higher_is_better)
    status = "estimated" if any(p["status"] == "estimated" for p in parts) else value.status
    details = {**value.details, "per_rank": [p["value"] for p in parts]}
    note = f"sum over {len(parts)} processes" + (f"; {value.note}" if value.note else "")
    return Value(
        value.name, sum(p["value"] for p in parts), value.unit, status, value.higher_is_better, note, details
    )
