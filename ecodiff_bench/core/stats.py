"""Confidence intervals for measurements: a paired ratio (pruned / base) and a mean, by the bootstrap.

Timings on a shared machine are noisy and skewed (a background job slows a few calls a lot), so a change
is reported as an interval, and a change whose interval contains "no change" is no measurable change.
The resampling is scipy's (``scipy.stats.bootstrap``, percentile method, fixed seed so a rerun of the
report or the gate gives the same interval); this module only chooses the statistics:

- paired ratio: ``median(num) / median(den)`` over pairs measured in the same window, resampling whole
  pairs, so what drifts between windows (heat, another process) moves both sides of a pair alike;
- mean: the mean of repeated measurements of one quantity.

Torch-free: the measurement code, the gate and the reports share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_CONFIDENCE = 0.95
N_RESAMPLES = 2000
MIN_PAIRS = 3  # fewer repetitions give no interval worth the name
SEED = 0
#: ``details.ci_method`` of each kind of interval a catalog entry names (``MetricSpec.interval``).
INTERVAL_METHODS = {
    "mean": "mean; percentile bootstrap",
    "paired ratio": "ratio of medians; percentile bootstrap over pairs",
}


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; ``low``/``high`` are None when too few samples."""

    estimate: float
    low: float | None
    high: float | None
    confidence: float
    n: int
    method: str

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    def contains(self, x: float) -> bool:
        """True when ``x`` lies in the interval (or when there is no interval: nothing is excluded)."""
        return not self.known or self.low <= x <= self.high

    @property
    def rel_half_width(self) -> float:
        """Half the interval's width relative to the estimate (inf without an interval)."""
        if not self.known or self.estimate == 0:
            return math.inf
        return (self.high - self.low) / 2 / abs(self.estimate)

    def details(self) -> dict:
        """The keys a :class:`~ecodiff_bench.core.values.Value` keeps in its details."""
        return {
            "ci_low": self.low,
            "ci_high": self.high,
            "confidence": self.confidence,
            "ci_n": self.n,
            "ci_method": self.method,
        }


def interval_of(details: dict | None) -> tuple[float, float] | None:
    """``(ci_low, ci_high)`` stored in a value's details, or None."""
    if not isinstance(details, dict):
        return None
    lo, hi = details.get("ci_low"), details.get("ci_high")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return float(lo), float(hi)
    return None


def _bootstrap(data: tuple, statistic, confidence: float, paired: bool) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap(
        data,
        statistic,
        paired=paired,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=N_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _ratio_of_medians(num, den, axis=-1):
    return np.median(num, axis=axis) / np.median(den, axis=axis)


def paired_ratio(
    num: Sequence[float], den: Sequence[float], confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """``median(num) / median(den)`` of paired samples, with a bootstrap interval over the pairs."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired_ratio: need two equal-length, non-empty 1-d samples, got {a.shape}, {b.shape}"
        )
    if np.any(b <= 0) or np.any(a < 0):
        raise ValueError("paired_ratio: samples must be positive (durations, energies)")
    estimate = float(_ratio_of_medians(a, b))
    method = INTERVAL_METHODS["paired ratio"]
    if a.size < MIN_PAIRS:
        return Interval(estimate, None, None, confidence, int(a.size), method)
    if np.all(a / b == a[0] / b[0]):  # every pair agrees exactly: nothing to resample
        return Interval(estimate, estimate, estimate, confidence, int(a.size), method)
    lo, hi = _bootstrap((a, b), _ratio_of_medians, confidence, paired=True)
    return Interval(estimate, min(lo, estimate), max(hi, estimate), confidence, int(a.size), method)


def mean_interval(xs: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The mean of ``xs`` with a bootstrap interval."""
    x = np.asarray(xs, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mean_interval: need a non-empty 1-d sample, got shape {x.shape}")
    estimate = float(x.mean())
    method = INTERVAL_METHODS["mean"]
    if x.size < MIN_PAIRS:
        return Interval(estimate, None, None, confidence, int(x.size), method)
    if np.all(x == x[0]):
        return Interval(estimate, estimate, estimate, confidence, int(x.size), method)
    lo, hi = _bootstrap((x,), lambda s, axis=-1: np.mean(s, axis=axis), confidence, paired=False)
    return Interval(estimate, min(lo, estimate), max(hi, estimate), confidence, int(x.size), method)


NO_CHANGE = "no measurable change"


def change_sign(interval: tuple[float, float] | None, no_change: float) -> int | None:
    """Which way a change measurably went, from its confidence interval: +1 when the whole interval lies
    above ``no_change`` (1 for a ratio, 0 for a difference), -1 when it lies wholly below, 0 when it
    contains ``no_change`` (no measurable change; so does an interval with a NaN end); None without an
    interval (no claim either way)."""
    if interval is None:
        return None
    low, high = interval
    if low > no_change:
        return 1
    if high < no_change:
        return -1
    return 0


def ratio_change(ratio: float, interval: tuple[float, float] | None, higher_is_better: bool | None) -> str:
    """What a ratio vs a reference says: "better", "worse", "no measurable change", or "" (no interval).

    ``higher_is_better`` is the direction of the quantity whose ratio this is (latency: False).
    """
    sign = change_sign(interval, no_change=1.0)
    if sign is None:
        return ""
    if sign == 0 or higher_is_better is None:
        return NO_CHANGE
    return "better" if (sign > 0) == higher_is_better else "worse"
