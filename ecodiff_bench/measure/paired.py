"""Paired, interleaved timing and energy: a pruned model and its base measured in alternation, in blocks,
until the ratio's confidence interval is narrow enough or the time budget is spent.

One *round* runs one *block* of every model, in an order that reverses every other round (A B, B A, ...).
A block is one energy window holding one or more generation calls of one model (enough calls to last
``min_block_s``: NVML's energy counter advances every ~100 ms), each call timed on its own. Block ``i``
of the pruned model and block ``i`` of the base are a pair: they ran seconds apart, so a change of machine
load or temperature between rounds touches both. The reported change is the ratio of the medians of the
per-image figures over the pairs, with a bootstrap interval over pairs (:mod:`ecodiff_bench.core.stats`),
for latency and for energy alike.

Adaptive repetition (:class:`PairedSettings`, the suite's ``performance.latency``): after ``min_reps``
rounds and ``min_seconds`` of timed calls per model, the loop stops as soon as every ratio's interval is
within ``precision`` (half-width relative to the ratio), or when ``max_seconds`` or ``max_reps`` is reached;
``details.stopped`` says which. With one model it repeats until the interval of its mean latency is that
narrow.

Metric names (the catalog): per model ``latency_image_s``, ``latency_step_s``, ``throughput_img_per_s``
and the energy metrics of :mod:`ecodiff_bench.measure.energy`; per model other than the reference
``latency_ratio_vs_base`` and ``energy_ratio_vs_base``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields
from typing import Any

from ecodiff_bench.core.stats import DEFAULT_CONFIDENCE, Interval, mean_interval, paired_ratio
from ecodiff_bench.core.values import Value
from ecodiff_bench.measure.energy import EnergyMonitor, EnergyWindow, GpuEnergy, _worst
from ecodiff_bench.measure.latency import Timer, latency_values

__all__ = ["Block", "Lockstep", "PairedResult", "PairedSettings", "measure_paired"]

REFERENCE = "base"


@dataclass(frozen=True)
class PairedSettings:
    """How many rounds to run and when to stop (module doc): the fields of a suite's
    ``performance.latency`` section, under the same names (:meth:`from_latency`)."""

    warmup: int = 1  # untimed calls of every model first
    min_reps: int = 3  # rounds at least
    max_reps: int = 100  # rounds at most
    min_seconds: float = 0.0  # timed calls per model at least
    max_seconds: float = 60.0  # time budget of the rounds
    precision: float = 0.02  # stop when every interval's half-width is within this share of its estimate
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self):
        if self.min_reps < 1 or self.max_reps < self.min_reps:
            raise ValueError(
                f"min_reps/max_reps: need 1 <= min_reps <= max_reps, got {self.min_reps}, {self.max_reps}"
            )
        if self.precision <= 0 or self.max_seconds < 0 or self.min_seconds < 0 or self.warmup < 0:
            raise ValueError("precision must be > 0; max_seconds, min_seconds and warmup must be >= 0")

    @classmethod
    def from_latency(cls, latency: Any) -> PairedSettings:
        """The settings of a suite's ``performance.latency`` section (any object with these fields)."""
        return cls(**{f.name: getattr(latency, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Lockstep:
    """How several processes measuring together run the same rounds: ``guard(what)`` wraps each stretch
    of local work (a failure in it fails it on every process), ``decide(stop)`` gives one process's
    stopping decision to all. The defaults: one process."""

    guard: Callable[[str], AbstractContextManager] = lambda what: nullcontext()
    decide: Callable[[str | None], str | None] = lambda stop: stop


@dataclass
class Block:
    """One energy window of ``len(call_s)`` consecutive calls of one model."""

    label: str
    round: int
    call_s: list[float]
    window: EnergyWindow
    t0: float  # monitor clock at the window's edges (to cut a power timeline per model)
    t1: float

    def image_s(self, images_per_call: int) -> float:
        return sum(self.call_s) / (len(self.call_s) * images_per_call)

    def energy_j(self, images_per_call: int) -> float | None:
        total = self.window.total_j
        return None if total is None else total / (len(self.call_s) * images_per_call)


@dataclass
class PairedResult:
    blocks: dict[str, list[Block]]
    rounds: int
    stopped: str
    elapsed_s: float
    images_per_call: int
    steps_per_call: int | None
    confidence: float
    values: dict[str, dict[str, Value]] = field(default_factory=dict)

    def spans(self, label: str) -> list[tuple[float, float]]:
        return [(b.t0, b.t1) for b in self.blocks[label]]


def combine_windows(windows: list[EnergyWindow], name: str) -> EnergyWindow:
    """Several windows as one: energies and durations added, the worst status kept."""
    gpus: dict[int, GpuEnergy] = {}
    for w in windows:
        for g in w.gpus:
            prev = gpus.get(g.index)
            if prev is None:
                gpus[g.index] = GpuEnergy(g.index, g.name, g.joules, g.status, g.note)
            elif prev.joules is None or g.joules is None:
                gpus[g.index] = GpuEnergy(g.index, g.name, None, "unavailable", prev.note or g.note)
            else:
                status = _worst([prev.status, g.status])
                gpus[g.index] = GpuEnergy(g.index, g.name, prev.joules + g.joules, status, prev.note)

    def total(attr: str) -> float | None:
        parts = [getattr(w, attr) for w in windows]
        return None if any(p is None for p in parts) else float(sum(parts))

    def note(kind: str) -> str:
        worst = _worst([getattr(w, f"{kind}_status") for w in windows])
        return next(getattr(w, f"{kind}_note") for w in windows if getattr(w, f"{kind}_status") == worst)

    gpu_j, cpu_j = total("gpu_j"), total("cpu_j")
    first = windows[0]
    return EnergyWindow(
        name=name,
        duration_s=sum(w.duration_s for w in windows),
        gpus=list(gpus.values()),
        gpu_j=gpu_j,
        gpu_status="unavailable" if gpu_j is None else _worst([w.gpu_status for w in windows]),
        gpu_note=note("gpu"),
        gpu_absent=first.gpu_absent,
        cpu_j=cpu_j,
        cpu_status="unavailable" if cpu_j is None else _worst([w.cpu_status for w in windows]),
        cpu_note=note("cpu"),
        details={"windows": len(windows), "gpu_names": first.details.get("gpu_names", [])},
    )


class _Loop:
    def __init__(self, fns, monitor, *, images_per_call, device, clock, min_block_s):
        self.fns, self.monitor, self.images = fns, monitor, images_per_call
        self.device, self.clock, self.min_block_s = device, clock, min_block_s
        self.blocks: dict[str, list[Block]] = {k: [] for k in fns}

    def _timed(self, fn) -> float:
        if self.clock is not None:  # an injected clock (tests): no device timer
            t0 = self.clock()
            fn()
            return self.clock() - t0
        timer = Timer(self.device)
        with timer:
            fn()
        return timer.elapsed_s

    def block(self, label: str, rnd: int) -> None:
        name = f"paired:{label}:{rnd}"
        self.monitor.begin_window(name)
        t0 = self.monitor.clock()
        calls: list[float] = []
        try:
            while not calls or self.monitor.clock() - t0 < self.min_block_s:
                calls.append(self._timed(self.fns[label]))
        except BaseException:
            self.monitor.cancel_window(name)
            raise
        window = self.monitor.end_window(name)
        self.blocks[label].append(Block(label, rnd, calls, window, t0, self.monitor.clock()))

    def timed_s(self, label: str) -> float:
        return sum(sum(b.call_s) for b in self.blocks[label])

    def intervals(self, confidence: float) -> dict[str, Interval]:
        """The intervals the stopping rule watches: each ratio vs the reference, or one model's mean."""
        labels = list(self.fns)
        if REFERENCE not in self.fns or len(labels) == 1:
            return {
                f"{k}:latency": mean_interval([b.image_s(self.images) for b in self.blocks[k]], confidence)
                for k in labels
            }
        out = {}
        ref = self.blocks[REFERENCE]
        for k in labels:
            if k == REFERENCE:
                continue
            pairs = list(zip(self.blocks[k], ref, strict=False))
            out[f"{k}:latency"] = paired_ratio(
                [a.image_s(self.images) for a, _ in pairs],
                [b.image_s(self.images) for _, b in pairs],
                confidence,
            )
            energy = [(a.energy_j(self.images), b.energy_j(self.images)) for a, b in pairs]
            if all(x is not None and y is not None and y > 0 for x, y in energy):
                out[f"{k}:energy"] = paired_ratio([x for x, _ in energy], [y for _, y in energy], confidence)
        return out


def measure_paired(
    fns: Mapping[str, Callable[[], Any]],
    monitor: EnergyMonitor,
    settings: PairedSettings = PairedSettings(),
    *,
    images_per_call: int = 1,
    steps_per_call: int | None = None,
    min_block_s: float | None = None,
    device: Any = None,
    clock: Callable[[], float] | None = None,
    lockstep: Lockstep = Lockstep(),
) -> PairedResult:
    """Measure ``fns`` (``{"base": f, "pruned": g}``, or one model) paired and interleaved (module doc).

    ``min_block_s``: shortest energy window (default: the monitor's ``min_window_s`` when it reads GPUs,
    else one call per block). Returns a :class:`PairedResult` whose ``values`` hold each model's metrics.
    Several processes measuring together pass a :class:`Lockstep`, so that all run the same rounds.
    """
    if not fns:
        raise ValueError("fns: expected at least one {label: callable}, got an empty mapping")
    if min_block_s is None:
        min_block_s = monitor.min_window_s if monitor.gpus else 0.0
    loop = _Loop(
        dict(fns),
        monitor,
        images_per_call=images_per_call,
        device=device,
        clock=clock,
        min_block_s=min_block_s,
    )
    with lockstep.guard("warm-up calls"):
        for _ in range(settings.warmup):
            for fn in fns.values():
                fn()
    now = clock or time.perf_counter
    start = now()
    rounds, stopped = _repeat(loop, settings, lockstep, lambda: now() - start)
    result = PairedResult(
        loop.blocks, rounds, stopped, now() - start, images_per_call, steps_per_call, settings.confidence
    )
    result.values = _values(result, loop, settings, monitor)
    return result


def _repeat(loop: _Loop, settings: PairedSettings, lockstep: Lockstep, elapsed) -> tuple[int, str]:
    """Rounds until the stopping rule (module doc) says enough: (rounds run, why they stopped)."""
    labels = list(loop.fns)
    rounds = 0
    while rounds < settings.max_reps:
        with lockstep.guard("timed calls"):
            for k in labels if rounds % 2 == 0 else labels[::-1]:
                loop.block(k, rounds)
        rounds += 1
        stop = None
        if rounds >= settings.min_reps and min(loop.timed_s(k) for k in labels) >= settings.min_seconds:
            intervals = loop.intervals(settings.confidence).values()
            if all(iv.rel_half_width <= settings.precision for iv in intervals):
                stop = "precision"
            elif elapsed() >= settings.max_seconds:
                stop = "time budget"
        stop = lockstep.decide(stop)
        if stop is not None:
            return rounds, stop
    return rounds, "max_reps"


def _values(res: PairedResult, loop: _Loop, settings: PairedSettings, monitor) -> dict:
    """Per model: latency and energy metrics; per model other than the reference: the paired ratios."""
    ipc, conf = res.images_per_call, res.confidence
    common = {
        "rounds": res.rounds,
        "stopped": res.stopped,
        "precision": settings.precision,
        "max_seconds": settings.max_seconds,
    }
    intervals = loop.intervals(conf)
    out: dict[str, dict[str, Value]] = {}
    for label, blocks in res.blocks.items():
        calls = [c for b in blocks for c in b.call_s]
        per_image = mean_interval([b.image_s(ipc) for b in blocks], conf)
        extra = {**common, "paired_with": [k for k in res.blocks if k != label], "blocks": len(blocks)}
        values = latency_values(
            calls,
            images_per_call=ipc,
            steps_per_call=res.steps_per_call,
            clock="perf_counter" if loop.clock is None else "injected",
            extra_details=extra,
        )
        values["latency_image_s"] = values["latency_image_s"].with_details(per_image.details())
        window = combine_windows([b.window for b in blocks], f"paired:{label}")
        energy = window.values(images=len(calls) * ipc, idle_power=monitor.idle_power)
        per_block = [b.energy_j(ipc) for b in blocks]
        if energy["energy_image_j"].available and all(e is not None for e in per_block):
            ci = mean_interval(per_block, conf).details()
            energy["energy_image_j"] = energy["energy_image_j"].with_details({**ci, "rounds": res.rounds})
        values.update(energy)
        if label != REFERENCE and REFERENCE in res.blocks:
            values.update(_ratios(label, intervals, res, energy["energy_image_j"]))
        out[label] = values
    return out


def _ratios(label: str, intervals: dict[str, Interval], res: PairedResult, energy: Value) -> dict[str, Value]:
    conf = res.confidence
    common = {"rounds": res.rounds, "stopped": res.stopped, "pairs": res.rounds}
    out = {}
    lat = intervals[f"{label}:latency"]
    out["latency_ratio_vs_base"] = Value.of(
        "latency_ratio_vs_base",
        lat.estimate,
        note=f"pruned / base per-image latency: ratio of medians over {lat.n} interleaved pairs, "
        f"{100 * conf:g}% bootstrap interval",
        details={**common, **lat.details()},
    )
    name = "energy_ratio_vs_base"
    iv = intervals.get(f"{label}:energy")
    if iv is None:
        why = energy.note if not energy.available else "energy of some windows unavailable"
        out[name] = Value.unavailable_of(name, why)
        return out
    status = "estimated" if energy.status == "estimated" else "measured"
    out[name] = Value.of(
        name,
        iv.estimate,
        status,
        note=f"pruned / base energy per image over {iv.n} interleaved pairs of windows"
        + ("; the energies are estimates" if status == "estimated" else ""),
        details={**common, **iv.details()},
    )
    return out


def pair_figures(res: PairedResult, label: str = "pruned") -> dict[str, list]:
    """The per-image latency and energy of ``label``'s blocks and of their base blocks, pair by pair
    (JSON-ready: to pool pairs measured by several processes, :func:`pooled_ratios`)."""
    pairs = list(zip(res.blocks[label], res.blocks.get(REFERENCE, []), strict=False))
    ipc = res.images_per_call
    return {
        "latency": [[a.image_s(ipc), b.image_s(ipc)] for a, b in pairs],
        "energy": [[a.energy_j(ipc), b.energy_j(ipc)] for a, b in pairs],
    }


def pooled_ratios(per_process: list[dict[str, list]], res: PairedResult, energy: Value) -> dict[str, Value]:
    """``latency_ratio_vs_base`` and ``energy_ratio_vs_base`` over the pairs of several processes (each
    :func:`pair_figures`), bootstrapped over all of them; ``res`` is this process's result (settings)."""
    lat = [p for figures in per_process for p in figures["latency"]]
    en = [p for figures in per_process for p in figures["energy"]]
    intervals = {"pruned:latency": paired_ratio([a for a, _ in lat], [b for _, b in lat], res.confidence)}
    if en and all(x is not None and y is not None and y > 0 for x, y in en):
        intervals["pruned:energy"] = paired_ratio([x for x, _ in en], [y for _, y in en], res.confidence)
    return _ratios("pruned", intervals, res, energy)


def timeline_of(samples, spans: list[tuple[float, float]], t0: float) -> list[list[float]]:
    """Power samples ``(clock_s, watts, ...)`` that fall inside ``spans`` (one model's blocks), as the
    ``power_timeline`` artifact's ``[[t - t0, watts], ...]``."""
    return [[round(s[0] - t0, 6), s[1]] for s in samples if any(a <= s[0] <= b for a, b in spans)]
