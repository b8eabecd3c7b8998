"""Latency: a synchronizing timer, repeated timing until a minimum count AND duration, and interleaving.

On a CUDA device the timer uses CUDA events recorded on the current stream (the GPU's own clock, so
host-side jitter after the last launch does not count); elsewhere ``time.perf_counter`` with a device
synchronization on both edges.

Metric names (see ecodiff_bench.core.metrics):
``latency_image_s`` (mean seconds per image; details hold p50/p90/p99,
stdev and n), ``latency_step_s`` (seconds per denoising step of one call), ``throughput_img_per_s``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ecodiff_bench.core.values import Value
from ecodiff_bench.measure._device import resolve_device, synchronize

__all__ = ["LatencySampler", "Timer", "interleaved", "latency_values", "time_callable"]

LATENCY_METRICS = ("latency_image_s", "latency_step_s", "throughput_img_per_s")


class Timer:
    """``with Timer() as t: work()`` then ``t.elapsed_s``. Synchronizes the device on both edges.

    ``device``: a torch device (or None: the current CUDA device when CUDA is in use, else the CPU).
    ``clock``: "auto" (CUDA events on a CUDA device, else perf_counter), "cuda_events" or "perf_counter".
    """

    def __init__(self, device: Any = None, clock: str = "auto"):
        if clock not in ("auto", "cuda_events", "perf_counter"):
            raise ValueError(f"clock: expected 'auto', 'cuda_events' or 'perf_counter', got {clock!r}")
        self.device = resolve_device(device)
        on_cuda = self.device is not None and self.device.type == "cuda"
        if clock == "cuda_events" and not on_cuda:
            raise ValueError(f"clock='cuda_events' needs a CUDA device, got device {self.device}")
        self.clock = (
            "cuda_events" if (clock == "auto" and on_cuda) or clock == "cuda_events" else "perf_counter"
        )
        self.elapsed_s: float | None = None
        self.host_elapsed_s: float | None = None
        self._events = None
        self._t0 = 0.0

    def __enter__(self) -> Timer:
        synchronize(self.device)
        if self.clock == "cuda_events":
            import torch

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            with torch.cuda.device(self.device):
                start.record()
            self._events = (start, end)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.clock == "cuda_events":
            import torch

            start, end = self._events
            with torch.cuda.device(self.device):
                end.record()
            end.synchronize()
            self.host_elapsed_s = time.perf_counter() - self._t0
            self.elapsed_s = start.elapsed_time(end) / 1000.0
        else:
            synchronize(self.device)
            self.host_elapsed_s = time.perf_counter() - self._t0
            self.elapsed_s = self.host_elapsed_s


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


def latency_values(
    call_seconds: list[float],
    *,
    images_per_call: int = 1,
    steps_per_call: int | None = None,
    clock: str = "perf_counter",
    extra_details: Mapping[str, Any] | None = None,
) -> dict[str, Value]:
    """Turn per-call durations into ``latency_image_s``, ``latency_step_s``, ``throughput_img_per_s``.

    Per image: call time / images_per_call (a batched call yields one sample per call, divided).
    Per step: call time / steps_per_call, i.e. one denoising step of the whole batch, with the call's
    fixed costs (text encoding, VAE decode) spread over the steps; time a one-step callable instead to
    get the bare step time.
    """
    _check_positive_int("images_per_call", images_per_call)
    if steps_per_call is not None:
        _check_positive_int("steps_per_call", steps_per_call)
    if not call_seconds:
        return {n: Value.unavailable_of(n, "no timed calls") for n in LATENCY_METRICS}
    calls = np.asarray(call_seconds, dtype=np.float64)
    common = {
        "n": int(calls.size),
        "images_per_call": images_per_call,
        "steps_per_call": steps_per_call,
        "clock": clock,
        "total_s": float(calls.sum()),
        **dict(extra_details or {}),
    }
    return {
        "latency_image_s": _per_image(calls, images_per_call, common),
        "latency_step_s": _per_step(calls, steps_per_call, common),
        "throughput_img_per_s": Value.of(
            "throughput_img_per_s", float(images_per_call * calls.size / calls.sum()), details=common
        ),
    }


def _stdev(x: np.ndarray) -> float:
    return statistics.stdev(x.tolist()) if x.size > 1 else 0.0


def _per_image(calls: np.ndarray, images_per_call: int, common: dict) -> Value:
    per_image = calls / images_per_call
    p50, p90, p99 = (float(x) for x in np.percentile(per_image, [50, 90, 99]))
    details = {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "stdev": _stdev(per_image),
        "min": float(per_image.min()),
        "max": float(per_image.max()),
        "call_mean_s": float(calls.mean()),
        **common,
    }
    return Value.of("latency_image_s", float(per_image.mean()), details=details)


def _per_step(calls: np.ndarray, steps_per_call: int | None, common: dict) -> Value:
    if steps_per_call is None:
        return Value.unavailable_of("latency_step_s", "steps_per_call was not given")
    per_step = calls / steps_per_call
    return Value.of(
        "latency_step_s",
        float(per_step.mean()),
        note="call time / steps (whole batch; includes the call's fixed costs spread over the steps)",
        details={"p50": float(np.percentile(per_step, 50)), "stdev": _stdev(per_step), **common},
    )


class LatencySampler:
    """Collects one duration per call: ``with sampler.measure(): pipe(...)``; then ``sampler.values()``.

    Use it when the timed loop is yours (e.g. while generating the images that quality metrics need).
    """

    def __init__(
        self,
        *,
        images_per_call: int = 1,
        steps_per_call: int | None = None,
        device: Any = None,
        clock: str = "auto",
    ):
        self.images_per_call = _check_positive_int("images_per_call", images_per_call)
        self.steps_per_call = (
            None if steps_per_call is None else _check_positive_int("steps_per_call", steps_per_call)
        )
        self.device = device
        self.clock = clock
        self.call_seconds: list[float] = []
        self.clock_used: str | None = None

    @contextmanager
    def measure(self) -> Iterator[Timer]:
        timer = Timer(self.device, self.clock)
        with timer:
            yield timer
        self.clock_used = timer.clock
        self.call_seconds.append(timer.elapsed_s)

    @property
    def n(self) -> int:
        return len(self.call_seconds)

    @property
    def total_s(self) -> float:
        return float(sum(self.call_seconds))

    def values(self, **extra_details: Any) -> dict[str, Value]:
        return latency_values(
            self.call_seconds,
            images_per_call=self.images_per_call,
            steps_per_call=self.steps_per_call,
            clock=self.clock_used or "perf_counter",
            extra_details=extra_details,
        )


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 2,
    min_reps: int = 5,
    min_seconds: float = 1.0,
    max_reps: int = 1000,
    images_per_call: int = 1,
    steps_per_call: int | None = None,
    device: Any = None,
    clock: str = "auto",
) -> dict[str, Value]:
    """Warm up, then call ``fn`` until at least ``min_reps`` calls AND ``min_seconds`` of timed calls
    (stopping at ``max_reps``). Returns ``latency_image_s``, ``latency_step_s``, ``throughput_img_per_s``.
    """
    _check_positive_int("warmup", warmup, minimum=0)
    _check_positive_int("min_reps", min_reps)
    _check_positive_int("max_reps", max_reps)
    _check_nonneg("min_seconds", min_seconds)
    if max_reps < min_reps:
        raise ValueError(f"max_reps: must be >= min_reps ({min_reps}), got {max_reps}")
    sampler = LatencySampler(
        images_per_call=images_per_call, steps_per_call=steps_per_call, device=device, clock=clock
    )
    for _ in range(warmup):
        fn()
    synchronize(sampler.device)
    while sampler.n < max_reps and (sampler.n < min_reps or sampler.total_s < min_seconds):
        with sampler.measure():
            fn()
    hit_cap = sampler.n >= max_reps and (sampler.n < min_reps or sampler.total_s < min_seconds)
    return sampler.values(
        warmup=warmup,
        min_reps=min_reps,
        min_seconds=min_seconds,
        max_reps=max_reps,
        stopped_at_max_reps=hit_cap,
    )


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 5,
    min_seconds: float = 0.0,
    max_rounds: int = 1000,
    warmup: int = 1,
    images_per_call: int | Mapping[str, int] = 1,
    steps_per_call: int | None | Mapping[str, int | None] = None,
    device: Any = None,
    clock: str = "auto",
) -> dict[str, dict[str, Value]]:
    """Time several callables in alternation, so thermal drift and background load hit them alike.

    Each round calls every function once; the order reverses every other round (A B, B A, A B, ...).
    Runs at least ``rounds`` rounds and until every function has ``min_seconds`` of timed calls, at
    most ``max_rounds``. Returns ``{label: time_callable-style values}``.
    """
    if not fns:
        raise ValueError("fns: expected at least one {label: callable}, got an empty mapping")
    _check_positive_int("rounds", rounds)
    _check_positive_int("max_rounds", max_rounds)
    _check_positive_int("warmup", warmup, minimum=0)
    _check_nonneg("min_seconds", min_seconds)
    if max_rounds < rounds:
        raise ValueError(f"max_rounds: must be >= rounds ({rounds}), got {max_rounds}")
    labels = list(fns)

    def per_label(arg: Any, name: str) -> dict[str, Any]:
        if isinstance(arg, Mapping):
            missing = [k for k in labels if k not in arg]
            if missing:
                raise ValueError(f"{name}: no entry for {missing}; labels are {labels}")
            return {k: arg[k] for k in labels}
        return {k: arg for k in labels}

    images = per_label(images_per_call, "images_per_call")
    steps = per_label(steps_per_call, "steps_per_call")
    samplers = {
        k: LatencySampler(images_per_call=images[k], steps_per_call=steps[k], device=device, clock=clock)
        for k in labels
    }
    for _ in range(warmup):
        for k in labels:
            fns[k]()
    done = 0
    while done < max_rounds and (done < rounds or min(s.total_s for s in samplers.values()) < min_seconds):
        order = labels if done % 2 == 0 else labels[::-1]
        for k in order:
            with samplers[k].measure():
                fns[k]()
        done += 1
    return {
        k: samplers[k].values(warmup=warmup, rounds=done, interleaved_with=[x for x in labels if x != k])
        for k in labels
    }
