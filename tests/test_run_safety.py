"""Runs that are safe to repeat and to run side by side, on tiny pipelines saved to disk: two runs of one
suite on one store never measure a record twice; suites share a store; a release keeps what it tagged
when a failed spec is measured again; nothing is written outside ``outputs.dir``; the cost of a resumed
scoring is the sum of its parts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.store import Store
from ecodiff_bench.core.values import Value
from ecodiff_bench.run.attempts import Attempts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    import tiny

    path = tmp_path_factory.mktemp("models") / "sdxl"
    tiny.sdxl_pipeline().save_pretrained(path)
    return path


def _suite(
    tmp: Path, source: Path, *, name: str = "tiny", methods=None, idle_s: float = 0, **outputs
) -> Path:
    import tiny

    suite = {
        "name": name,
        "models": [tiny.suite_model("sdxl", source, label="tiny-sdxl")],
        "methods": methods or [{"name": "random", "ratios": [0.2, 0.4]}],
        "evaluation": {"prompts": ["a photo of a cat"], "samples": 2, "metrics": ["ssim_vs_base"]},
        "performance": {"latency": {"warmup": 0, "min_reps": 1, "min_seconds": 0, "max_reps": 1}},
        "energy": {"country": "FRA", "idle_baseline_s": idle_s},
        "outputs": {"dir": str(tmp / "out"), "report": ["md"], **outputs},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


@pytest.mark.slow  # three processes that each import torch: ~25 s on an idle 2-core machine
def test_a_second_run_on_the_same_store_refuses_or_waits_and_measures_nothing_twice(tmp_path, tiny_sdxl):
    # the first run measures idle power for a few seconds while it holds the store's lock
    suite = _suite(tmp_path, tiny_sdxl, idle_s=6)
    cmd = [sys.executable, "-m", "ecodiff_bench", "run", str(suite)]
    lock = tmp_path / "out" / "store.sqlite.lock"
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.1)
    waiting = subprocess.Popen(
        [*cmd, "--wait"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    refused = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert f"another run (pid {first.pid}" in refused.stderr and "Traceback" not in refused.stderr
    assert first.wait(timeout=300) == 0
    waited, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, waited
    assert "waiting for the run" in waited and "already measured" in waited
    records = Store(tmp_path / "out" / "store.sqlite", readonly=True).records()
    assert len(records) == 3 and len({r["run_id"] for r in records}) == 1  # all measured once, by the first


def test_suites_share_a_store_and_a_release_keeps_its_records(tmp_path, tiny_sdxl):
    """Two suites measure the same model into one store: each has its own base record (ids carry the suite's
    name), so each report finds its base. A release tagged on a failed run keeps its failed records when
    the specs are measured again."""
    store = tmp_path / "shared.sqlite"
    missing = tmp_path / "not-yet"
    a = _suite(tmp_path, missing, name="suite-a", store=str(store))
    result = CliRunner().invoke(main, ["run", str(a)])
    assert result.exit_code == 1 and "FAILED" in result.output  # the model is not there yet
    first_run = Store(store, readonly=True).run_ids()[0]
    assert (
        CliRunner().invoke(main, ["tag", "broken", "--run-id", first_run, "--store", str(store)]).exit_code
        == 0
    )
    shutil.copytree(tiny_sdxl, missing)
    assert CliRunner().invoke(main, ["run", str(a)]).exit_code == 0
    b = _suite(tmp_path, missing, name="suite-b", store=str(store))
    result = CliRunner().invoke(main, ["run", str(b)])
    assert result.exit_code == 0 and "already measured" not in result.output
    with Store(store, readonly=True) as s:
        for suite in ("suite-a", "suite-b"):
            records = s.records(suite=suite)
            assert [r["method"] for r in records].count("base") == 1 and all(
                r["status"] == "ok" for r in records
            )
        assert {r["status"] for r in s.tagged("broken")} == {"failed"}
        assert {r["run_id"] for r in s.tagged("broken")} == {first_run}
    for suite in ("suite-a", "suite-b"):
        result = CliRunner().invoke(
            main, ["report", "--suite", suite, "--store", str(store), "--out", str(tmp_path / suite)]
        )
        assert result.exit_code == 0, result.output


def test_nothing_is_written_outside_outputs_dir(tmp_path, tiny_sdxl, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    suite = _suite(work, tiny_sdxl, methods=[{"name": "magnitude", "ratios": [0.3]}])
    before = {p for p in tmp_path.rglob("*")}
    assert CliRunner().invoke(main, ["run", str(suite)]).exit_code == 0
    new = {p for p in tmp_path.rglob("*")} - before
    out = (work / "out").resolve()
    assert new and all(p.resolve().is_relative_to(out) or p.resolve() == out for p in new), sorted(
        str(p) for p in new if not p.resolve().is_relative_to(out)
    )
    model_dirs = list((out / "models").iterdir())
    assert [p.name.split("-magnitude-")[0] for p in model_dirs] == ["tiny-sdxl"]


# -- the cost of a computation in several parts -----------------------------------------------------------


def _energy(joules: float) -> Value:
    return Value("pruning_energy_j", joules, "J", "measured", False)


def test_an_interrupted_then_resumed_scoring_costs_the_sum_of_its_parts(tmp_path):
    folder = tmp_path / "scores"
    parts = Attempts(folder)
    parts.begin()
    parts.end("interrupted", 10.0, _energy(100.0))
    resumed = Attempts(folder)  # the next process
    resumed.begin()
    resumed.end("finished", 5.0, _energy(50.0))
    time_s, energy = resumed.totals(resumed_from=7)
    assert (time_s.value, time_s.status) == (15.0, "measured")
    assert (energy.value, energy.status) == (150.0, "measured")
    assert (
        "sum of 2 parts" in time_s.note
        and "interrupted 10.0 s" in time_s.note
        and "sum of 2 parts" in energy.note
    )
    fresh_time, fresh_energy = resumed.totals(
        resumed_from=0
    )  # nothing was resumed: the earlier part was lost
    assert (fresh_time.value, fresh_energy.value) == (5.0, 50.0) and "not counted" in fresh_time.note


def test_a_killed_part_is_estimated_from_its_last_checkpoint(tmp_path):
    folder = tmp_path / "scores"
    killed = Attempts(folder)
    killed.begin()  # ... and the process dies without recording its end
    (folder / "checkpoint").mkdir(parents=True)
    ckpt = folder / "checkpoint" / "state.json"
    ckpt.write_text("{}")
    started = json.loads((folder / "attempts.json").read_text())[0]["started_unix"]
    os.utime(ckpt, (started + 20.0, started + 20.0))
    resumed = Attempts(folder)
    resumed.begin()
    resumed.end("finished", 10.0, _energy(100.0))
    time_s, energy = resumed.totals(resumed_from=3)
    assert time_s.status == "estimated" and time_s.value == pytest.approx(30.0)
    assert energy.status == "estimated" and energy.value == pytest.approx(300.0)  # 20 s at 10 W
    assert "killed" in time_s.note and "mean power" in energy.note


def test_a_killed_part_without_a_checkpoint_makes_the_total_a_lower_bound(tmp_path):
    folder = tmp_path / "scores"
    Attempts(folder).begin()
    resumed = Attempts(folder)
    resumed.begin()
    resumed.end("finished", 4.0, _energy(8.0))
    time_s, energy = resumed.totals(resumed_from=2)
    assert time_s.value == 4.0 and time_s.status == "estimated" and "lower bound" in time_s.note
    assert energy.value == 8.0 and energy.status == "estimated" and "lower bound" in energy.note


def test_the_scorer_records_each_attempt_and_reports_the_sum(tmp_path, monkeypatch):
    import torch

    import pruning
    from ecodiff_bench.measure.energy import EnergyMonitor
    from ecodiff_bench.run.records import cost_values
    from ecodiff_bench.run.scorer import Scorer
    from ecodiff_bench.suite import RunLayout, expand, validate_suite

    spec = expand(
        validate_suite(
            {
                "name": "t",
                "models": ["digits-sdxl"],
                "methods": [{"name": "magnitude", "ratios": [0.2]}],
                "energy": {"country": "FRA"},
            }
        )
    ).specs[1]
    calls = []

    def score(*args, **kwargs):
        calls.append(kwargs["checkpoint_dir"])
        time.sleep(0.05)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return pruning.Scores("magnitude", {"g": torch.ones(2)}, {"resumed_from": 4})

    monkeypatch.setattr(pruning, "score", score)
    with EnergyMonitor() as monitor:
        with pytest.raises(KeyboardInterrupt):
            Scorer(RunLayout(tmp_path, tmp_path / "store.sqlite"), monitor).scores(spec, None, {})
        scores = Scorer(RunLayout(tmp_path, tmp_path / "store.sqlite"), monitor).scores(spec, None, {})
    values = cost_values(scores)
    assert len(calls) == 2 and values["pruning_time_s"].value >= 0.1
    assert "sum of 2 parts" in values["pruning_time_s"].note
    assert "sum of 2 parts" in values["pruning_energy_j"].note or not values["pruning_energy_j"].available
    ledger = json.loads(next(tmp_path.rglob("attempts.json")).read_text())
    assert [p["status"] for p in ledger] == ["interrupted", "finished"]
