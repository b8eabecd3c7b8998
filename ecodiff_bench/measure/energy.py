"""Energy: NVML energy counters in named windows, a power timeline, an idle baseline, CPU energy (RAPL).

GPU energy is the difference of NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
millijoules since the driver loaded, Volta and newer) read at the window's edges on every visible GPU,
after synchronizing the device. The counter updates about every 100 ms, so a window shorter than
``min_window_s`` is estimated as mean power x time (status "estimated"), or is made longer by
repetition (:func:`measure_energy`). A GPU without the counter, a failed read, or a machine without
NVML gives "unavailable" with the reason: never 0.

``nvmlDeviceGetPowerUsage`` (a ~1 s moving average on Ampere and newer) feeds the power timeline
(for plots) and the short-window estimate, never the measured energy.

CPU energy: RAPL package counters under /sys/class/powercap (wraparound handled) when readable; else
an estimate from codecarbon's CPU power table (TDP x this process's CPU time / logical CPUs), labelled
"estimated"; or "unavailable" with the reason.

Metric names (see ecodiff_bench.core.metrics):
``gpu_energy_image_j`` (gross), ``gpu_energy_image_net_j`` (minus idle
power x window time), ``idle_power_w``, ``cpu_energy_image_j``, ``energy_image_j`` (GPU gross + CPU:
the figure carbon is computed from).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ecodiff_bench.core.values import Status, Value
from ecodiff_bench.measure._device import synchronize
from ecodiff_bench.measure._nvml import NvmlSession, describe_nvml_error
from ecodiff_bench.measure.cpu_energy import RaplReader, codecarbon_cpu_tdp, process_cpu_seconds
from ecodiff_bench.measure.power import PowerSampler

__all__ = [
    "EnergyMonitor",
    "EnergyWindow",
    "GpuEnergy",
    "UnknownWindowError",
    "measure_energy",
]

COUNTER_PERIOD_S = 0.1  # NVML's energy counter advances in steps of about this period
NO_IDLE = "no idle baseline was measured"


class UnknownWindowError(KeyError):
    """end_window() on a name that begin_window() did not open."""

    def __str__(self) -> str:
        return str(self.args[0])


def _worst(statuses: list[str]) -> Status:
    for s in ("unavailable", "estimated"):
        if s in statuses:
            return s  # type: ignore[return-value]
    return "measured"


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------
@dataclass
class GpuEnergy:
    """One GPU's energy in one window."""

    index: int
    name: str
    joules: float | None
    status: Status
    note: str = ""


