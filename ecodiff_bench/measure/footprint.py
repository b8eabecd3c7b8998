"""The model's own memory while it generates: its weights plus the peak of the tensors it allocates.

On CUDA the caching allocator keeps that count itself (``torch.cuda.max_memory_allocated``). The CPU
allocator keeps no statistics, and the process's resident memory (RSS) mixes in the interpreter, the
libraries, every other model in the process and memory the allocator has not returned: it hardly moves
when a model loses a fifth of its weights. So on the CPU this module counts: the bytes of the model's
parameters and buffers, and, during the call, the bytes of every tensor storage the call creates and
still holds, whose maximum is the peak of activations. torch offers no CPU counter of this kind (the
profiler's memory timeline needs stacks and shapes for every op and is far slower), hence the small
dispatch mode below: it sees every operator's outputs, adds a new storage's bytes once, and subtracts
them when the storage is freed.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def weights_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of a module, or of every module of a pipeline (shared
    storages counted once)."""
    if isinstance(model, torch.nn.Module):
        modules = [model]
    else:
        components = getattr(model, "components", model)
        modules = [m for m in dict(components).values() if isinstance(m, torch.nn.Module)]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in (*module.parameters(), *module.buffers()):
            st = t.untyped_storage()
            if st.data_ptr() in seen or t.device.type == "meta":
                continue
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


class LiveTensorBytes(TorchDispatchMode):
    """``with LiveTensorBytes("cpu") as live: call()`` then ``live.peak``: the most bytes of storages
    created inside the block (on ``device``) that were alive at one time."""

    def __init__(self, device: str = "cpu"):
        super().__init__()
        self.device = device
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != self.device:
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self._live:
                continue  # a view, or an in-place result, of a storage already counted
            self._live[key] = n
            self.current += n
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._freed, key)
        return out
