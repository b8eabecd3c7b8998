"""Provenance: versions, machine, git, and GPU details from (fake) NVML or 'unavailable' with a reason."""

from __future__ import annotations

from ecodiff_bench.run.provenance import collect_provenance, gpu_info


def test_provenance_fields(nvml):
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    p = collect_provenance(extra={"seeds": [0, 1]})
    for key in ("created_at", "git", "python", "hostname", "cpu", "packages", "torch", "gpu"):
        assert key in p
    for pkg in ("torch", "diffusers", "transformers", "torchmetrics", "open-clip-torch", "codecarbon"):
        assert pkg in p["packages"]
    assert p["packages"]["torch"]
    assert p["gpu"] == {
        "status": "unavailable",
        "reason": "NVML library not found (no NVIDIA driver on this machine)",
    }
    assert p["seeds"] == [0, 1]
    assert "commit" in p["git"]


def test_gpu_details_from_nvml(nvml):
    nvml.reset([nvml.FakeGpu(name="NVIDIA H100 80GB HBM3", power_limit_mw=700_000)])
    info = gpu_info()
    assert info["status"] == "ok" and info["driver"] == "550.54.15"
    assert info["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert info["gpus"][0]["power_limit_w"] == 700.0
    assert info["gpus"][0]["memory_total_bytes"] == 80 * 2**30
