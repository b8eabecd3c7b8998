"""The speed benchmarks' code paths on tiny models: benchmarks/gpu_validation.py --tiny, pruned_speed.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Runs benchmarks/gpu_validation.py as the GPU machine would see it: the harness, pydantic, codecarbon and
# open_clip cannot be imported, and pynvml is tests/fakes/pynvml.py, whose GPU draws 100 W of real time.
FRESH_INTERPRETER = """
import importlib.util, runpy, sys, threading, time
BLOCKED = ("ecodiff_bench.measure", "ecodiff_bench.core", "ecodiff_bench.suite", "pydantic", "codecarbon",
           "open_clip")
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(BLOCKED):
            raise ImportError(f"{name} is not on the GPU machine")
        return None
sys.meta_path.insert(0, Blocker())
spec = importlib.util.spec_from_file_location("pynvml", "tests/fakes/pynvml.py")
nvml = sys.modules["pynvml"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nvml)
def draw():
    while True:
        nvml.advance(0.02)
        time.sleep(0.02)
threading.Thread(target=draw, daemon=True).start()
sys.argv = ["benchmarks/gpu_validation.py", *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_validation_tiny_runs_every_section_without_the_harness(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_INTERPRETER, "--tiny", "--out", str(out)],
        capture_output=True, text=True, cwd=str(ROOT), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["driver"] == "550.54.15" and result["idle_power"]["status"] == "measured"
    assert result["idle_power"]["watts"] == pytest.approx(100, rel=0.5)
    training = result["sections"]["sdxl_mask_training"]
    assert [(r["T"], r["checkpointing"], r["status"]) for r in training["rows"]] == [
        (2, True, "ok"),
        (3, True, "ok"),
        (4, True, "ok"),
        (2, False, "ok"),
        (3, False, "ok"),
    ]
    assert all(r["time_s"] > 0 and r["loss_finite"] for r in training["rows"])
    assert all(r["logits_with_grad"] == r["of_logits"] == training["groups"] for r in training["rows"])
    assert set(training["checks"]) == {"time_overhead_T2", "time_overhead_T3"}  # no CUDA peak on the CPU
    for family in ("sdxl", "flux"):
        speed = result["sections"][f"{family}_speed"]
        assert speed["params"]["pruned"] < speed["params"]["base"]
        assert 0 < speed["flops_ratio"] < 1 and speed["latency_ratio"]["rounds"] == 4
        assert speed["plan"]["align"]["multiple"] == 64
        assert speed["inference_options"]["pruned"]["attention"] == "sdpa"
        assert len(speed["energy_per_image"]["base"]) == len(speed["energy_per_image"]["pruned"]) == 2
        for window in speed["energy_per_image"]["base"] + speed["energy_per_image"]["pruned"]:
            assert window["status"] == "measured" and window["seconds"] >= 0.3 and window["calls"] >= 1
            assert window["gpu_energy_image_j"] == pytest.approx(window["joules"] / window["calls"])
            assert window["gpu_energy_image_j"] > 0 and "gpu_energy_image_net_j" in window
        assert speed["energy_ratio"]["status"] == "measured" and speed["energy_ratio"]["ratio"] > 0
        assert "latency_within_0.05_of_flops" in speed["checks"]


def test_nvml_energy_window_measures_or_says_why_not(nvml):
    common = _load("_common")
    meter = common.NvmlEnergy()
    assert meter.driver == "550.54.15" and meter.reason is None
    window = meter.window(lambda: nvml.advance(0.5), 0.0)  # one call: 0.5 s at 100 W on the fake clock
    assert window["status"] == "measured" and window["joules"] == pytest.approx(50.0) and window["calls"] == 1
    meter.close()
    nvml.reset([nvml.FakeGpu(has_energy_counter=False)])
    assert "NotSupported" in common.NvmlEnergy().reason
    nvml.reset(init_error=nvml.NVMLError_LibraryNotFound)
    missing = common.NvmlEnergy()
    window = missing.window(lambda: None, 0.0)
    assert (
        window["status"] == "unavailable" and "LibraryNotFound" in window["reason"] and "joules" not in window
    )


def test_gpu_validation_refuses_bad_arguments(capsys):
    bench = _load("gpu_validation")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--tiny", "--sections", "sdxl_speed,vae"])
    assert exc.value.code == 2
    assert (
        "unknown section ['vae']; allowed: sdxl_mask_training, sdxl_speed, flux_speed"
        in capsys.readouterr().err
    )


def test_pruned_speed_smoke_writes_ratios_and_checks(tmp_path):
    result = _load("pruned_speed").main(
        [
            "--scale",
            "tiny",
            "--families",
            "flux",
            "--ratios",
            "0.2",
            "--align",
            "8",
            "--rounds",
            "3",
            "--warmup",
            "1",
            "--out",
            str(tmp_path / "speed.json"),
        ]  # fmt: skip
    )
    (family,) = result["families"]
    (row,) = family["rows"]
    for label in ("unaligned", "aligned"):
        r = row[label]
        assert 0 < r["flops_ratio"] < 1 and r["n"] == 3
        low, high = r["latency_ratio"]["ci95"]
        assert low <= r["latency_ratio"]["ratio"] <= high
    assert row["aligned"]["align"]["multiple"] == 8 and row["unaligned"]["align"] is None
    assert set(result["checks"]["latency_tracks_flops_at_20pct"]) == {"flux/unaligned", "flux/aligned"}
    assert json.loads((tmp_path / "speed.json").read_text())["checks"] == result["checks"]
