"""A fake ``pynvml`` (the module nvidia-ml-py installs) for CPU-only tests.

It models GPUs whose total-energy counters advance with a manual clock: ``advance(seconds)`` moves the
clock and adds ``power_w x seconds`` to every counter. Tests load a fresh copy of this file per test and
put it in ``sys.modules["pynvml"]``; configure it with ``reset(...)`` and the ``FakeGpu`` fields.
Only the functions ecodiff-bench calls exist; names and error classes mirror nvidia-ml-py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_UNKNOWN = 999

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


def _error_class(name: str, code: int) -> type[NVMLError]:
    def __init__(self, value: int = code):
        NVMLError.__init__(self, value)

    return type(name, (NVMLError,), {"__init__": __init__})


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", 9)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    power_w: float = 100.0
    energy_mj: float = 1_000_000.0
    has_energy_counter: bool = True
    fail_energy_reads: int = 0  # the next N counter reads raise NVMLError_Unknown
    fail_power_reads: int = 0
    memory_total: int = 80 * 2**30
    memory_used: int = 2 * 2**30
    power_limit_mw: int = 700_000
    uuid: str = ""


@dataclass
class _Memory:
    total: int
    free: int
    used: int


class _State:
    def __init__(self):
        self.gpus: list[FakeGpu] = [FakeGpu()]
        self.now = 1000.0
        self.init_error: type[NVMLError] | None = None
        self.driver = "550.54.15"
        self.init_count = 0
        self.calls: list[str] = []
        self.lock = threading.RLock()


STATE = _State()


def reset(gpus: list[FakeGpu] | None = None, init_error: type[NVMLError] | None = None) -> _State:
    global STATE
    STATE = _State()
    if gpus is not None:
        STATE.gpus = gpus
    STATE.init_error = init_error
    for i, g in enumerate(STATE.gpus):
        if not g.uuid:
            g.uuid = f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"
    return STATE


reset()


def clock() -> float:
    with STATE.lock:
        return STATE.now


def advance(seconds: float) -> None:
    with STATE.lock:
        for g in STATE.gpus:
            g.energy_mj += g.power_w * seconds * 1000.0
        STATE.now += seconds


sleep = advance  # for EnergyMonitor(sleep=...): idle time passes on the fake clock


# -- the pynvml API subset ----------------------------------------------------------------------------
def _check_init() -> None:
    if STATE.init_count <= 0:
        raise NVMLError_Uninitialized()


def nvmlInit() -> None:
    if STATE.init_error is not None:
        raise STATE.init_error()
    STATE.init_count += 1


def nvmlShutdown() -> None:
    _check_init()
    STATE.init_count -= 1


def nvmlDeviceGetCount() -> int:
    _check_init()
    return len(STATE.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
    _check_init()
    if not 0 <= index < len(STATE.gpus):
        raise NVMLError_InvalidArgument()
    return STATE.gpus[index]


def nvmlDeviceGetName(handle: FakeGpu) -> str:
    return handle.name


def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
    return handle.uuid


def nvmlSystemGetDriverVersion() -> str:
    _check_init()
    return STATE.driver


def nvmlDeviceGetTotalEnergyConsumption(handle: FakeGpu) -> int:
    _check_init()
    STATE.calls.append("energy")
    if not handle.has_energy_counter:
        raise NVMLError_NotSupported()
    if handle.fail_energy_reads > 0:
        handle.fail_energy_reads -= 1
        raise NVMLError_Unknown()
    with STATE.lock:
        return int(handle.energy_mj)


def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
    _check_init()
    if handle.fail_power_reads > 0:
        handle.fail_power_reads -= 1
        raise NVMLError_Unknown()
    return int(handle.power_w * 1000)


def nvmlDeviceGetMemoryInfo(handle: FakeGpu) -> _Memory:
    _check_init()
    return _Memory(
        total=handle.memory_total, free=handle.memory_total - handle.memory_used, used=handle.memory_used
    )


def nvmlDeviceGetPowerManagementLimit(handle: FakeGpu) -> int:
    _check_init()
    return handle.power_limit_mw


def nvmlDeviceGetEnforcedPowerLimit(handle: FakeGpu) -> int:
    _check_init()
    return handle.power_limit_mw
