"""Recovery in suites and runs: the `recovery` section, recovered records beside unrecovered ones, costs."""

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.errors import SuiteError
from ecodiff_bench.core.record import artifact_path
from ecodiff_bench.core.store import Store
from ecodiff_bench.suite import expand, validate_suite

RECOVERY = {"mode": "full", "steps": 3, "batch": 2, "checkpoint_every": 2}


def _suite_dict(methods, **extra):
    return {
        "name": "rec",
        "models": [{"name": "digits-flux-schnell", "device": "cpu", "dtype": "float32"}],
        "methods": methods,
        "calibration": {"prompts": "digits", "count": 2},
        "evaluation": {"prompts": "digits", "samples": 4, "metrics": ["ssim_vs_base", "psnr_vs_base"]},
        "energy": {"country": "FRA", "idle_baseline_s": 0},
        **extra,
    }


def test_recovery_is_off_by_default_and_adds_a_variant_per_pruned_model_when_asked():
    plain = expand(validate_suite(_suite_dict([{"name": "magnitude", "ratios": [0.2, 0.4]}]))).specs
    assert [s.record_method for s in plain] == ["base", "magnitude", "magnitude"]
    assert not any(s.is_recovered for s in plain)
    suite = validate_suite(_suite_dict([{"name": "magnitude", "ratios": [0.2, 0.4], "recovery": RECOVERY}]))
    specs = expand(suite).specs
    assert [s.record_method for s in specs] == ["base", "magnitude", "magnitude+recovery"] * 1 + [
        "magnitude",
        "magnitude+recovery",
    ]
    # unrecovered records keep their identity; each recovered one points to its own unrecovered sibling
    assert [s.record_id for s in specs if not s.is_recovered] == [s.record_id for s in plain]
    for pruned, recovered in zip(specs[1::2], specs[2::2], strict=True):
        assert recovered.unrecovered_id == pruned.record_id and recovered.plan_key == pruned.plan_key
        assert recovered.record_id != pruned.record_id and recovered.recovery_key
        assert pruned.calibration is None and recovered.calibration is not None  # data-free, yet calibrated
    assert specs[2].recovery["lr"] == 1e-4  # full fine-tuning's default, resolved into the record id
    smoke = expand(suite, smoke=True).specs
    assert max(s.recovery["steps"] for s in smoke if s.is_recovered) <= suite.smoke.recovery_steps


@pytest.mark.parametrize(
    ("recovery", "where"),
    [
        ({"mode": "qlora"}, "methods[0].recovery.mode: not an allowed value. Did you mean: lora?"),
        ({"steps": 0}, "methods[0].recovery.steps"),
        ({"rank": 8, "lora_dropout": 0.1}, "methods[0].recovery.lora_dropout: unknown key"),
    ],
)
def test_bad_recovery_options_name_their_field(recovery, where):
    with pytest.raises(SuiteError, match=re.escape(where)):
        validate_suite(_suite_dict([{"name": "random", "ratios": [0.4], "recovery": recovery}]))


def test_recovery_needs_calibration_prompts_even_for_a_data_free_method():
    d = _suite_dict([{"name": "magnitude", "ratios": [0.4], "recovery": {}}])
    d["calibration"] = {"count": 2}
    with pytest.raises(SuiteError, match=r"calibration.prompts.*magnitude \(recovery\)"):
        validate_suite(d)


