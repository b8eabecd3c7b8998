"""End-to-end `ecodiff-bench run` on tiny pipelines saved to disk: records, resume, report, kill safety."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.record import artifact_path
from ecodiff_bench.core.store import Store

METHODS = [
    {"name": "ecodiff", "ratios": [0.3], "options": {"epochs": 1, "accumulate": 2, "prompts": 2}},
    {"name": "taylor", "ratios": [0.3], "options": {"batch": 2, "timestep_stride": 250}},
    {"name": "magnitude", "ratios": [0.3]},
    {"name": "random", "ratios": [0.3, 0.5]},
]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    import tiny

    root = tmp_path_factory.mktemp("models")
    tiny.sdxl_pipeline().save_pretrained(root / "sdxl")
    tiny.flux_pipeline(guidance_embeds=False).save_pretrained(root / "flux")
    return root


def _suite(tmp_path: Path, tiny_dirs: Path, models=("sdxl",), methods=METHODS) -> Path:
    entries = {
        "sdxl": {"name": "sdxl", "source": str(tiny_dirs / "sdxl"), "steps": 4, "guidance": 5.0},
        "flux": {
            "name": "flux-schnell",
            "source": str(tiny_dirs / "flux"),
            "steps": 2,
            "guidance": 0.0,
            "max_sequence_length": 8,
        },
    }
    suite = {
        "name": "tiny",
        "models": [
            {**entries[m], "height": 16, "width": 16, "device": "cpu", "dtype": "float32"} for m in models
        ],
        "methods": methods,
        "calibration": {"prompts": ["a photo of a cat", "a handwritten digit seven"], "count": 2},
        "evaluation": {
            "prompts": ["a photo of a cat", "a handwritten digit one"],
            "samples": 4,
            "metrics": ["ssim_vs_base", "psnr_vs_base"],
        },
        "performance": {"latency": {"warmup": 0, "min_reps": 3, "min_seconds": 0, "max_reps": 3}},
        "energy": {"country": "FRA", "idle_baseline_s": 0},
        "outputs": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_run_measures_every_variant_then_skips_them(tmp_path, tiny_dirs):
    suite = _suite(tmp_path, tiny_dirs, models=("sdxl", "flux"))
    result = CliRunner().invoke(main, ["run", str(suite)])
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "out" / "store.sqlite")
    records = store.records(suite="tiny")
    assert len(records) == 2 * 6 and all(r["status"] == "ok" for r in records)
    pruned = [r for r in records if r["method"] != "base"]
    for r in pruned:
        m = r["metrics"]
        assert (
            m["params"]["value"]
            < next(b for b in records if b["method"] == "base" and b["model"] == r["model"])["metrics"][
                "params"
            ]["value"]
        )
        assert 0.3 <= m["params_removed_frac"]["value"] < 0.6
        assert 0 < m["ssim_vs_base"]["value"] <= 1
        assert not Path(r["artifacts"]["plan"]).is_absolute()  # relative to the store's folder
        assert (
            artifact_path(r, "plan", store.path).exists() and artifact_path(r, "samples", store.path).exists()
        )
        for name in ("latency_image_s", "energy_image_j", "flops_per_step", "pruning_time_s"):
            assert name in m
    eco = next(r for r in pruned if r["method"] == "ecodiff")
    assert artifact_path(eco, "training_curve", store.path).exists()
    assert eco["settings"]["mask_training"]["trained_target"] == 0.3  # trained to its ratio, and says so
    assert "this ratio's own mask training" in eco["metrics"]["pruning_time_s"]["note"]
    _assert_every_recorded_metric_is_known(records, tmp_path / "out" / "store.sqlite")
    assert (tmp_path / "out" / "report" / "report.html").exists()
    for r in pruned:  # paired, interleaved ratios with their intervals
        for name in ("latency_ratio_vs_base", "energy_ratio_vs_base"):
            d = r["metrics"][name]["details"]
            assert d["ci_low"] <= r["metrics"][name]["value"] <= d["ci_high"], name
        assert r["metrics"]["model_peak_bytes"]["details"]["weights_bytes"] > 0
    _assert_emissions_csv(tmp_path / "out" / "emissions.csv", len(records))
    stamps = {r["record_id"]: r["created_at"] for r in records}

    again = CliRunner().invoke(main, ["run", str(suite), "--json"])
    assert again.exit_code == 0
    assert "already measured" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["exit_code"] == 0 and len(summary["records"]) == 12
    assert not any(r["measured_now"] for r in summary["records"])
    assert {r["record_id"]: r["created_at"] for r in store.records(suite="tiny")} == stamps


def _assert_emissions_csv(path: Path, rows: int) -> None:
    """codecarbon's emissions.csv schema beside the store: its columns, one row per measured model."""
    import pandas as pd

    from ecodiff_bench.measure.carbon import emissions_csv_columns

    frame = pd.read_csv(path)
    assert list(frame.columns) == emissions_csv_columns()
    assert len(frame) == rows
    assert (frame["energy_consumed"] > 0).all() and (frame["emissions"] > 0).all()
    assert set(frame["country_iso_code"]) == {"FRA"} and (frame["duration"] > 0).all()


