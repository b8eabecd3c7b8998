"""Energy windows against a fake NVML (tests/fakes/pynvml.py): counters advancing on a manual clock, a
failed read, a GPU without the counter, two GPUs, idle subtraction, the power timeline, RAPL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ecodiff_bench.measure.cpu_energy import RaplReader
from ecodiff_bench.measure.energy import EnergyMonitor, UnknownWindowError, measure_energy

# the ``nvml`` fixture (tests/conftest.py) installs a fresh fake NVML per test


def monitor(nvml, **kw):
    kw.setdefault("cpu", "off")
    kw.setdefault("sync", lambda: None)
    return EnergyMonitor(clock=nvml.clock, sleep=nvml.sleep, **kw)


def test_counter_difference_is_the_window_energy(nvml):
    nvml.reset([nvml.FakeGpu(power_w=250.0)])
    m = monitor(nvml)
    m.begin_window("gen")
    nvml.advance(2.0)
    w = m.end_window("gen")
    assert w.duration_s == pytest.approx(2.0)
    assert w.gpu_status == "measured"
    assert w.gpu_j == pytest.approx(500.0)
    vals = w.values(images=4)
    assert vals["gpu_energy_image_j"].value == pytest.approx(125.0)
    assert vals["gpu_energy_image_j"].unit == "J"
    assert vals["gpu_energy_image_j"].higher_is_better is False
    assert vals["cpu_energy_image_j"].status == "unavailable"
    # CPU off: the total is the GPU figure, with the omission said in the note
    assert vals["energy_image_j"].value == pytest.approx(125.0)
    assert "CPU energy not included" in vals["energy_image_j"].note
    assert vals["gpu_energy_image_net_j"].status == "unavailable"
    assert "idle baseline" in vals["gpu_energy_image_net_j"].note


def test_two_gpus_are_summed(nvml):
    nvml.reset([nvml.FakeGpu(power_w=100.0), nvml.FakeGpu(power_w=300.0, name="NVIDIA A100")])
    m = monitor(nvml)
    with m.window("w") as r:
        nvml.advance(1.0)
    assert r.window.gpu_j == pytest.approx(400.0)
    assert [g.joules for g in r.window.gpus] == pytest.approx([100.0, 300.0])
    assert r.window.details["gpu_names"] == ["NVIDIA H100 80GB HBM3", "NVIDIA A100"]


def test_gpu_without_counter_is_unavailable_never_zero(nvml):
    nvml.reset([nvml.FakeGpu(power_w=100.0), nvml.FakeGpu(has_energy_counter=False, name="Tesla P100")])
    m = monitor(nvml)
    m.begin_window("w")
    nvml.advance(1.0)
    w = m.end_window("w")
    assert w.gpu_status == "unavailable" and w.gpu_j is None
    assert "Tesla P100" in w.gpu_note and "no total-energy counter" in w.gpu_note
    vals = w.values(images=1)
    for name in ("gpu_energy_image_j", "gpu_energy_image_net_j", "energy_image_j"):
        assert vals[name].status == "unavailable" and vals[name].value is None, name
    assert w.gpus[0].joules == pytest.approx(100.0)  # the GPU that has it is still reported


def test_failed_read_is_unavailable_with_reason(nvml):
    gpu = nvml.FakeGpu(power_w=100.0)
    nvml.reset([gpu])
    m = monitor(nvml)
    m.begin_window("w")
    nvml.advance(1.0)
    gpu.fail_energy_reads = 1
    w = m.end_window("w")
    assert w.gpu_status == "unavailable"
    assert "read failed" in w.gpu_note
    # the next window works again
    m.begin_window("w2")
    nvml.advance(1.0)
    assert m.end_window("w2").gpu_j == pytest.approx(100.0)


def test_no_nvml_library(monkeypatch, nvml):
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    m = monitor(nvml, cpu="estimate", cpu_tdp_w=8.0)
    assert m.session.absent
    m.begin_window("w")
    nvml.advance(1.0)
    w = m.end_window("w")
    assert w.gpu_status == "unavailable" and "NVML library not found" in w.gpu_note
    vals = w.values(images=1)
    assert vals["gpu_energy_image_j"].status == "unavailable"
    # no GPU on this machine: the total is the CPU figure, labelled estimated
    assert vals["cpu_energy_image_j"].status == "estimated"
    assert vals["energy_image_j"].status == "estimated"
    assert "no NVIDIA GPU" in vals["energy_image_j"].note


def test_nvml_module_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    m = EnergyMonitor(cpu="off", sync=lambda: None)
    m.begin_window("w")
    w = m.end_window("w")
    assert w.gpu_status == "unavailable" and "nvidia-ml-py" in w.gpu_note
    assert w.values(1)["energy_image_j"].status == "unavailable"


def test_unknown_and_duplicate_windows(nvml):
    m = monitor(nvml)
    with pytest.raises(UnknownWindowError, match="no open window named 'nope'"):
        m.end_window("nope")
    m.begin_window("a")
    with pytest.raises(ValueError, match="already open"):
        m.begin_window("a")
    with pytest.raises(KeyError):
        m.end_window("b")


def test_idle_subtraction(nvml):
    gpu = nvml.FakeGpu(power_w=60.0)
    nvml.reset([gpu])
    m = monitor(nvml)
    idle = m.measure_idle(seconds=5.0)
    assert idle.name == "idle_power_w" and idle.unit == "W"
    assert idle.value == pytest.approx(60.0)
    gpu.power_w = 260.0
    m.begin_window("gen")
    nvml.advance(2.0)
    w = m.end_window("gen")
    vals = w.values(images=2, idle_power=m.idle_power)
    assert vals["gpu_energy_image_j"].value == pytest.approx(260.0)  # 520 J / 2
    assert vals["gpu_energy_image_net_j"].value == pytest.approx(200.0)  # (520 - 60*2) / 2
    assert vals["idle_power_w"].value == pytest.approx(60.0)


def test_short_window_falls_back_to_power_times_time(nvml):
    nvml.reset([nvml.FakeGpu(power_w=200.0)])
    m = monitor(nvml, min_window_s=0.5)
    m.begin_window("short")
    nvml.advance(0.1)
    w = m.end_window("short")
    assert w.gpu_status == "estimated"
    assert w.gpu_j == pytest.approx(20.0)
    assert "power" in w.gpu_note
    assert w.values(1)["gpu_energy_image_j"].status == "estimated"


def test_measure_energy_repeats_until_min_seconds(nvml):
    nvml.reset([nvml.FakeGpu(power_w=100.0)])
    m = monitor(nvml)
    calls = []

    def fn():
        calls.append(1)
        nvml.advance(0.15)

    vals = measure_energy(fn, m, images_per_call=2, min_seconds=1.0)
    assert len(calls) == 7  # 7 x 0.15 s >= 1 s
    assert vals["gpu_energy_image_j"].status == "measured"
    assert vals["gpu_energy_image_j"].value == pytest.approx(100.0 * 0.15 * 7 / 14)
    assert vals["gpu_energy_image_j"].details["reps"] == 7


def test_power_timeline(nvml):
    gpu = nvml.FakeGpu(power_w=120.0)
    nvml.reset([gpu, nvml.FakeGpu(power_w=30.0)])
    m = EnergyMonitor(cpu="off", sync=lambda: None)  # real clock: the sampler thread runs for real
    m.start_timeline(interval_s=0.01)
    time.sleep(0.08)
    gpu.power_w = 220.0
    time.sleep(0.08)
    timeline = m.stop_timeline()
    assert len(timeline) >= 4
    ts = [t for t, _ in timeline]
    assert ts == sorted(ts) and ts[0] == pytest.approx(0.0, abs=0.05)
    watts = {w for _, w in timeline}
    assert watts <= {150.0, 250.0} and watts == {150.0, 250.0}
    assert m.stop_timeline() == []


def test_timeline_without_nvml_raises(nvml):
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    m = monitor(nvml)
    with pytest.raises(RuntimeError, match="NVML unavailable"):
        m.start_timeline()


def _rapl_tree(root: Path, energy_uj: int, max_uj: int = 1000_000_000):
    pkg = root / "intel-rapl:0"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "name").write_text("package-0\n")
    (pkg / "energy_uj").write_text(f"{energy_uj}\n")
    (pkg / "max_energy_range_uj").write_text(f"{max_uj}\n")
    sub = root / "intel-rapl:0:0"  # a sub-domain (core): inside the package figure, must be skipped
    sub.mkdir(exist_ok=True)
    (sub / "name").write_text("core\n")
    (sub / "energy_uj").write_text("5\n")
    return pkg / "energy_uj"


def test_rapl_energy_with_wraparound(nvml, tmp_path):
    counter = _rapl_tree(tmp_path, energy_uj=999_000_000)
    m = monitor(nvml, cpu="auto", rapl_root=tmp_path)
    assert m.rapl is not None and [d[0] for d in m.rapl.domains] == ["package-0"]
    m.begin_window("w")
    counter.write_text("2000000\n")  # wrapped at 1e9 uJ: 1,000,000 + 2,000,000 uJ = 3 J
    nvml.advance(1.0)
    w = m.end_window("w")
    assert w.cpu_status == "measured"
    assert w.cpu_j == pytest.approx(3.0)


def test_rapl_missing_gives_estimate_or_unavailable(nvml, tmp_path):
    assert not RaplReader(tmp_path / "absent").ok
    est = monitor(nvml, cpu="auto", rapl_root=tmp_path / "absent", cpu_tdp_w=16.0)
    est.begin_window("w")
    sum(i * i for i in range(200_000))  # burn a little CPU time
    w = est.end_window("w")
    assert w.cpu_status == "estimated" and w.cpu_j > 0
    assert "TDP 16 W" in w.cpu_note and "does not exist" in w.cpu_note
    strict = monitor(nvml, cpu="rapl", rapl_root=tmp_path / "absent")
    strict.begin_window("w")
    w = strict.end_window("w")
    assert w.cpu_status == "unavailable" and w.cpu_j is None and "does not exist" in w.cpu_note


def test_bad_arguments(nvml):
    with pytest.raises(ValueError, match="cpu: expected"):
        EnergyMonitor(cpu="maybe")
    w = monitor(nvml)
    w.begin_window("x")
    nvml.advance(1)
    with pytest.raises(ValueError, match="images: expected an integer >= 1"):
        w.end_window("x").values(images=0)
