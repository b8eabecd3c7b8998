"""Smoke tests of the scripts under benchmarks/ (tiny models, a step or two)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mask_training_iteration_both_ways_agree_and_checkpointing_saves_less():
    bench = _load("mask_training_memory")
    pipe, model, _, sampling = bench.load_pipeline("tiny")
    assert model == "tiny"
    run = bench.MaskTraining(pipe, sampling)
    assert all(not p.requires_grad for p in run.denoiser.parameters())
    exclude = run.fixed_storages(2)
    grads, peaks = {}, {}
    for name, ckpt in bench.WAYS:
        run.zero_grad()
        with bench.SavedActivations(exclude) as counter:
            loss = run.iteration(2, ckpt)
        assert loss > 0
        assert counter.bytes == 0  # every saved tensor was released after backward
        grads[name], peaks[name] = run.gradients(), counter.peak
    assert grads["full"].abs().max() > 0
    torch.testing.assert_close(grads["checkpointed"], grads["full"], rtol=1e-4, atol=1e-7)
    assert 0 < peaks["checkpointed"] < peaks["full"]


def test_saved_activation_counter_counts_a_storage_once_and_skips_excluded():
    bench = _load("mask_training_memory")
    w = torch.randn(64, 64, requires_grad=True)
    x = torch.randn(8, 64, requires_grad=True)
    with bench.SavedActivations({w.untyped_storage().data_ptr()}) as counter:
        h = torch.tanh(x @ w)  # saves x, w (excluded) and tanh's output
        y = (h * h).sum()  # saves h twice: one storage
    assert counter.peak == x.untyped_storage().nbytes() + h.untyped_storage().nbytes()
    y.backward()
    del y, h
    assert counter.bytes == 0


@pytest.mark.slow  # fresh interpreters for the memory figures: ~1 min on 2 shared cores
def test_mask_training_memory_script_writes_json(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "mask_training_memory.py"),
            "--model",
            "tiny",
            "--steps",
            "1,2",
            "--reps",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {(r["T"], r["checkpointing"]) for r in result["rows"]} == {
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    }
    for row in result["rows"]:
        assert (
            row["peak_rss_growth_bytes"] > 0
            and row["saved_activation_bytes"] > 0
            and row["time_s_median"] > 0
        )
    assert set(result["targets"]) == {"memory_flat_with_checkpointing", "time_overhead_of_checkpointing"}
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