def test_a_run_records_the_recovered_variant_beside_the_unrecovered_one_with_its_cost(tmp_path):
    suite = tmp_path / "rec.yaml"
    methods = [{"name": "magnitude", "ratios": [0.4], "recovery": RECOVERY}]
    suite.write_text(
        yaml.safe_dump(
            _suite_dict(
                methods,
                performance={"latency": {"warmup": 0, "min_reps": 2, "min_seconds": 0, "max_reps": 2}},
                outputs={"dir": str(tmp_path / "out"), "report": ["md"]},
            )
        )
    )
    result = CliRunner().invoke(main, ["run", str(suite)])
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "out" / "store.sqlite")
    by_method = {r["method"]: r for r in store.records(suite="rec")}
    assert set(by_method) == {"base", "magnitude", "magnitude+recovery"}
    pruned, recovered = by_method["magnitude"], by_method["magnitude+recovery"]
    assert all(r["status"] == "ok" for r in by_method.values())
    m = recovered["metrics"]
    assert m["recovery_time_s"]["value"] > 0 and m["recovery_time_s"]["status"] == "measured"
    assert "recovery_energy_j" in m and "pruning_energy_j" in m
    assert m["params"]["value"] == pruned["metrics"]["params"]["value"]  # the same shapes
    assert m["ssim_vs_base"]["value"] != pruned["metrics"]["ssim_vs_base"]["value"]
    assert recovered["settings"]["recovery"]["steps"] == 3 and "recovery" not in pruned["settings"]
    curve = json.loads(artifact_path(recovered, "recovery_curve", store.path).read_text())
    assert [row["step"] for row in curve] == [0, 1, 2]
    plan = json.loads(artifact_path(recovered, "plan", store.path).read_text())
    assert plan["info"]["recovery"]["options"]["mode"] == "full"
    model_dir = artifact_path(recovered, "model_dir", store.path)
    assert model_dir.name.startswith("digits-flux-schnell-magnitude+recovery-40-")

    import pruning

    pruning.load(model_dir)  # a plain pruned model, hashes verified
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "magnitude+recovery @40%" in report and "One-off cost (pruning + recovery)" in report
    if m["recovery_energy_j"]["status"] != "unavailable":
        assert "+ recovery" in report

    again = CliRunner().invoke(main, ["run", str(suite)])
    assert again.exit_code == 0 and "already measured" in again.output


def test_sustainability_counts_pruning_and_recovery_energy():
    from reports import analysis
    from reports.cells import build_groups
    from reports.synthetic import demo_records

    records = demo_records(methods=("magnitude",), ratios=(0.4,))
    pruned = next(r for r in records if r["method"] == "magnitude")
    recovered = json.loads(json.dumps(pruned))
    recovered["record_id"] += "-rec"
    recovered["method"] = "magnitude+recovery"
    cost = pruned["metrics"]["pruning_energy_j"]
    recovered["metrics"]["recovery_energy_j"] = {**cost, "name": "recovery_energy_j"}  # as much again
    rows = {s.record["method"]: s for s in analysis.sustainability(build_groups([*records, recovered]))}
    plain, both = rows["magnitude"], rows["magnitude+recovery"]
    assert "+ recovery" in both.pruning_cost and "+ recovery" not in plain.pruning_cost
    assert plain.breakeven_images and both.breakeven_images == pytest.approx(2 * plain.breakeven_images)


def test_the_suites_recovery_options_are_recovery_config_fields():
    import dataclasses

    import pruning
    from ecodiff_bench.suite import recovery as suite_recovery

    fields = {f.name: f.default for f in dataclasses.fields(pruning.RecoveryConfig)}
    options = suite_recovery.RecoveryOptions.model_fields
    assert set(suite_recovery.NOT_OPTIONS) <= set(fields)
    assert set(options) == set(fields) - set(suite_recovery.NOT_OPTIONS)
    assert {k: f.default for k, f in options.items()} == {k: fields[k] for k in options}
    resolved = suite_recovery.resolved(suite_recovery.RecoveryOptions(mode="lora", rank=4))
    config = pruning.RecoveryConfig(**suite_recovery.config_kwargs(resolved, seed=3))
    assert (config.rank, config.lr, config.seed) == (4, 1e-3, 3)


def test_a_recovery_option_outside_recovery_config_values_is_refused():
    from pydantic import ValidationError

    from ecodiff_bench.suite import recovery as suite_recovery

    with pytest.raises(ValidationError, match="mode"):
        suite_recovery.RecoveryOptions(mode="qlora")
    with pytest.raises(ValidationError, match="steps"):
        suite_recovery.RecoveryOptions(steps=0)


def test_recovery_trains_on_the_calibration_pairs_never_on_evaluation_seeds():
    from ecodiff_bench.run.recovery import calibration_samples
    from ecodiff_bench.suite import expand

    cal = {"prompts": "digits", "count": 3, "seeds_per_prompt": 2}
    suite = validate_suite(
        _suite_dict([{"name": "magnitude", "ratios": [0.4], "recovery": RECOVERY}], calibration=cal)
    )
    recovered = next(s for s in expand(suite).specs if s.is_recovered)
    samples = calibration_samples(recovered)
    assert len(samples) == 6 and len(set(samples)) == 6  # every prompt with each of its seeds
    evaluation_seeds = range(suite.evaluation.seed, suite.evaluation.seed + suite.evaluation.samples)
    assert not {seed for _, seed in samples} & set(evaluation_seeds)