def _assert_every_recorded_metric_is_known(records: list[dict], store: Path) -> None:
    """Every metric the runner recorded is in the catalog (with its unit and direction), is accepted by the
    gate and ``compare --metric``, and the report shows its change the catalog's way."""
    from ecodiff_bench.core.metrics import METRICS, is_absolute_delta
    from ecodiff_bench.core.thresholds import validate_thresholds
    from reports import cells
    from reports.records import direction

    recorded = {name: vd for r in records for name, vd in r["metrics"].items()}
    assert {"latency_ratio_vs_base", "pruning_energy_j", "ssim_vs_base"} <= set(recorded)
    for name, vd in recorded.items():
        assert name in METRICS, name
        assert vd["unit"] == METRICS.get(name).unit, name
        assert vd["higher_is_better"] == METRICS.get(name).higher_is_better, name
        assert direction(name, vd) == METRICS.get(name).higher_is_better
    validate_thresholds({name: {"max_increase": 1.0} for name in recorded})
    run_id = records[0]["run_id"]
    args = ["compare", run_id, run_id, "--store", str(store)] + [a for n in recorded for a in ("--metric", n)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in recorded)
    base = next(r for r in records if r["method"] == "base")
    pruned = next(r for r in records if r["method"] != "base" and r["model"] == base["model"])
    for name in ("latency_image_s", "ssim_vs_base"):
        cell = cells.make_cell(pruned, name, base)
        assert cell.delta.endswith("%") != is_absolute_delta(name), (name, cell.delta)


