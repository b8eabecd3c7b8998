"""Memory, size and compute: CUDA peaks, NVML memory, process peak RSS, parameters, bytes on disk, FLOPs.

Metric names (see ecodiff_bench.core.metrics):
``cuda_peak_allocated_bytes``, ``cuda_peak_reserved_bytes``,
``nvml_memory_used_bytes``, ``peak_rss_bytes``, ``model_peak_bytes``, ``params``, ``disk_bytes``,
``flops_per_step``.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ecodiff_bench.core.values import Value
from ecodiff_bench.measure._device import resolve_device, synchronize
from ecodiff_bench.measure._nvml import NvmlSession, describe_nvml_error

__all__ = ["MemoryTracker", "count_parameters", "disk_size", "flops_per_step"]

_PROC_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _read_vm_hwm_bytes() -> int | None:
    try:
        with open(_PROC_STATUS) as f:
            m = re.search(r"^VmHWM:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own high-water mark (VmHWM) by writing 5 to clear_refs."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _lifetime_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


class MemoryTracker:
    """Peaks over a window: ``with MemoryTracker() as mem: run()`` then ``mem.values()``.

    - CUDA peak allocated/reserved on ``device`` (peak statistics reset at window start).
    - NVML memory used on that GPU (device-wide, every process; the CUDA context included): the maximum
      of samples every ``nvml_interval_s`` seconds (None: read once at window end).
    - Peak RSS of this process over the window (Linux: the high-water mark is reset at window start;
      elsewhere the process-lifetime peak, said so in the note): the whole process, not the model.
    - With ``model`` (a module or a pipeline): ``model_peak_bytes``, the model's own peak while the window
      runs: the allocator's peak on CUDA, its weights plus the peak of the tensors created in the window
      on the CPU (:mod:`ecodiff_bench.measure.footprint`).
    """

    def __init__(
        self,
        device: Any = None,
        *,
        nvml: bool = True,
        nvml_interval_s: float | None = None,
        model: Any = None,
    ):
        self.device = resolve_device(device)
        self.model = model
        self._live = None
        self.use_nvml = nvml
        self.nvml_interval_s = nvml_interval_s
        self._rss_reset = False
        self._cuda = self.device is not None and self.device.type == "cuda"
        self._session: NvmlSession | None = None
        self._nvml_gpu = None
        self._nvml_reason = "NVML not requested"
        self._nvml_peak: int | None = None
        self._nvml_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: dict[str, Value] | None = None

    # -- NVML ---------------------------------------------------------------------------------------
    def _open_nvml(self) -> None:
        if not self.use_nvml:
            return
        if not self._cuda:
            self._nvml_reason = f"device {self.device} is not a CUDA device"
            return
        self._session = NvmlSession().open()
        if not self._session.ok:
            self._nvml_reason = self._session.reason or "NVML unavailable"
            return
        index = self.device.index
        self._nvml_gpu = next((g for g in self._session.gpus if g.visible_index == index), None)
        if self._nvml_gpu is None:
            self._nvml_reason = f"no NVML device matches CUDA device {index}"

    def _nvml_sample(self) -> None:
        nvml = self._session.nvml
        try:
            used = int(nvml.nvmlDeviceGetMemoryInfo(self._nvml_gpu.handle).used)
        except nvml.NVMLError as err:
            self._nvml_error = describe_nvml_error(nvml, err)
            return
        self._nvml_peak = used if self._nvml_peak is None else max(self._nvml_peak, used)

    def _poll(self) -> None:
        while not self._stop.wait(self.nvml_interval_s):
            self._nvml_sample()

    # -- window -------------------------------------------------------------------------------------
    def __enter__(self) -> MemoryTracker:
        synchronize(self.device)
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self._rss_reset = _reset_peak_rss()
        if self.model is not None and not self._cuda:
            from ecodiff_bench.measure.footprint import LiveTensorBytes

            self._live = LiveTensorBytes(self.device.type).__enter__()
        self._open_nvml()
        if self._nvml_gpu is not None:
            self._nvml_sample()
            if self.nvml_interval_s:
                self._thread = threading.Thread(target=self._poll, name="ecodiff-nvml-memory", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        if self._live is not None:
            self._live.__exit__(*exc)
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._nvml_gpu is not None:
            self._nvml_sample()
        self._result = self._collect()
        if self._session is not None:
            self._session.close()

    def _collect(self) -> dict[str, Value]:
        out = self._cuda_peaks()
        out["nvml_memory_used_bytes"] = self._nvml_value()
        out["peak_rss_bytes"] = self._rss_value()
        if self.model is not None:
            out["model_peak_bytes"] = self._model_peak()
        return out

    def _cuda_peaks(self) -> dict[str, Value]:
        names = ("cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes")
        if not self._cuda:
            return {n: Value.unavailable_of(n, f"device {self.device} is not a CUDA device") for n in names}
        import torch

        peaks = (torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device))
        return {
            n: Value.of(n, float(peak), details={"device": str(self.device)})
            for n, peak in zip(names, peaks, strict=True)
        }

    def _nvml_value(self) -> Value:
        name = "nvml_memory_used_bytes"
        if self._nvml_error is not None and self._nvml_peak is None:
            return Value.unavailable_of(name, f"NVML memory read failed: {self._nvml_error}")
        if self._nvml_peak is None:
            return Value.unavailable_of(name, self._nvml_reason)
        how = "max of samples" if self.nvml_interval_s else "max of window start and end"
        return Value.of(
            name,
            float(self._nvml_peak),
            note=f"device-wide (all processes, CUDA context included); {how}",
            details={"gpu": self._nvml_gpu.label, "interval_s": self.nvml_interval_s},
        )

    def _rss_value(self) -> Value:
        hwm = _read_vm_hwm_bytes() if self._rss_reset else None
        if hwm is not None:
            return Value.of(
                "peak_rss_bytes", float(hwm), note="VmHWM over the window (reset at window start)"
            )
        return Value.of(
            "peak_rss_bytes",
            float(_lifetime_peak_rss_bytes()),
            note="process-lifetime peak (getrusage); the peak could not be reset at window start",
        )

    def _model_peak(self) -> Value:
        from ecodiff_bench.measure.footprint import weights_bytes

        name, weights = "model_peak_bytes", weights_bytes(self.model)
        if self._cuda:
            import torch

            peak = float(torch.cuda.max_memory_allocated(self.device))
            how = "CUDA allocator peak during the window (weights resident on the GPU included)"
            return Value.of(name, peak, note=how, details={"weights_bytes": weights})
        if self._live is None:
            return Value.unavailable_of(name, f"no allocation count on device {self.device}")
        note = "weights + peak of the tensors the call allocated (counted per storage)"
        details = {"weights_bytes": weights, "activations_peak_bytes": self._live.peak}
        return Value.of(name, float(weights + self._live.peak), note=note, details=details)

    def values(self) -> dict[str, Value]:
        if self._result is None:
            raise RuntimeError(
                "MemoryTracker.values(): the window has not ended; use `with MemoryTracker() as m:`"
            )
        return dict(self._result)


def count_parameters(model: Any, *, predicate: Callable[[str, Any], bool] | None = None) -> Value:
    """Parameters of a module, or of the modules in a mapping (e.g. ``pipe.components``; non-modules are
    skipped). Shared tensors count once. Works on meta-device models. ``predicate(name, param)`` filters.
    """
    import torch

    if isinstance(model, torch.nn.Module):
        modules = {"": model}
    elif isinstance(model, Mapping):
        modules = {k: v for k, v in model.items() if isinstance(v, torch.nn.Module)}
        if not modules:
            raise ValueError(f"model: the mapping holds no torch.nn.Module (keys: {list(model)})")
    else:
        raise TypeError(f"model: expected a torch.nn.Module or a mapping of them, got {type(model).__name__}")
    seen: set[int] = set()
    per_component: dict[str, int] = {}
    total = 0
    for comp, module in modules.items():
        count = 0
        for pname, p in module.named_parameters():
            if id(p) in seen or (predicate is not None and not predicate(pname, p)):
                continue
            seen.add(id(p))
            count += p.numel()
        per_component[comp or type(module).__name__] = count
        total += count
    return Value.of("params", float(total), details={"by_component": per_component})


def disk_size(path: str | os.PathLike) -> Value:
    """Bytes of the files under ``path`` (or of one file). Symlinks are followed (hub caches link to
    blobs); a file reached twice (same inode) counts once."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"disk_size: {root} does not exist")
    seen: set[tuple[int, int]] = set()
    total = 0
    files = 0
    paths = [root] if root.is_file() else (p for p in root.rglob("*"))
    for p in paths:
        if not p.is_file():
            continue
        st = p.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_size
        files += 1
    return Value.of("disk_bytes", float(total), details={"path": str(root), "files": files})


def flops_per_step(step_fn: Callable[[], Any]) -> Value:
    """FLOPs of one call of ``step_fn`` (the caller makes it run one denoising step), counted by
    ``torch.utils.flop_counter.FlopCounterMode``. Runs under no_grad. Works with meta-device models, so
    full-size architectures can be counted without weights.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        step_fn()
    total = int(counter.get_total_flops())
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    if total == 0:
        return Value.unavailable_of(
            "flops_per_step",
            "the step ran no operation FlopCounterMode counts (matmul, convolution, attention)",
        )
    return Value.of(
        "flops_per_step",
        float(total),
        note="torch.utils.flop_counter: matmul/convolution/attention FLOPs (2 per multiply-add); "
        "elementwise ops not counted",
        details={"by_operator": by_op},
    )
