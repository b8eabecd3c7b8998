"""Paired, interleaved timing and energy (fake NVML and a manual clock), the bootstrap intervals, and the
model's own memory on the CPU."""

from __future__ import annotations

import random

import pytest
import torch

from ecodiff_bench.core.stats import mean_interval, paired_ratio, ratio_change
from ecodiff_bench.measure.energy import EnergyMonitor
from ecodiff_bench.measure.footprint import LiveTensorBytes, weights_bytes
from ecodiff_bench.measure.memory import MemoryTracker
from ecodiff_bench.measure.paired import PairedSettings, measure_paired


def test_paired_ratio_interval_covers_the_true_ratio_and_says_no_change_when_there_is_none():
    rng = random.Random(0)
    base = [1.0 + rng.uniform(-0.2, 0.2) for _ in range(30)]
    drift = [1 + 0.5 * (i % 5) / 5 for i in range(30)]  # load that changes between pairs, alike for both
    pruned = [0.8 * b * d * (1 + rng.uniform(-0.02, 0.02)) for b, d in zip(base, drift, strict=True)]
    base = [b * d for b, d in zip(base, drift, strict=True)]
    iv = paired_ratio(pruned, base)
    assert iv.low < 0.8 < iv.high and iv.high < 1.0 and iv.n == 30
    assert ratio_change(0.8, (iv.low, iv.high), higher_is_better=False) == "better"
    same = paired_ratio(base, [b * (1 + rng.uniform(-0.1, 0.1)) for b in base])
    assert same.contains(1.0)
    assert ratio_change(same.estimate, (same.low, same.high), False) == "no measurable change"
    assert paired_ratio(base, base) == paired_ratio(base, base)  # seeded: the same interval every time


def test_intervals_need_three_samples_and_positive_data():
    assert not paired_ratio([1.0, 2.0], [1.0, 2.0]).known
    assert not mean_interval([1.0, 2.0]).known and mean_interval([1.0, 2.0, 3.0]).known
    with pytest.raises(ValueError, match="positive"):
        paired_ratio([1.0, 1.0, 1.0], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="equal-length"):
        paired_ratio([1.0], [1.0, 2.0])


def _monitor(nvml):
    nvml.reset([nvml.FakeGpu(power_w=200.0)])
    return EnergyMonitor(clock=nvml.clock, sleep=nvml.sleep, cpu="off", sync=lambda: None)


def test_pruned_and_base_alternate_in_blocks_and_give_paired_ratios(nvml):
    mon = _monitor(nvml)
    order = []

    def call(name, seconds):
        def f():
            order.append(name)
            nvml.advance(seconds)

        return f

    res = measure_paired(
        {"pruned": call("p", 0.3), "base": call("b", 0.4)},
        mon,
        PairedSettings(warmup=0, min_reps=4, max_reps=4),
        clock=nvml.clock,
        steps_per_call=10,
    )
    # blocks of calls that last at least the energy counter's window (0.5 s): 2 calls each
    assert order[:8] == ["p", "p", "b", "b", "b", "b", "p", "p"]  # A B, B A, ...
    assert res.rounds == 4 and all(len(b.call_s) == 2 for b in res.blocks["pruned"])
    v = res.values["pruned"]
    lat, energy = v["latency_ratio_vs_base"], v["energy_ratio_vs_base"]
    assert lat.value == pytest.approx(0.75) and energy.value == pytest.approx(0.75)
    assert lat.details["ci_low"] == pytest.approx(0.75) == lat.details["ci_high"]  # no noise at all
    assert energy.status == "measured" and v["energy_image_j"].value == pytest.approx(60.0)
    assert v["latency_image_s"].value == pytest.approx(0.3) and v["latency_step_s"].value == pytest.approx(
        0.03
    )
    assert "latency_ratio_vs_base" not in res.values["base"]