@dataclass
class EnergyWindow:
    """What ``end_window`` returns. ``gpu_j``/``cpu_j`` are None exactly when their status is
    "unavailable", and then ``gpu_note``/``cpu_note`` say why. ``gpu_absent`` marks a machine without
    NVIDIA GPUs (so a CPU-only total is complete), as opposed to a GPU whose reading failed."""

    name: str
    duration_s: float
    gpus: list[GpuEnergy]
    gpu_j: float | None
    gpu_status: Status
    gpu_note: str
    gpu_absent: bool
    cpu_j: float | None
    cpu_status: Status
    cpu_note: str
    details: dict = field(default_factory=dict)

    @property
    def total_j(self) -> float | None:
        total = self._total()
        return None if isinstance(total, str) else total[0]

    def _total(self) -> tuple[float, Status, str] | str:
        """GPU gross + CPU energy: (joules, status, note), or why there is no total."""
        if self.gpu_status == "unavailable" and not self.gpu_absent:
            return f"GPU energy unavailable: {self.gpu_note}"
        notes, total, statuses = [], 0.0, []
        if self.gpu_status != "unavailable":
            total += self.gpu_j
            statuses.append(self.gpu_status)
        else:
            notes.append("no NVIDIA GPU: CPU energy only")
        if self.cpu_status != "unavailable":
            total += self.cpu_j
            statuses.append(self.cpu_status)
        else:
            notes.append(f"CPU energy not included ({self.cpu_note})")
        if not statuses:
            return f"neither GPU ({self.gpu_note}) nor CPU ({self.cpu_note}) energy is available"
        if self.gpu_status == "estimated":
            notes.append(f"GPU: {self.gpu_note}")
        if self.cpu_status == "estimated":
            notes.append(f"CPU: {self.cpu_note}")
        return total, _worst(statuses), "; ".join(notes)

    def total_value(self, name: str, divide_by: float = 1.0) -> Value:
        """GPU gross + CPU energy (divided by ``divide_by``) as the catalog's metric ``name``, the way
        ``energy_image_j`` is built (also ``pruning_energy_j``, ``recovery_energy_j``)."""
        total = self._total()
        if isinstance(total, str):
            return Value.unavailable_of(name, total)
        joules, status, note = total
        parts = {
            "duration_s": self.duration_s,
            "gpu_j": self.gpu_j,
            "cpu_j": self.cpu_j,
            "gpu_status": self.gpu_status,
            "cpu_status": self.cpu_status,
            "window": self.name,
            "gpu_names": self.details.get("gpu_names", []),
        }
        return Value.of(name, joules / divide_by, status, note, details=parts)

    def values(self, images: int, idle_power: Value | None = None) -> dict[str, Value]:
        """Per-image energy metrics for ``images`` images produced in this window."""
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"images: expected an integer >= 1, got {images!r}")
        common = {
            "window": self.name,
            "duration_s": self.duration_s,
            "images": images,
            "per_gpu": [g.__dict__ for g in self.gpus],
            **self.details,
        }
        idle = idle_power if idle_power is not None else Value.unavailable_of("idle_power_w", NO_IDLE)
        return {
            "gpu_energy_image_j": self._share("gpu_energy_image_j", self.gpu_j, images, common, "gpu"),
            "idle_power_w": idle,
            "gpu_energy_image_net_j": self._net_value(images, idle_power, common),
            "cpu_energy_image_j": self._share("cpu_energy_image_j", self.cpu_j, images, common, "cpu"),
            "energy_image_j": self.total_value("energy_image_j", divide_by=images),
        }

    def _share(self, name: str, joules: float | None, images: int, common: dict, side: str) -> Value:
        """The GPU's or the CPU's energy per image, with that side's status and note."""
        status, note = getattr(self, f"{side}_status"), getattr(self, f"{side}_note")
        if status == "unavailable":
            return Value.unavailable_of(name, note)
        return Value.of(name, joules / images, status, note, details=common)

    def _net_value(self, images: int, idle_power: Value | None, common: dict) -> Value:
        name = "gpu_energy_image_net_j"
        if self.gpu_status == "unavailable":
            return Value.unavailable_of(name, self.gpu_note)
        if idle_power is None or not idle_power.available:
            why = NO_IDLE if idle_power is None else f"idle power: {idle_power.note}"
            return Value.unavailable_of(name, why)
        net = self.gpu_j - idle_power.value * self.duration_s
        note = f"gross minus idle {idle_power.value:.4g} W x {self.duration_s:.4g} s"
        if net < 0:
            note += " (negative: the window drew less than the idle baseline; noise or a stale baseline)"
        status = _worst([self.gpu_status, idle_power.status])
        return Value.of(
            name, net / images, status, note, details={**common, "idle_power_w": idle_power.value}
        )


@dataclass
class _Edge:
    t: float
    wall: float
    counters_mj: dict[int, float | str]  # GPU index -> mJ, or the reason the read failed
    power_w: dict[int, float | None]
    rapl: dict[str, int] | None
    rapl_error: str | None
    cpu_s: float


