"""The GPU power timeline: ``nvmlDeviceGetPowerUsage`` on every GPU, sampled from a background thread
(for plots, and for estimating windows too short for the energy counter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ecodiff_bench.measure._nvml import NvmlSession, describe_nvml_error


class PowerSampler:
    """Samples ``nvmlDeviceGetPowerUsage`` on every GPU from a background thread (for plots, and for the
    short-window estimate). ``timeline()`` gives ``[[t_s, watts_total], ...]`` from the sampler's start.
    """

    def __init__(
        self, session: NvmlSession, *, interval_s: float = 0.1, clock: Callable[[], float] = time.perf_counter
    ):
        if interval_s <= 0:
            raise ValueError(f"interval_s: expected a number > 0, got {interval_s!r}")
        self.session = session
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[tuple[float, float, list[float]]] = []  # (clock time, total W, per-GPU W)
        self.errors: list[str] = []
        self.t0: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        nvml = self.session.nvml
        watts = []
        for gpu in self.session.gpus:
            try:
                watts.append(nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0)
            except nvml.NVMLError as err:
                msg = f"{gpu.label}: power read failed: {describe_nvml_error(nvml, err)}"
                if msg not in self.errors:
                    self.errors.append(msg)
                return  # a partial total would be misleading: skip this sample
        with self._lock:
            self.samples.append((self.clock(), sum(watts), watts))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> PowerSampler:
        if not self.session.ok:
            raise RuntimeError(f"PowerSampler: NVML unavailable ({self.session.reason})")
        if self._thread is not None:
            raise RuntimeError("PowerSampler already started")
        self.t0 = self.clock()
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ecodiff-power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[list[float]]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()
        return self.timeline()

    def between_per_gpu(self, t_start: float, t_end: float) -> list[list[float]]:
        with self._lock:
            return [per for t, _, per in self.samples if t_start <= t <= t_end]

    def timeline(self) -> list[list[float]]:
        """``[[seconds since start, total watts], ...]`` (the ``power_timeline`` artifact format)."""
        with self._lock:
            t0 = self.t0 if self.t0 is not None else (self.samples[0][0] if self.samples else 0.0)
            return [[round(t - t0, 6), w] for t, w, _ in self.samples]
