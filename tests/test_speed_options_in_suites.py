"""Suites and runs with the speed options: aligned plans (methods[].options.align) and inference options
(performance.inference), from the schema to the stored record."""

from __future__ import annotations

import copy
from typing import get_args

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.errors import SuiteError
from ecodiff_bench.core.store import Store
from ecodiff_bench.suite import SUITES_DIR, expand, load_suite, validate_suite
from ecodiff_bench.suite.schema import Inference

SUITE: dict = {
    "name": "t",
    "models": ["digits-sdxl"],
    "methods": [{"name": "magnitude", "ratios": [0.2]}],
    "evaluation": {"prompts": "digits", "samples": 4, "metrics": []},
    "energy": {"country": "FRA"},
}


def _with(fn) -> dict:
    data = copy.deepcopy(SUITE)
    fn(data)
    return data


def test_inference_literals_match_pruning_inference():
    from pruning import inference

    fields = Inference.model_fields
    assert get_args(fields["attention"].annotation) == inference.ATTENTION
    assert get_args(fields["channels_last"].annotation) == inference.CHANNELS_LAST
    assert tuple(a for a in get_args(get_args(fields["compile"].annotation)[0])) == inference.COMPILE_MODES


def test_align_changes_the_plan_key_not_the_scores():
    (plain,) = [s for s in expand(validate_suite(SUITE)).specs if s.method == "magnitude"]
    aligned_suite = _with(lambda d: d["methods"][0].update(options={"align": 64}))
    (aligned,) = [s for s in expand(validate_suite(aligned_suite)).specs if s.method == "magnitude"]
    assert aligned.options["align"] == 64 and plain.options["align"] is None
    assert aligned.score_key == plain.score_key and aligned.plan_key != plain.plan_key


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (lambda d: d["methods"][0].update(options={"align": 0}), ["methods[0].options.align", "got 0"]),
        (
            lambda d: d.update(performance={"inference": {"attention": "flash"}}),
            ["performance.inference.attention", "'flash'", "sdpa"],
        ),
        (
            lambda d: d.update(performance={"inference": {"compile": "fast"}}),
            ["performance.inference.compile", "'fast'", "max-autotune"],
        ),
        (
            lambda d: d.update(performance={"inference": {"fullgraph": True}}),
            ["performance.inference", "fullgraph needs compile"],
        ),
    ],
)
def test_bad_speed_options_name_the_field(mutate, needles):
    with pytest.raises(SuiteError) as err:
        validate_suite(_with(mutate))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_gpu_suites_align_every_method():
    for name in ("sdxl", "sdxl-turbo", "flux-dev", "flux-schnell", "sdxl-arch", "flux-dev-arch"):
        specs = [s for s in expand(load_suite(SUITES_DIR / f"{name}.yaml")).specs if s.method != "base"]
        assert specs and all(s.options["align"] == 64 for s in specs), name


def test_run_applies_inference_options_and_aligned_plans(tmp_path):
    import tiny

    tiny.sdxl_pipeline().save_pretrained(tmp_path / "sdxl")
    suite = {
        "name": "speed",
        "models": [tiny.suite_model("sdxl", tmp_path / "sdxl")],
        "methods": [{"name": "magnitude", "ratios": [0.3], "options": {"align": 8}}],
        "evaluation": {"prompts": ["a photo of a cat"], "samples": 2, "metrics": []},
        "performance": {
            "latency": {"warmup": 0, "min_reps": 1, "min_seconds": 0, "max_reps": 2},
            "inference": {"attention": "math", "channels_last": "on"},
        },
        "energy": {"country": "FRA", "idle_baseline_s": 0},
        "outputs": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "speed.yaml"
    path.write_text(yaml.safe_dump(suite))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    records = {r["method"]: r for r in Store(tmp_path / "out" / "store.sqlite").records(suite="speed")}
    for record in records.values():
        applied = record["metrics"]["latency_image_s"]["details"]["inference"]
        assert applied["attention_impl"] == "AttnProcessor" and applied["channels_last_applied"] is True
        assert "compile_time_s" not in record["metrics"]
    import pruning
    from ecodiff_bench.core.record import artifact_path

    plan = pruning.PruningPlan.load(
        artifact_path(records["magnitude"], "plan", tmp_path / "out" / "store.sqlite")
    )
    assert plan.info["align"]["multiple"] == 8
    assert all(
        len(m.kept) in (0, m.total) or len(m.kept) % 8 == 0 for m in plan.modules.values() if m.kind == "ffn"
    )
    assert "aligned to multiples of 8" in records["magnitude"]["metrics"]["params_removed_frac"]["note"]


@pytest.mark.slow  # inductor compiles C++ for the CPU: a few minutes on 2 busy cores
def test_run_with_compile_reports_compile_time_apart(tmp_path):
    import tiny

    tiny.flux_pipeline().save_pretrained(tmp_path / "flux")
    suite = {
        "name": "compiled",
        "models": [tiny.suite_model("flux-dev", tmp_path / "flux")],
        "methods": [{"name": "magnitude", "ratios": [0.3], "options": {"align": 8}}],
        "evaluation": {"prompts": ["a photo of a cat"], "samples": 1, "metrics": []},
        "performance": {
            "latency": {"warmup": 0, "min_reps": 2, "min_seconds": 0, "max_reps": 2},
            "inference": {"compile": "default"},
        },
        "energy": {"country": "FRA", "idle_baseline_s": 0},
        "outputs": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "compiled.yaml"
    path.write_text(yaml.safe_dump(suite))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    records = Store(tmp_path / "out" / "store.sqlite").records(suite="compiled")
    assert {r["method"] for r in records} == {"base", "magnitude"}
    for record in records:
        compiled = record["metrics"]["compile_time_s"]
        assert compiled["unit"] == "s" and compiled["status"] == "measured"
        assert compiled["details"]["mode"] == "default"
        assert compiled["details"]["first_call_s"] > compiled["details"]["steady_call_s"] > 0
        assert record["metrics"]["latency_image_s"]["details"]["inference"]["compile"] == "default"
