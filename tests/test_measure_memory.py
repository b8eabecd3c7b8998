"""Memory, size and FLOPs: CPU paths for real, NVML paths against the fake NVML."""

from __future__ import annotations

import pytest
import torch

from ecodiff_bench.measure.memory import MemoryTracker, count_parameters, disk_size, flops_per_step


def test_cpu_window_reports_rss_and_says_why_cuda_is_missing():
    with MemoryTracker(device="cpu") as mem:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch the pages so they count as resident
    vals = mem.values()
    del block
    assert vals["peak_rss_bytes"].status == "measured" and vals["peak_rss_bytes"].unit == "B"
    assert vals["peak_rss_bytes"].value >= 64 * 2**20
    for name in ("cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes", "nvml_memory_used_bytes"):
        assert vals[name].status == "unavailable" and "not a CUDA device" in vals[name].note


def test_values_before_exit_is_an_error():
    with pytest.raises(RuntimeError, match="has not ended"):
        MemoryTracker(device="cpu").values()


def test_count_parameters_dedups_shared_tensors_and_reads_meta():
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Sequential(a, torch.nn.Linear(3, 2))  # shares a
    v = count_parameters({"a": a, "b": b, "tokenizer": object()})
    assert v.name == "params" and v.unit == "count"
    assert v.value == 4 * 3 + 3 + 3 * 2 + 2
    assert v.details["by_component"] == {"a": 15, "b": 8}
    with torch.device("meta"):
        big = torch.nn.Linear(1000, 1000)
    assert count_parameters(big).value == 1000 * 1000 + 1000
    with pytest.raises(ValueError, match="holds no torch.nn.Module"):
        count_parameters({"x": 1})


def test_disk_size_counts_linked_files_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 50)
    (tmp_path / "sub" / "link.bin").symlink_to(tmp_path / "a.bin")
    v = disk_size(tmp_path)
    assert v.name == "disk_bytes" and v.value == 150 and v.details["files"] == 2
    assert disk_size(tmp_path / "a.bin").value == 100
    with pytest.raises(FileNotFoundError):
        disk_size(tmp_path / "nope")


def test_flops_of_a_linear_step_on_meta():
    with torch.device("meta"):
        lin = torch.nn.Linear(64, 32)
        x = torch.empty(8, 64)
    v = flops_per_step(lambda: lin(x))
    assert v.name == "flops_per_step" and v.unit == "FLOP"
    assert v.value == 2 * 8 * 64 * 32
    assert flops_per_step(lambda: torch.ones(3) + 1).status == "unavailable"


def test_nvml_memory_uses_the_matching_gpu(nvml):
    """Pretend a CUDA device is in use so the tracker asks the fake NVML for memory."""
    nvml.reset([nvml.FakeGpu(memory_used=3 * 2**30), nvml.FakeGpu(memory_used=7 * 2**30)])
    mem = MemoryTracker(device="cpu")
    mem._cuda = True  # no CUDA here: exercise the NVML branch only
    mem.device = torch.device("cuda", 1)
    mem._open_nvml()
    assert mem._nvml_gpu is not None and mem._nvml_gpu.index == 1
    mem._nvml_sample()
    assert mem._nvml_peak == 7 * 2**30
    assert mem._nvml_value().value == 7 * 2**30 and mem._nvml_value().unit == "B"


def test_cuda_peaks_are_the_allocators_in_the_catalogs_unit(monkeypatch):
    """No CUDA here: the allocator's peaks are faked to exercise the CUDA branch of the values."""
    mem = MemoryTracker(device="cpu", model=torch.nn.Linear(4, 4))
    mem._cuda, mem.device = True, torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 2048)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device: 4096)
    peaks = mem._cuda_peaks()
    assert (
        peaks["cuda_peak_allocated_bytes"].value == 2048.0
        and peaks["cuda_peak_reserved_bytes"].value == 4096.0
    )
    assert all(v.unit == "B" and v.details == {"device": "cuda:0"} for v in peaks.values())
    model = mem._model_peak()
    assert model.value == 2048.0 and model.details == {"weights_bytes": 4 * (16 + 4)} and model.unit == "B"