def test_pruned_model_written_by_run_loads_with_pruning_load(tmp_path, tiny_dirs):
    import pruning

    suite = _suite(tmp_path, tiny_dirs, methods=[{"name": "magnitude", "ratios": [0.3]}])
    assert CliRunner().invoke(main, ["run", str(suite)]).exit_code == 0
    store = tmp_path / "out" / "store.sqlite"
    record = next(r for r in Store(store).records() if r["method"] == "magnitude")
    pipe = pruning.load(artifact_path(record, "model_dir", store))
    assert sum(p.numel() for p in pipe.unet.parameters()) == record["metrics"]["params"]["value"]

    # The model card shows the measured figures next to the unpruned model's, and no machine path.
    from huggingface_hub import ModelCard

    card = ModelCard.load(artifact_path(record, "model_dir", store) / "README.md")
    assert card.data.library_name == "diffusers" and card.data.pruning["method"] == "magnitude"
    m, base = (
        record["metrics"],
        next(r for r in Store(tmp_path / "out" / "store.sqlite").records() if r["method"] == "base")[
            "metrics"
        ],
    )
    ratio = m["params"]["value"] / base["params"]["value"]
    assert (
        f"| params | {m['params']['value']:,.0f} | {base['params']['value']:,.0f} | {ratio:.3f} |"
        in card.text
    )
    assert f"| {m['latency_ratio_vs_base']['value']:.3f} |" in card.text.split("| latency_image_s |")[1]
    assert str(tmp_path) not in card.content
    s = record["settings"]  # the call settings as the record spells them (steps, guidance)
    assert (
        f"- sampling: {s['steps']} steps, guidance {s['guidance']}, {s['width']}x{s['height']} px"
        in card.text
    )


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing(tmp_path, tiny_dirs):
    suite = _suite(tmp_path, tiny_dirs, methods=[{"name": "random", "ratios": [0.1, 0.2, 0.3, 0.4, 0.5]}])
    store_path = tmp_path / "out" / "store.sqlite"
    cmd = [sys.executable, "-m", "ecodiff_bench", "run", str(suite)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        if store_path.exists() and len(Store(store_path).records()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["record_id"]: r for r in Store(store_path).records()}
    assert 2 <= len(before) < 6
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    after = {r["record_id"]: r for r in Store(store_path).records()}
    assert len(after) == 6 and all(r["status"] == "ok" for r in after.values())
    assert all(after[k] == v for k, v in before.items())  # nothing measured before the kill was redone


def test_prune_command_writes_loadable_pruned_models(tmp_path, tiny_dirs):
    import pruning

    methods = [{"name": "taylor", "ratios": [0.2, 0.4], "options": {"batch": 2, "timestep_stride": 250}}]
    suite = _suite(tmp_path, tiny_dirs, methods=methods)
    result = CliRunner().invoke(main, ["prune", str(suite)])
    assert result.exit_code == 0, result.output
    saved = sorted((tmp_path / "out" / "models").iterdir())
    assert len(saved) == 2
    # Both ratios reuse one set of Taylor scores: computed once, cached on disk.
    assert len(list((tmp_path / "out" / "cache" / "scores").iterdir())) == 1
    sizes = []
    for folder in saved:
        plan = pruning.PruningPlan.load(folder / "plan.json")
        pipe = pruning.load(folder)
        sizes.append(sum(p.numel() for p in pipe.unet.parameters()))
        assert plan.achieved()["params_removed_frac_of_prunable"] >= plan.ratio
    assert sizes[0] != sizes[1]


def _rerun_into(store: Path, suite: Path, out: Path, extra: list[str] | None = None) -> str:
    """Run ``suite`` again into ``out`` and copy its records into ``store`` as a new run; its run id."""
    res = CliRunner().invoke(main, ["run", str(suite), "--out", str(out), *(extra or [])])
    assert res.exit_code == 0, res.output
    records = Store(out / "store.sqlite").records()
    with Store(store) as s:
        s.put_many([{**r, "record_id": r["record_id"] + "-" + out.name} for r in records])
    return records[0]["run_id"]


@pytest.mark.slow
def test_gate_passes_an_unchanged_rerun_twice_and_fails_a_planted_slowdown(tmp_path, tiny_dirs, monkeypatch):
    import xml.etree.ElementTree as ET

    from ecodiff_bench.run import evaluate

    suite = _suite(tmp_path, tiny_dirs, methods=[{"name": "magnitude", "ratios": [0.5]}])
    data = yaml.safe_load(suite.read_text())
    data["regression"] = {"thresholds": {"latency_image_s": {"max_increase_frac": 0.10}}}
    # enough rounds for intervals of a few per cent even on a busy shared machine
    data["performance"]["latency"] = {
        "warmup": 2,
        "min_reps": 10,
        "min_seconds": 1,
        "max_reps": 400,
        "max_seconds": 20,
        "precision": 0.03,
    }
    suite.write_text(yaml.safe_dump(data))
    store = tmp_path / "out" / "store.sqlite"
    assert CliRunner().invoke(main, ["run", str(suite)]).exit_code == 0
    tag = ["tag", "v1", "--run-id", Store(store).run_ids()[0], "--store", str(store)]
    assert CliRunner().invoke(main, tag).exit_code == 0
    rerun = _rerun_into(store, suite, tmp_path / "rerun")
    gate = ["check", "--baseline", "v1", "--store", str(store)]
    for _ in range(2):  # an unchanged release, checked twice: passes both times
        res = CliRunner().invoke(main, [*gate, "--run-id", rerun, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["thresholds_source"].startswith("the baseline's suite")

    one_call, measure = evaluate.Evaluator.one_call, evaluate.Evaluator.measure

    def mark_pruned(self, pipe, out, *, base_pipe=None, base_images=None):
        pipe._planted_slowdown = base_pipe is not None
        return measure(self, pipe, out, base_pipe=base_pipe, base_images=base_images)

    def slower_when_pruned(self, pipe):  # the planted regression: every pruned call takes twice as long
        call = one_call(self, pipe)
        if not getattr(pipe, "_planted_slowdown", False):
            return call

        def slow():
            t0 = time.perf_counter()
            out = call()
            time.sleep(time.perf_counter() - t0)  # far beyond the 10% bound even on a loaded machine
            return out

        return slow

    monkeypatch.setattr(evaluate.Evaluator, "measure", mark_pruned)
    monkeypatch.setattr(evaluate.Evaluator, "one_call", slower_when_pruned)
    slow = _rerun_into(store, suite, tmp_path / "slow")
    res = CliRunner().invoke(main, [*gate, "--run-id", slow, "--junit", str(tmp_path / "gate.xml")])
    assert res.exit_code == 1, res.output
    failures = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite").findall("testcase/failure/..")
    assert [c.get("name") for c in failures] == ["latency_image_s"]


def test_ecodiff_trains_one_mask_set_per_ratio_and_records_it(tmp_path, tiny_dirs):
    import pruning

    methods = [
        {"name": "ecodiff", "ratios": [0.2, 0.4], "options": {"steps": 3, "batch": 2, "accumulate": 1}}
    ]
    result = CliRunner().invoke(main, ["prune", str(_suite(tmp_path, tiny_dirs, methods=methods))])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "cache" / "scores").iterdir())) == 2  # keyed by ratio
    for folder in sorted((tmp_path / "out" / "models").iterdir()):
        plan = pruning.PruningPlan.load(folder / "plan.json")
        eco = plan.info["ecodiff"]
        assert eco["trained_target"] == eco["target"] == plan.ratio and eco["steps"] == 3
        assert {"expected_sparsity", "agreement", "train_time_s"} <= set(eco)
