"""Device helpers shared by the trackers: which clock to use, and synchronizing before a reading."""

from __future__ import annotations

from typing import Any


def _torch():
    try:
        import torch
    except ImportError:  # the carbon and energy trackers work without torch
        return None
    return torch


def cuda_in_use() -> bool:
    """True when this process has initialized CUDA (so there may be queued GPU work to wait for)."""
    torch = _torch()
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def resolve_device(device: Any = None):
    """``device`` as a torch.device; None means the current CUDA device if CUDA is in use, else the CPU."""
    torch = _torch()
    if torch is None:
        return None
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if cuda_in_use() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def synchronize(device: Any = None) -> None:
    """Wait for queued work: on ``device`` when given, else on every visible CUDA device (and MPS)."""
    torch = _torch()
    if torch is None:
        return
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()
        return
    if cuda_in_use():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.synchronize()
