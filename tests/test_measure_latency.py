"""Latency: repetition rules (minimum count AND duration, maximum count), statistics, interleaving."""

from __future__ import annotations

import time

import pytest

from ecodiff_bench.measure.latency import LatencySampler, Timer, interleaved, latency_values, time_callable


def test_timer_measures_sleep():
    with Timer() as t:
        time.sleep(0.02)
    assert t.clock == "perf_counter"
    assert 0.015 < t.elapsed_s < 0.5


def test_timer_refuses_cuda_events_without_cuda():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Timer(device="cpu", clock="cuda_events")


def test_min_reps_and_min_seconds_both_hold():
    calls = []
    vals = time_callable(lambda: calls.append(1), warmup=3, min_reps=7, min_seconds=0.0)
    assert len(calls) == 3 + 7
    assert vals["latency_image_s"].details["n"] == 7

    calls.clear()
    vals = time_callable(lambda: (calls.append(1), time.sleep(0.01)), warmup=0, min_reps=2, min_seconds=0.08)
    n = vals["latency_image_s"].details["n"]
    assert n >= 7 and vals["latency_image_s"].details["total_s"] >= 0.08


def test_max_reps_caps_and_says_so():
    vals = time_callable(lambda: time.sleep(0.001), warmup=0, min_reps=2, min_seconds=60.0, max_reps=5)
    assert vals["latency_image_s"].details["n"] == 5
    assert vals["latency_image_s"].details["stopped_at_max_reps"] is True


def test_statistics_per_image_step_and_throughput():
    calls = [0.4, 0.2, 0.2, 0.2, 1.0]
    vals = latency_values(calls, images_per_call=4, steps_per_call=20)
    img = vals["latency_image_s"]
    assert img.name == "latency_image_s" and img.unit == "s" and img.higher_is_better is False
    assert img.value == pytest.approx(0.4 / 4)  # mean call 0.4 s over 4 images
    assert img.details["p50"] == pytest.approx(0.05)
    assert img.details["p90"] == pytest.approx(0.19)  # numpy linear interpolation of per-image times
    assert img.details["n"] == 5
    assert img.details["stdev"] == pytest.approx(0.0866025, rel=1e-5)
    assert vals["latency_step_s"].value == pytest.approx(0.4 / 20)
    assert vals["throughput_img_per_s"].value == pytest.approx(20 / 2.0)
    assert vals["throughput_img_per_s"].higher_is_better is True


def test_missing_steps_is_unavailable_not_zero():
    vals = latency_values([0.1, 0.1])
    assert vals["latency_step_s"].status == "unavailable"
    assert "steps_per_call" in vals["latency_step_s"].note


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="min_reps"):
        time_callable(lambda: None, min_reps=0)
    with pytest.raises(ValueError, match="max_reps"):
        time_callable(lambda: None, min_reps=5, max_reps=2)
    with pytest.raises(ValueError, match="images_per_call"):
        latency_values([0.1], images_per_call=0)


def test_sampler_context_manager():
    s = LatencySampler(images_per_call=2, steps_per_call=4)
    for _ in range(3):
        with s.measure():
            time.sleep(0.002)
    vals = s.values()
    assert vals["latency_image_s"].details["n"] == 3
    assert vals["latency_step_s"].available


def test_interleaved_alternates_order_and_times_each():
    log = []
    out = interleaved(
        {"base": lambda: log.append("b"), "pruned": lambda: log.append("p")},
        rounds=4,
        warmup=1,
        images_per_call={"base": 1, "pruned": 2},
        steps_per_call=10,
    )
    assert log == ["b", "p"] + ["b", "p", "p", "b", "b", "p", "p", "b"]
    assert set(out) == {"base", "pruned"}
    assert out["base"]["latency_image_s"].details["n"] == 4
    assert out["pruned"]["latency_image_s"].details["images_per_call"] == 2
    assert out["pruned"]["latency_image_s"].details["interleaved_with"] == ["base"]


def test_interleaved_runs_until_min_seconds():
    out = interleaved(
        {"a": lambda: time.sleep(0.01), "b": lambda: time.sleep(0.005)}, rounds=1, min_seconds=0.05, warmup=0
    )
    assert out["b"]["latency_image_s"].details["total_s"] >= 0.05  # every function reaches min_seconds
    assert out["a"]["latency_image_s"].details["n"] == out["b"]["latency_image_s"].details["n"]
    with pytest.raises(ValueError, match="images_per_call: no entry"):
        interleaved({"a": lambda: None}, images_per_call={"b": 1})
