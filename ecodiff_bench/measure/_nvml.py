"""A small NVML session: import, init, the GPUs this process can see, and errors as readable reasons.

``pynvml`` (from the nvidia-ml-py package) is imported when a session opens, not at module import, so
tests can put a fake module in ``sys.modules["pynvml"]``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from ecodiff_bench.measure._device import cuda_in_use


@dataclass
class Gpu:
    """One GPU as NVML sees it. ``index`` is NVML's index; ``visible_index`` the CUDA ordinal, if known."""

    index: int
    handle: Any
    name: str
    uuid: str | None = None
    visible_index: int | None = None

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"


def describe_nvml_error(nvml: Any, err: BaseException) -> str:
    """A reason for people: what failed and what it means."""
    lib_missing = getattr(nvml, "NVMLError_LibraryNotFound", None)
    driver_missing = getattr(nvml, "NVMLError_DriverNotLoaded", None)
    not_supported = getattr(nvml, "NVMLError_NotSupported", None)
    no_permission = getattr(nvml, "NVMLError_NoPermission", None)
    if lib_missing is not None and isinstance(err, lib_missing):
        return "NVML library not found (no NVIDIA driver on this machine)"
    if driver_missing is not None and isinstance(err, driver_missing):
        return "NVIDIA driver not loaded"
    if not_supported is not None and isinstance(err, not_supported):
        return "not supported by this GPU or driver (NVMLError_NotSupported)"
    if no_permission is not None and isinstance(err, no_permission):
        return "no permission to read it (NVMLError_NoPermission)"
    return f"{type(err).__name__}: {err}"


def _decode(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class NvmlSession:
    """Opens NVML (reference-counted by the library, so several sessions may coexist) and lists GPUs.

    After ``open()``: ``ok`` tells whether NVML works; ``reason`` says why not; ``absent`` is True when
    the machine simply has no NVIDIA GPU (library missing, driver not loaded, zero devices) as opposed
    to a failure on a machine that has one.
    """

    def __init__(self, gpu_indices: list[int] | None = None):
        self.gpu_indices = None if gpu_indices is None else [int(i) for i in gpu_indices]
        self.nvml: Any = None
        self.gpus: list[Gpu] = []
        self.reason: str | None = None
        self.absent = False
        self._initialized = False

    @property
    def ok(self) -> bool:
        return self.nvml is not None and self._initialized and bool(self.gpus)

    def open(self) -> NvmlSession:
        if self._initialized or self.reason is not None:
            return self
        try:
            import pynvml as nvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            self.absent = True
            return self
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            self.reason = describe_nvml_error(nvml, err)
            absent_types = tuple(
                t
                for t in (
                    getattr(nvml, "NVMLError_LibraryNotFound", None),
                    getattr(nvml, "NVMLError_DriverNotLoaded", None),
                )
                if t is not None
            )
            self.absent = bool(absent_types) and isinstance(err, absent_types)
            return self
        self.nvml = nvml
        self._initialized = True
        try:
            self.gpus = self._visible_gpus()
        except nvml.NVMLError as err:
            self.reason = f"could not list GPUs: {describe_nvml_error(nvml, err)}"
            return self
        if not self.gpus:
            self.reason = "no NVIDIA GPU visible to this process"
            self.absent = True
        return self

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            # shutting down after a driver reset changes nothing for the caller
            with contextlib.suppress(self.nvml.NVMLError):
                self.nvml.nvmlShutdown()

    def __enter__(self) -> NvmlSession:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- which GPUs --------------------------------------------------------------------------------
    def _gpu(self, index: int, visible_index: int | None = None) -> Gpu:
        nvml = self.nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _decode(nvml.nvmlDeviceGetName(handle))
        try:
            uuid = _decode(nvml.nvmlDeviceGetUUID(handle))
        except (nvml.NVMLError, AttributeError):
            uuid = None
        return Gpu(index=index, handle=handle, name=name, uuid=uuid, visible_index=visible_index)

    def _visible_gpus(self) -> list[Gpu]:
        nvml = self.nvml
        count = int(nvml.nvmlDeviceGetCount())
        all_gpus = [self._gpu(i) for i in range(count)]
        if self.gpu_indices is not None:
            bad = [i for i in self.gpu_indices if not 0 <= i < count]
            if bad:
                raise ValueError(f"gpu_indices: NVML has {count} GPU(s) (0..{count - 1}); got {bad}")
            return [all_gpus[i] for i in self.gpu_indices]
        # Torch's view, when CUDA is in use: match its devices to NVML's by UUID (CUDA's ordering and
        # NVML's can differ, and CUDA_VISIBLE_DEVICES may hide or reorder devices).
        if cuda_in_use():
            import torch

            by_uuid = {g.uuid.removeprefix("GPU-"): g for g in all_gpus if g.uuid}
            out = []
            for ordinal in range(torch.cuda.device_count()):
                uuid = str(getattr(torch.cuda.get_device_properties(ordinal), "uuid", ""))
                g = by_uuid.get(uuid)
                if g is not None:
                    g.visible_index = ordinal
                    out.append(g)
            if out:
                return out
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            for i, g in enumerate(all_gpus):
                g.visible_index = i
            return all_gpus
        out = []
        for ordinal, token in enumerate(t.strip() for t in visible.split(",") if t.strip()):
            if token.isdigit():
                match = all_gpus[int(token)] if int(token) < count else None
            else:  # a UUID (GPU-...) or a MIG id: compare as prefixes the way CUDA does
                match = next((g for g in all_gpus if g.uuid and g.uuid.startswith(token)), None)
            if match is None:
                break  # CUDA ignores everything after the first invalid entry
            match.visible_index = ordinal
            out.append(match)
        return out