class EnergyMonitor:
    """Named energy windows over every visible GPU and the CPU.

    ``monitor.begin_window("gen"); ...; w = monitor.end_window("gen")`` (or ``with monitor.window("gen")
    as result: ...; result.window``). ``measure_idle(seconds)`` records the idle baseline that
    ``EnergyWindow.values(images, monitor.idle_power)`` subtracts. ``start_timeline()``/``stop_timeline()``
    sample power for plots.

    ``cpu``: "auto" (RAPL if readable, else the codecarbon estimate), "rapl" (RAPL or unavailable),
    "estimate", or "off". ``cpu_tdp_w`` overrides codecarbon's TDP for the estimate. ``sync`` is called
    on both edges (default: synchronize every CUDA device in use). ``clock``/``sleep`` are injectable
    for tests.
    """

    def __init__(
        self,
        *,
        gpu_indices: list[int] | None = None,
        cpu: str = "auto",
        rapl_root: str | os.PathLike = "/sys/class/powercap",
        cpu_tdp_w: float | None = None,
        min_window_s: float = 0.5,
        sync: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if cpu not in ("auto", "rapl", "estimate", "off"):
            raise ValueError(f"cpu: expected 'auto', 'rapl', 'estimate' or 'off', got {cpu!r}")
        if min_window_s < 0:
            raise ValueError(f"min_window_s: expected a number >= 0, got {min_window_s!r}")
        self.min_window_s = float(min_window_s)
        self.sync = sync if sync is not None else synchronize
        self.clock = clock
        self.sleep = sleep
        self.session = NvmlSession(gpu_indices).open()
        self._no_counter: dict[int, str] = {}
        if self.session.ok:
            self._probe_counters()
        self.cpu_mode = cpu
        self.rapl: RaplReader | None = None
        self.cpu_tdp_w = cpu_tdp_w
        self._tdp: tuple[str, float | None] | str = "CPU estimate not set up"
        self._cpu_reason = ""
        self._setup_cpu(rapl_root)
        self.idle_power: Value | None = None
        self.sampler: PowerSampler | None = None
        self._open: dict[str, _Edge] = {}

    # -- setup --------------------------------------------------------------------------------------
    def _probe_counters(self) -> None:
        nvml = self.session.nvml
        for gpu in self.session.gpus:
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)
            except nvml.NVMLError as err:
                if isinstance(err, nvml.NVMLError_NotSupported):
                    self._no_counter[gpu.index] = (
                        f"{gpu.label} has no total-energy counter (needs Volta or newer): "
                        f"{describe_nvml_error(nvml, err)}"
                    )
                # any other error may be transient: it is reported by the window that hits it

    def _setup_cpu(self, rapl_root) -> None:
        if self.cpu_mode == "off":
            self._cpu_reason = "CPU energy not requested (cpu='off')"
            return
        if self.cpu_mode in ("auto", "rapl"):
            rapl = RaplReader(rapl_root)
            if rapl.ok:
                self.rapl = rapl
                return
            self._cpu_reason = rapl.reason or "RAPL unavailable"
            if self.cpu_mode == "rapl":
                return
        self.cpu_mode = "estimate"
        if self.cpu_tdp_w is not None:
            self._tdp = ("given", float(self.cpu_tdp_w))
            return
        try:  # look the CPU up now (about a second, once per process), not inside a measurement
            self._tdp = codecarbon_cpu_tdp()
        except Exception as err:  # codecarbon's detection can fail in many ways; keep the reason
            self._tdp = f"codecarbon CPU model failed: {err}"

    @property
    def gpus(self):
        return self.session.gpus

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.session.close()

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- edges --------------------------------------------------------------------------------------
    def _read_edge(self) -> _Edge:
        counters: dict[int, float | str] = {}
        power: dict[int, float | None] = {}
        if self.session.ok:
            nvml = self.session.nvml
            for gpu in self.session.gpus:
                if gpu.index in self._no_counter:
                    counters[gpu.index] = self._no_counter[gpu.index]
                else:
                    try:
                        counters[gpu.index] = float(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
                    except nvml.NVMLError as err:
                        counters[gpu.index] = (
                            f"{gpu.label}: energy counter read failed: {describe_nvml_error(nvml, err)}"
                        )
                try:
                    power[gpu.index] = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
                except nvml.NVMLError:
                    power[gpu.index] = None
        rapl_reading, rapl_error = None, None
        if self.rapl is not None:
            try:
                rapl_reading = self.rapl.read()
            except (OSError, ValueError) as err:
                rapl_error = f"RAPL read failed: {err}"
        return _Edge(
            t=self.clock(),
            wall=time.time(),
            counters_mj=counters,
            power_w=power,
            rapl=rapl_reading,
            rapl_error=rapl_error,
            cpu_s=process_cpu_seconds(),
        )

    def begin_window(self, name: str, *, sync: bool = True) -> None:
        if name in self._open:
            raise ValueError(f"begin_window: a window named {name!r} is already open")
        if sync:
            self.sync()
        self._open[name] = self._read_edge()

    def end_window(self, name: str, *, sync: bool = True) -> EnergyWindow:
        if name not in self._open:
            raise UnknownWindowError(
                f"end_window: no open window named {name!r} (open: {sorted(self._open) or 'none'})"
            )
        if sync:
            self.sync()
        end = self._read_edge()
        start = self._open.pop(name)
        return self._window(name, start, end)

    @contextmanager
    def window(self, name: str, *, sync: bool = True) -> Iterator[_WindowResult]:
        """``with monitor.window("x") as r: work()`` then ``r.window`` is the EnergyWindow."""
        result = _WindowResult()
        self.begin_window(name, sync=sync)
        try:
            yield result
        except BaseException:
            self.cancel_window(name)
            raise
        result.window = self.end_window(name, sync=sync)

    def cancel_window(self, name: str) -> None:
        """Forget an open window (after a failure inside it); unknown names are ignored."""
        self._open.pop(name, None)

    # -- computing a window ---------------------------------------------------------------------------
    def _gpu_energy(self, start: _Edge, end: _Edge, duration: float) -> list[GpuEnergy]:
        out = []
        short = duration < self.min_window_s
        for pos, gpu in enumerate(self.session.gpus):
            a, b = start.counters_mj.get(gpu.index), end.counters_mj.get(gpu.index)
            if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
                why = a if isinstance(a, str) else b if isinstance(b, str) else f"{gpu.label}: no reading"
                out.append(GpuEnergy(gpu.index, gpu.name, None, "unavailable", why))
                continue
            if b < a:
                out.append(
                    GpuEnergy(
                        gpu.index,
                        gpu.name,
                        None,
                        "unavailable",
                        f"{gpu.label}: energy counter went backwards ({a} -> {b} mJ; "
                        "driver reloaded or GPU reset during the window)",
                    )
                )
                continue
            if not short:
                out.append(
                    GpuEnergy(gpu.index, gpu.name, (b - a) / 1000.0, "measured", "NVML energy counter")
                )
                continue
            watts = [w for w in (start.power_w.get(gpu.index), end.power_w.get(gpu.index)) if w is not None]
            if self.sampler is not None:
                watts += [per[pos] for per in self.sampler.between_per_gpu(start.t, end.t) if len(per) > pos]
            if watts:
                j = sum(watts) / len(watts) * duration
                note = (
                    f"window {duration:.3g} s shorter than {self.min_window_s:g} s: mean power "
                    f"({len(watts)} samples) x time"
                )
            else:
                j = (b - a) / 1000.0
                note = (
                    f"window {duration:.3g} s shorter than {self.min_window_s:g} s and no power reading: "
                    f"raw counter difference (counter updates every ~{COUNTER_PERIOD_S:g} s)"
                )
            out.append(GpuEnergy(gpu.index, gpu.name, j, "estimated", note))
        return out

    def _window(self, name: str, start: _Edge, end: _Edge) -> EnergyWindow:
        duration = end.t - start.t
        gpus: list[GpuEnergy] = []
        absent = False
        if not self.session.ok:
            gpu_j, gpu_status = None, "unavailable"
            gpu_note = self.session.reason or "NVML unavailable"
            absent = self.session.absent
        else:
            gpus = self._gpu_energy(start, end, duration)
            bad = [g for g in gpus if g.status == "unavailable"]
            if bad:
                gpu_j, gpu_status = None, "unavailable"
                gpu_note = "; ".join(g.note for g in bad)
            else:
                gpu_j = sum(g.joules for g in gpus)
                gpu_status = _worst([g.status for g in gpus])
                gpu_note = next((g.note for g in gpus if g.status == "estimated"), "NVML energy counter")
        cpu_j, cpu_status, cpu_note = self._cpu_energy(start, end, duration)
        return EnergyWindow(
            name=name,
            duration_s=duration,
            gpus=gpus,
            gpu_j=gpu_j,
            gpu_status=gpu_status,
            gpu_note=gpu_note,
            gpu_absent=absent,
            cpu_j=cpu_j,
            cpu_status=cpu_status,
            cpu_note=cpu_note,
            details={"started_at_unix": start.wall, "gpu_names": [g.name for g in self.session.gpus]},
        )

    def _cpu_energy(self, start: _Edge, end: _Edge, duration: float) -> tuple[float | None, Status, str]:
        if self.cpu_mode == "off" or (self.cpu_mode == "rapl" and self.rapl is None):
            return None, "unavailable", self._cpu_reason
        if self.rapl is not None:
            if start.rapl is None or end.rapl is None:
                return None, "unavailable", start.rapl_error or end.rapl_error or "RAPL read failed"
            domains = ", ".join(n for n, _, _ in self.rapl.domains)
            return self.rapl.joules(start.rapl, end.rapl), "measured", f"RAPL ({domains}; whole package)"
        # estimate: codecarbon's TDP table x this process's share of the CPUs
        if isinstance(self._tdp, str):
            return None, "unavailable", f"{self._cpu_reason}; {self._tdp}"
        model, tdp = self._tdp
        if not tdp:
            return None, "unavailable", f"{self._cpu_reason}; codecarbon knows no TDP for CPU {model!r}"
        cpu_s = max(0.0, end.cpu_s - start.cpu_s)
        n_cpus = os.cpu_count() or 1
        joules = tdp * cpu_s / n_cpus
        why = f" ({self._cpu_reason})" if self._cpu_reason else ""
        return (
            joules,
            "estimated",
            (
                f"estimate{why}: TDP {tdp:g} W ({model}) x this process's CPU time / "
                f"{n_cpus} logical CPUs, as codecarbon's CPU-load model"
            ),
        )

    # -- idle baseline and timeline ---------------------------------------------------------------------
    def measure_idle(self, seconds: float = 5.0) -> Value:
        """Measure GPU idle power over ``seconds`` of sleep (summed over the GPUs); store and return it."""
        if seconds <= 0:
            raise ValueError(f"seconds: expected a number > 0, got {seconds!r}")
        name = "__idle__"
        self.begin_window(name)
        self.sleep(seconds)
        w = self.end_window(name)
        if w.gpu_status == "unavailable":
            self.idle_power = Value.unavailable_of("idle_power_w", w.gpu_note)
        else:
            self.idle_power = Value.of(
                "idle_power_w",
                w.gpu_j / w.duration_s,
                w.gpu_status,
                note=f"mean GPU power over {w.duration_s:.3g} s idle (sum over GPUs)",
                details={
                    "duration_s": w.duration_s,
                    "per_gpu_w": {g.index: g.joules / w.duration_s for g in w.gpus},
                },
            )
        return self.idle_power

    def start_timeline(self, interval_s: float = 0.1) -> PowerSampler:
        if self.sampler is not None:
            raise RuntimeError("start_timeline: a timeline is already running")
        self.sampler = PowerSampler(self.session, interval_s=interval_s, clock=self.clock).start()
        return self.sampler

    def stop_timeline(self) -> list[list[float]]:
        """Stop sampling; ``[[t_s, watts], ...]`` (empty when NVML is unavailable)."""
        if self.sampler is None:
            return []
        sampler, self.sampler = self.sampler, None
        return sampler.stop()


class _WindowResult:
    window: EnergyWindow | None = None


def measure_energy(
    fn: Callable[[], Any],
    monitor: EnergyMonitor,
    *,
    images_per_call: int = 1,
    min_seconds: float = 1.0,
    min_reps: int = 1,
    max_reps: int = 100_000,
    name: str = "energy",
) -> dict[str, Value]:
    """Call ``fn`` in one window until it has run ``min_reps`` times AND ``min_seconds`` (so the energy
    counter's ~100 ms resolution is small next to the window), then give per-image energy metrics."""
    if min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"min_reps/max_reps: need 1 <= min_reps <= max_reps, got {min_reps}, {max_reps}")
    reps = 0
    monitor.begin_window(name)
    t0 = monitor.clock()
    try:
        while reps < max_reps and (reps < min_reps or monitor.clock() - t0 < min_seconds):
            fn()
            reps += 1
    except BaseException:
        monitor.cancel_window(name)
        raise
    window = monitor.end_window(name)
    out = window.values(images=reps * images_per_call, idle_power=monitor.idle_power)
    return {
        k: v.with_details({"reps": reps, "images_per_call": images_per_call})
        if v.available and k != "idle_power_w"
        else v
        for k, v in out.items()
    }