def test_repetition_stops_at_the_precision_or_the_time_budget(nvml):
    rng = random.Random(1)
    mon = _monitor(nvml)

    def noisy(seconds, spread):
        return lambda: nvml.advance(seconds * (1 + rng.uniform(-spread, spread)))

    quiet = measure_paired(
        {"pruned": noisy(0.6, 0.01), "base": noisy(0.8, 0.01)},
        mon,
        PairedSettings(warmup=0, min_reps=3, max_seconds=1000, precision=0.02),
        clock=nvml.clock,
    )
    assert quiet.stopped == "precision" and quiet.rounds < 10
    loud = measure_paired(
        {"pruned": noisy(0.6, 0.6), "base": noisy(0.8, 0.6)},
        mon,
        PairedSettings(warmup=0, min_reps=3, max_seconds=30, precision=0.001),
        clock=nvml.clock,
    )
    assert loud.stopped == "time budget" and loud.elapsed_s >= 30
    d = loud.values["pruned"]["latency_ratio_vs_base"].details
    assert d["stopped"] == "time budget" and d["ci_low"] < d["ci_high"]


def test_one_model_alone_repeats_until_its_mean_is_known(nvml):
    mon = _monitor(nvml)
    res = measure_paired(
        {"pruned": lambda: nvml.advance(0.6)}, mon, PairedSettings(warmup=0, min_reps=3), clock=nvml.clock
    )
    v = res.values["pruned"]
    assert res.stopped == "precision" and "latency_ratio_vs_base" not in v
    assert v["latency_image_s"].details["ci_low"] == pytest.approx(0.6)


def test_cpu_memory_is_the_models_weights_plus_what_the_call_allocates():
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    assert weights_bytes(model) == 4 * (64 * 256 + 256 + 256 * 64 + 64)
    x = torch.randn(32, 64)
    with torch.no_grad(), MemoryTracker("cpu", model=model) as mem:
        model(x)
    v = mem.values()["model_peak_bytes"]
    acts = v.details["activations_peak_bytes"]
    assert acts >= 4 * 32 * 256  # the hidden activation, at least
    assert v.value == weights_bytes(model) + acts and "weights" in v.note
    assert mem.values()["peak_rss_bytes"].note  # the whole process, kept apart
    with LiveTensorBytes() as live:
        kept = torch.ones(1000) * 2  # the ones and the product alive at once: 8,000 B
        del kept
        _ = torch.ones(10) + 1
    assert live.peak == 8000 and live.current == 40


def test_each_interval_is_made_the_way_the_catalog_says(nvml):
    from ecodiff_bench.core.metrics import metric
    from ecodiff_bench.core.stats import INTERVAL_METHODS

    rng = random.Random(2)
    mon = _monitor(nvml)
    res = measure_paired(
        {"pruned": lambda: nvml.advance(0.6 * rng.uniform(0.9, 1.1)), "base": lambda: nvml.advance(0.8)},
        mon,
        PairedSettings(warmup=0, min_reps=4, max_reps=4),
        clock=nvml.clock,
    )
    kinds = set()
    for v in res.values["pruned"].values():
        kind = metric(v.name).interval
        kinds.add(kind)
        if kind == "none":
            assert "ci_method" not in v.details, v.name
        else:
            assert v.details["ci_method"] == INTERVAL_METHODS[kind] and v.details["ci_n"] == 4, v.name
    assert kinds == {"none", "mean", "paired ratio"}


def test_paired_settings_are_the_suites_latency_section_under_its_names():
    from ecodiff_bench.suite.schema import Latency

    section = Latency(min_reps=4, max_reps=9, precision=0.05)
    settings = PairedSettings.from_latency(section)
    assert settings == PairedSettings(**section.model_dump())  # every field, the same names
    with pytest.raises(ValueError, match="min_reps/max_reps"):
        PairedSettings(min_reps=5, max_reps=2)
    with pytest.raises(ValueError, match="precision"):
        PairedSettings(precision=0)
