"""Suite schema, loading, includes and expansion; every malformed suite is checked through the CLI."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core.errors import SuiteError
from ecodiff_bench.suite import (
    SUITES_DIR,
    RunSpec,
    builtin_suites,
    deep_merge,
    expand,
    load_suite,
    validate_suite,
)

BASE: dict = {
    "name": "t",
    "models": ["digits-sdxl", "digits-flux"],
    "methods": [
        {"name": "ecodiff", "ratios": [0.2, 0.4], "options": {"epochs": 1}},
        {"name": "magnitude", "ratios": [0.2, 0.4]},
        {"name": "random", "ratios": [0.3], "seeds": [0, 1]},
    ],
    "calibration": {"prompts": ["a handwritten digit one", "a handwritten digit two"], "count": 2},
    "evaluation": {"prompts": "digits", "samples": 20, "metrics": ["ssim_vs_base"]},
    "energy": {"country": "FRA"},
}


def _write(tmp_path: Path, data, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8"
    )
    return path


def _mutated(fn) -> dict:
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _assert_user_error(result, *needles: str) -> None:
    text = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


# --------------------------------------------------------------------------------------------------
# Malformed suites: (id, mutation of BASE, strings the message must contain: field path and value)
# --------------------------------------------------------------------------------------------------

MALFORMED = [
    (
        "unknown-top-key",
        lambda d: d.update(modles=["digits-sdxl"]),
        ["modles", "unknown key", "Did you mean: models?"],
    ),
    (
        "unknown-model-key",
        lambda d: d.update(models=[{"name": "digits-sdxl", "stepz": 4}]),
        ["models[0].stepz", "Did you mean: steps?", "got 4"],
    ),
    (
        "unknown-option-key",
        lambda d: d["methods"][0]["options"].update(lrr=0.2),
        ["methods[0].options.lrr", "Did you mean: lr?", "got 0.2"],
    ),
    (
        "unknown-nested-section-key",
        lambda d: d.update(performance={"latency": {"warmups": 3}}),
        ["performance.latency.warmups", "Did you mean: warmup?"],
    ),
    ("samples-wrong-type", lambda d: d["evaluation"].update(samples="ten"), ["evaluation.samples", "'ten'"]),
    (
        "steps-float",
        lambda d: d.update(models=[{"name": "digits-sdxl", "steps": 4.5}]),
        ["models[0].steps", "4.5"],
    ),
    (
        "ratio-above-one",
        lambda d: d["methods"][1].update(ratios=[1.5]),
        ["methods[1].ratios[0]", "got 1.5", "0 < ratio < 1"],
    ),
    ("ratio-zero", lambda d: d["methods"][1].update(ratios=[0.2, 0]), ["methods[1].ratios[1]", "got 0"]),
    (
        "ratio-duplicate",
        lambda d: d["methods"][1].update(ratios=[0.2, 0.2]),
        ["methods[1].ratios", "duplicate ratio 0.2"],
    ),
    ("ratios-not-list", lambda d: d["methods"][1].update(ratios=0.2), ["methods[1].ratios", "got 0.2"]),
    ("ratios-missing", lambda d: d["methods"][1].pop("ratios"), ["methods[1].ratios", "required"]),
    (
        "unknown-method",
        lambda d: d["methods"][0].update(name="ecodif"),
        ["methods[0].name", "'ecodif'", "Did you mean: ecodiff?"],
    ),
    ("method-not-mapping", lambda d: d.update(methods=["ecodiff"]), ["methods[0]", "'ecodiff'", "mapping"]),
    ("method-without-name", lambda d: d["methods"][1].pop("name"), ["methods[1].name", "required"]),
    (
        "duplicate-method",
        lambda d: d["methods"].append({"name": "magnitude", "ratios": [0.1]}),
        ["methods[3].name", "duplicate method 'magnitude'"],
    ),
    (
        "bad-parametrization",
        lambda d: d["methods"][0]["options"].update(parametrization="hardconcrete"),
        ["methods[0].options.parametrization", "'hardconcrete'", "hard-concrete"],
    ),
    ("negative-seed", lambda d: d["methods"][2].update(seeds=[-1]), ["methods[2].seeds", "-1"]),
    (
        "unknown-model",
        lambda d: d.update(models=["digits-sdx"]),
        ["models[0].name", "'digits-sdx'", "Did you mean: digits-sdxl?"],
    ),
    (
        "unknown-model-mapping",
        lambda d: d.update(models=[{"name": "sdxll"}]),
        ["models[0].name", "'sdxll'", "Did you mean: sdxl?"],
    ),
    ("empty-models", lambda d: d.update(models=[]), ["models", "at least one model", "got []"]),
    ("missing-models", lambda d: d.pop("models"), ["models", "required"]),
    (
        "duplicate-models",
        lambda d: d.update(models=["digits-sdxl", "digits-sdxl"]),
        ["models[1].name", "duplicate model 'digits-sdxl'"],
    ),
    (
        "bad-dtype",
        lambda d: d.update(models=[{"name": "digits-sdxl", "dtype": "fp16"}]),
        ["models[0].dtype", "'fp16'", "float32", "bfloat16"],
    ),
    (
        "bad-device",
        lambda d: d.update(models=[{"name": "digits-sdxl", "device": "gpu"}]),
        ["models[0].device", "'gpu'", "cuda"],
    ),
    (
        "height-not-multiple-of-8",
        lambda d: d.update(models=[{"name": "digits-sdxl", "height": 1004}]),
        ["models[0].height", "1004", "multiple of 8"],
    ),
    (
        "unknown-source",
        lambda d: d.update(models=[{"name": "sdxl", "source": "hubb"}]),
        ["models[0].source", "'hubb'", "Did you mean: hub?"],
    ),
    (
        "zoo-source-for-sdxl",
        lambda d: d.update(models=[{"name": "sdxl", "source": "zoo"}]),
        ["models[0].source", "'zoo'", "random-init"],
    ),
    (
        "hub-digits-without-id",
        lambda d: d.update(models=[{"name": "digits-sdxl", "source": "hub"}]),
        ["models[0].hub_id", "required"],
    ),
    (
        "hub-id-on-zoo-model",
        lambda d: d.update(models=[{"name": "digits-sdxl", "hub_id": "x/y"}]),
        ["models[0].hub_id", "unknown key"],
    ),
    (
        "missing-country",
        lambda d: d.update(energy={}),
        ["energy.country", "required when energy.carbon is true", "FRA"],
    ),
    (
        "country-alpha2",
        lambda d: d.update(energy={"country": "FR"}),
        ["energy.country", "'FR'", "Did you mean: FRA?"],
    ),
    ("negative-samples", lambda d: d["evaluation"].update(samples=-5), ["evaluation.samples", "-5"]),
    (
        "unknown-metric",
        lambda d: d["evaluation"].update(metrics=["fidd"]),
        ["evaluation.metrics[0]", "'fidd'", "Did you mean: fid?"],
    ),
    (
        "fid-without-reference",
        lambda d: d["evaluation"].update(metrics=["fid"], inception_weights="w.pth"),
        ["evaluation.reference", "required by fid"],
    ),
    (
        "fid-offline-without-weights",
        lambda d: d["evaluation"].update(metrics=["fid"], reference="digits-heldout"),
        ["evaluation.inception_weights", "allow_hub"],
    ),
    (
        "recognisability-on-sdxl",
        lambda d: d.update(
            models=["sdxl"], evaluation={"prompts": ["a cat"], "metrics": ["recognisability"]}
        ),
        ["evaluation.metrics", "recognisability", "sdxl"],
    ),
    (
        "unknown-prompt-set",
        lambda d: d["evaluation"].update(prompts="digit"),
        ["evaluation.prompts", "'digit'", "Did you mean: digits?"],
    ),
    (
        "prompts-and-file",
        lambda d: d["calibration"].update(prompts_file="suites/prompts/calibration.txt"),
        ["calibration.prompts_file"],
    ),
    (
        "missing-prompts-file",
        lambda d: d.update(calibration={"prompts_file": "nope.txt"}),
        ["calibration.prompts_file", "not found", "nope.txt"],
    ),
    (
        "ecodiff-without-calibration",
        lambda d: d.pop("calibration"),
        ["calibration.prompts", "required by method(s) ecodiff"],
    ),
    (
        "calibration-count-too-large",
        lambda d: d["calibration"].update(count=5),
        ["calibration.count", "got 5"],
    ),
    (
        "calibration-on-evaluated-pairs",
        lambda d: d.update(calibration={"prompts": "digits", "count": 10, "seed": 5}),
        ["calibration.seed", "got 5", "also evaluated", "('a handwritten digit five', 5)", "0..19"],
    ),
    (
        "unknown-threshold-metric",
        lambda d: d.update(regression={"thresholds": {"latency_s": {"max_increase": 1}}}),
        ["regression.thresholds.latency_s", "Did you mean: latency_step_s?"],
    ),
    (
        "threshold-without-bound",
        lambda d: d.update(regression={"thresholds": {"fid": {}}}),
        ["regression.thresholds.fid", "max_increase"],
    ),
    (
        "max-reps-below-min",
        lambda d: d.update(performance={"latency": {"min_reps": 5, "max_reps": 2}}),
        ["performance.latency.max_reps", "got 2"],
    ),
    (
        "bad-report-format",
        lambda d: d.update(outputs={"report": ["pdf"]}),
        ["outputs.report[0]", "'pdf'", "html"],
    ),
    ("bad-suite-name", lambda d: d.update(name="my suite"), ["name", "'my suite'"]),
    ("bad-bool", lambda d: d.update(allow_hub="sure"), ["allow_hub", "'sure'"]),
    (
        "clip-unknown-key",
        lambda d: d["evaluation"].update(clip={"name": "ViT-B-32", "pretrainedd": "openai"}),
        ["evaluation.clip.pretrainedd", "Did you mean: pretrained?"],
    ),
]


@pytest.mark.parametrize(
    "mutate,needles", [(m, n) for _, m, n in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_suite_exits_2_naming_field_and_value(tmp_path, mutate, needles):
    path = _write(tmp_path, _mutated(mutate))
    _assert_user_error(_invoke("validate", str(path)), *needles)
    _assert_user_error(_invoke("run", str(path), "--dry-run"), *needles)


def test_at_least_twenty_kinds_of_malformed_suites():
    assert len(MALFORMED) >= 20


def test_every_problem_is_listed(tmp_path):
    data = _mutated(
        lambda d: (d.update(foo=1), d["evaluation"].update(samples=0), d["methods"][1].update(ratios=[2.0]))
    )
    result = _invoke("validate", str(_write(tmp_path, data)))
    _assert_user_error(result, "3 problems", "foo", "evaluation.samples", "methods[1].ratios[0]")


# --------------------------------------------------------------------------------------------------
# Malformed files and arguments
# --------------------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_number(tmp_path):
    path = _write(tmp_path, "name: t\nmodels:\n  - digits-sdxl\n energy: {country: FRA}\n")
    _assert_user_error(_invoke("validate", str(path)), "YAML syntax error", "line 4", str(path))


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = _write(tmp_path, "name: t\nmodels: [digits-sdxl]\nmodels: [digits-flux]\n")
    _assert_user_error(_invoke("validate", str(path)), "duplicate key 'models'", "line 3")


def test_top_level_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, "- digits-sdxl\n- digits-flux\n")
    _assert_user_error(_invoke("validate", str(path)), "must be a mapping", "list")


def test_missing_suite_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    _assert_user_error(_invoke("validate", str(missing)), "not found", "nope.yaml")


def test_unknown_builtin_suite_suggests(tmp_path):
    _assert_user_error(_invoke("validate", "digitz"), "Unknown suite 'digitz'", "Did you mean: digits?")


def test_include_cycle_is_detected(tmp_path):
    _write(tmp_path, {"include": "b.yaml", "name": "a"}, "a.yaml")
    _write(tmp_path, {"include": "a.yaml"}, "b.yaml")
    _assert_user_error(
        _invoke("validate", str(tmp_path / "a.yaml")), "include", "cycle", "a.yaml -> b.yaml -> a.yaml"
    )


def test_self_include_is_a_cycle(tmp_path):
    path = _write(tmp_path, {**BASE, "include": "suite.yaml"})
    _assert_user_error(_invoke("validate", str(path)), "cycle")


def test_missing_include_file_is_named(tmp_path):
    path = _write(tmp_path, {**BASE, "include": "base/missing.yaml"})
    _assert_user_error(_invoke("validate", str(path)), "include", "not found", "missing.yaml")


def test_bad_include_value(tmp_path):
    path = _write(tmp_path, {**BASE, "include": {"file": "x.yaml"}})
    _assert_user_error(_invoke("validate", str(path)), "include", "file name")


def test_error_inside_included_file_is_reported(tmp_path):
    _write(tmp_path, {"evaluation": {"sampels": 3}}, "base.yaml")
    path = _write(tmp_path, {**BASE, "include": "base.yaml"})
    _assert_user_error(_invoke("validate", str(path)), "evaluation.sampels", "Did you mean: samples?")


def test_only_unknown_model_suggests(tmp_path):
    path = _write(tmp_path, BASE)
    _assert_user_error(
        _invoke("run", str(path), "--only", "digits-fluxx", "--dry-run"),
        "'digits-fluxx'",
        "Did you mean: digits-flux?",
    )


def test_unknown_option_and_bad_ls_kind_exit_2(tmp_path):
    _assert_user_error(_invoke("run", "--fast"), "--fast")
    _assert_user_error(_invoke("ls", "modelz"), "modelz")


def test_zoo_train_unknown_name_suggests():
    _assert_user_error(_invoke("zoo", "train", "digits-sdx"), "'digits-sdx'", "Did you mean: digits-sdxl?")


def test_suite_error_lists_problems_in_python():
    with pytest.raises(SuiteError) as info:
        validate_suite(_mutated(lambda d: d.update(models=["sdxll"], bogus=1)))
    err = info.value
    assert len(err.problems) == 2
    assert any(
        p.startswith("models[0].name: Unknown model 'sdxll'. Did you mean: sdxl?") for p in err.problems
    )
    assert any(p.startswith("bogus: unknown key") for p in err.problems)


# --------------------------------------------------------------------------------------------------
# Shipped suites
# --------------------------------------------------------------------------------------------------

SHIPPED = sorted(p.name for p in SUITES_DIR.glob("*.yaml"))


def test_shipped_suites_exist():
    for name in ("digits", "sdxl", "sdxl-turbo", "flux-dev", "flux-schnell", "sdxl-arch", "flux-dev-arch"):
        assert f"{name}.yaml" in SHIPPED
    assert set(builtin_suites()) == {Path(n).stem for n in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_suite_validates(name):
    suite = load_suite(SUITES_DIR / name)
    assert suite.name == Path(name).stem
    specs = expand(suite).specs
    assert specs and specs[0].method == "base"
    assert len(expand(suite, smoke=True).specs) == len(specs)
    result = _invoke("validate", str(SUITES_DIR / name))
    assert result.exit_code == 0, result.output


def test_arch_suites_have_no_quality_metrics():
    for name in SHIPPED:
        if name.endswith("-arch.yaml"):
            suite = load_suite(SUITES_DIR / name)
            assert suite.evaluation.metrics == []
            assert all(m.source == "random-init" for m in suite.models)


def test_gpu_suites_use_the_papers_scale_with_the_controller():
    sdxl = load_suite("sdxl")
    m = sdxl.models[0]
    assert (m.steps, m.guidance, m.height, m.width, m.dtype) == (50, 5.0, 1024, 1024, "bfloat16")
    assert m.call_overrides() == {"steps": 50, "guidance": 5.0, "height": 1024, "width": 1024}
    eco = next(s for s in expand(sdxl).specs if s.method == "ecodiff")
    assert eco.options["controller"] == "lagrangian" and eco.options["lr"] == 0.1
    # the paper's compute: 400 calibration samples (200 steps x 2), from 100 captions x 2 seeds
    assert eco.options["steps"] * eco.options["batch"] * eco.options["accumulate"] == 400
    assert eco.calibration.count == 100 and len(eco.calibration.load_prompts()) == 100
    assert len(eco.calibration.pairs()) == 200
    assert sdxl.evaluation.inception_weights and sdxl.evaluation.clip.name == "ViT-B-32"
    assert sdxl.evaluation.clip.pretrained == "openai"
    flux = load_suite("flux-dev")
    eco = next(s for s in expand(flux).specs if s.method == "ecodiff")
    assert eco.options["beta_reg"] == 0.01  # the paper's FLUX penalty, for controller: none
    assert (flux.models[0].steps, flux.models[0].guidance) == (50, 3.5)
    assert load_suite("flux-schnell").models[0].steps in (4, 5)


def test_builtin_name_resolves_to_repo_file():
    assert load_suite("digits").source == "digits"
    assert load_suite("digits").model_dump() == load_suite(SUITES_DIR / "digits.yaml").model_dump()


# --------------------------------------------------------------------------------------------------
# Expansion and hashes
# --------------------------------------------------------------------------------------------------


def test_expansion_counts_and_order():
    specs = expand(validate_suite(BASE)).specs
    # per model: 1 base + ecodiff 2 ratios + magnitude 2 ratios + random 1 ratio x 2 seeds
    assert len(specs) == 2 * (1 + 2 + 2 + 2)
    assert [s.method for s in specs[:7]] == [
        "base",
        "ecodiff",
        "ecodiff",
        "magnitude",
        "magnitude",
        "random",
        "random",
    ]
    assert [(s.ratio, s.seed) for s in specs if s.method == "random"][:2] == [(0.3, 0), (0.3, 1)]
    assert {s.model for s in specs} == {"digits-sdxl", "digits-flux"}
    assert {s.family for s in specs} == {"sdxl", "flux-dev"}
    assert len({s.record_id for s in specs}) == len(specs)


def test_digits_suites_expand_to_18_and_36_runs():
    assert len(expand(load_suite("digits")).specs) == 2 * (1 + 4 * 2)  # the default: the two few-step models
    full = load_suite("digits-full")
    assert len(expand(full).specs) == 4 * (1 + 4 * 2)
    same = {"exclude": {"name", "description", "models"}}
    assert full.model_dump(**same) == load_suite("digits").model_dump(**same)  # same settings, 2 more models


def test_base_and_pruned_specs_link_up():
    specs = expand(validate_suite(BASE)).specs
    bases = {s.model: s.record_id for s in specs if s.is_base}
    for s in specs:
        if s.is_base:
            assert s.base_id is None and s.calibration is None and s.ratio == 0.0 and s.options == {}
        else:
            assert s.base_id == bases[s.model]
    eco = [s for s in specs if s.method == "ecodiff"]
    assert all(s.calibration is not None for s in eco)
    assert all(s.calibration is None for s in specs if s.method == "magnitude")


def test_hashes_are_stable_and_canonical(tmp_path):
    a = [s.record_id for s in expand(validate_suite(BASE)).specs]
    b = [s.record_id for s in expand(validate_suite(copy.deepcopy(BASE))).specs]
    assert a == b
    reordered = dict(reversed(list(copy.deepcopy(BASE).items())))
    assert [s.record_id for s in expand(validate_suite(reordered)).specs] == a
    from_file = [s.record_id for s in expand(load_suite(_write(tmp_path, BASE))).specs]
    assert from_file == a
    for spec in expand(validate_suite(BASE)).specs:
        canonical = json.dumps(spec.hash_payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert spec.record_id == hashlib.sha256(canonical.encode()).hexdigest()
        assert RunSpec.model_validate(spec.model_dump()).record_id == spec.record_id


def _ids(data) -> dict:
    return {(s.model, s.method, s.ratio, s.seed): s.record_id for s in expand(validate_suite(data)).specs}


def test_changing_a_ratio_changes_only_those_hashes():
    before = _ids(BASE)
    after = _ids(_mutated(lambda d: d["methods"][1].update(ratios=[0.2, 0.3])))
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {("digits-sdxl", "magnitude", 0.4, 0), ("digits-flux", "magnitude", 0.4, 0)}
    assert sum(1 for k in after if k not in before) == 2


def test_changing_method_options_changes_only_that_method():
    before = _ids(BASE)
    after = _ids(_mutated(lambda d: d["methods"][0]["options"].update(epochs=3)))
    assert {k[1] for k in before if before[k] != after[k]} == {"ecodiff"}


def test_description_outputs_and_thresholds_do_not_change_hashes():
    before = _ids(BASE)
    after = _ids(
        _mutated(
            lambda d: d.update(
                description="x",
                outputs={"dir": "elsewhere"},
                regression={"thresholds": {"fid": {"max_increase": 1}}},
            )
        )
    )
    assert before == after


def test_the_suite_name_changes_every_hash():
    """Two suites sharing a store never share a record (not even the base of a common model)."""
    before = _ids(BASE)
    after = _ids(_mutated(lambda d: d.update(name="other")))
    assert set(before) == set(after) and not set(before.values()) & set(after.values())


def test_evaluation_settings_change_every_hash():
    before = _ids(BASE)
    after = _ids(_mutated(lambda d: d["evaluation"].update(samples=21)))
    assert all(before[k] != after[k] for k in before)


def test_calibration_pairs_are_seed_major_and_enter_hashes():
    suite = validate_suite(_mutated(lambda d: d["calibration"].update(seeds_per_prompt=3, seed=100)))
    pairs = suite.calibration.pairs()
    assert pairs[:2] == [("a handwritten digit one", 100), ("a handwritten digit two", 100)]
    assert len(pairs) == 6 and pairs[-1] == ("a handwritten digit two", 102)
    eco = [s for s in expand(suite).specs if s.method == "ecodiff"]
    other = [s for s in expand(validate_suite(BASE)).specs if s.method == "ecodiff"]
    assert {s.record_id for s in eco}.isdisjoint(s.record_id for s in other)
    assert eco[0].calibration.pairs() == pairs


def test_calibration_prompts_enter_hashes_by_content(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a handwritten digit one\na handwritten digit two\n")
    via_file = _mutated(lambda d: d.update(calibration={"prompts_file": str(prompts), "count": 2}))
    assert _ids(via_file) == _ids(BASE)  # same prompts inline or in a file: same hashes
    prompts.write_text("a handwritten digit one\na handwritten digit three\n")
    changed = _ids(via_file)
    assert {k[1] for k, v in _ids(BASE).items() if changed[k] != v} == {"ecodiff"}


def test_score_and_plan_keys():
    specs = [
        s for s in expand(validate_suite(BASE)).specs if s.method == "ecodiff" and s.model == "digits-sdxl"
    ]
    assert specs[0].score_key != specs[1].score_key  # masks trained to each ratio (the default controller)
    assert specs[0].plan_key != specs[1].plan_key
    fixed = _mutated(lambda d: d["methods"][0]["options"].update(controller="none"))
    fixed_specs = [
        s for s in expand(validate_suite(fixed)).specs if s.method == "ecodiff" and s.model == "digits-sdxl"
    ]
    # the fixed penalty: one training serves every ratio
    assert fixed_specs[0].score_key == fixed_specs[1].score_key
    magnitude = [
        s for s in expand(validate_suite(BASE)).specs if s.method == "magnitude" and s.model == "digits-sdxl"
    ]
    assert magnitude[0].score_key == magnitude[1].score_key
    other = [
        s
        for s in expand(validate_suite(_mutated(lambda d: d["evaluation"].update(samples=5)))).specs
        if s.method == "ecodiff" and s.model == "digits-sdxl"
    ]
    assert [s.plan_key for s in other] == [s.plan_key for s in specs]  # evaluation does not change the plan


def test_smoke_shrinks_and_marks():
    suite = validate_suite(
        _mutated(
            lambda d: (
                d.update(smoke={"samples": 3, "epochs": 1, "steps": 2, "calibration_count": 1}),
                d["methods"][0]["options"].update(steps=50),
            )
        )
    )
    full, smoke = expand(suite).specs, expand(suite, smoke=True).specs
    assert len(full) == len(smoke)
    assert all(s.smoke for s in smoke) and not any(s.smoke for s in full)
    assert smoke[0].evaluation.samples == 3 and smoke[0].performance.latency.max_reps == 2
    assert smoke[0].performance.latency.min_seconds == 0
    eco = next(s for s in smoke if s.method == "ecodiff")
    assert eco.options["epochs"] == 1 and eco.options["steps"] == 2 and eco.calibration.count == 1
    assert not {s.record_id for s in full} & {s.record_id for s in smoke}


def test_family_defaults_are_resolved_into_options():
    specs = expand(validate_suite(BASE)).specs
    sdxl = next(s for s in specs if s.method == "ecodiff" and s.family == "sdxl")
    flux = next(s for s in specs if s.method == "ecodiff" and s.family == "flux-dev")
    assert (sdxl.options["beta_reg"], sdxl.options["lr_heads"]) == (0.5, 0.1)
    assert (flux.options["beta_reg"], flux.options["lr_heads"]) == (0.01, 0.5)


def test_select_keeps_hashes_and_sets_out(tmp_path):
    suite = validate_suite(BASE)
    sub = suite.select(only=["digits-flux"])
    assert [m.key for m in sub.models] == ["digits-flux"]
    assert expand(sub, out=tmp_path / "o").layout.store == tmp_path / "o" / "store.sqlite"
    full = {s.record_id for s in expand(suite).specs if s.model == "digits-flux"}
    assert {s.record_id for s in expand(sub).specs} == full


def test_labels_allow_the_same_model_twice():
    data = _mutated(
        lambda d: d.update(
            models=[{"name": "digits-sdxl"}, {"name": "digits-sdxl", "label": "digits-sdxl-10", "steps": 10}]
        )
    )
    specs = expand(validate_suite(data)).specs
    assert {s.model for s in specs} == {"digits-sdxl", "digits-sdxl-10"}


# --------------------------------------------------------------------------------------------------
# Includes, defaults, sources
# --------------------------------------------------------------------------------------------------


def test_include_deep_merges_and_replaces_lists(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "prompts.txt").write_text(
        "# comment\na handwritten digit one\n\na handwritten digit two\n"
    )
    _write(
        tmp_path,
        {
            "name": "from-base",
            "models": ["digits-flux"],
            "methods": [{"name": "taylor", "ratios": [0.1]}],
            "calibration": {"prompts_file": "prompts.txt", "count": 2},
            "evaluation": {"prompts": "digits", "samples": 50, "metrics": ["ssim_vs_base", "psnr_vs_base"]},
            "energy": {"country": "DEU", "idle_baseline_s": 3},
        },
        "base/common.yaml",
    )
    path = _write(
        tmp_path,
        {
            "include": "base/common.yaml",
            "models": ["digits-sdxl"],
            "methods": [{"name": "random", "ratios": [0.2]}],
            "evaluation": {"samples": 10},
            "energy": {"country": "FRA"},
        },
        "child.yaml",
    )
    suite = load_suite(path)
    assert suite.name == "child"  # a suite's name is never inherited
    assert [m.name for m in suite.models] == ["digits-sdxl"]
    assert [m.name for m in suite.methods] == ["random"]  # lists are replaced, not concatenated
    assert suite.evaluation.samples == 10 and suite.evaluation.metrics == ["ssim_vs_base", "psnr_vs_base"]
    assert (suite.energy.country, suite.energy.idle_baseline_s) == ("FRA", 3)
    # the included file's relative prompts_file is relative to the included file
    assert suite.calibration.load_prompts() == ["a handwritten digit one", "a handwritten digit two"]


def test_include_list_applies_in_order(tmp_path):
    _write(tmp_path, {"evaluation": {"samples": 5, "seed": 1}}, "one.yaml")
    _write(tmp_path, {"evaluation": {"samples": 7}}, "two.yaml")
    path = _write(
        tmp_path,
        {
            "include": ["one.yaml", "two.yaml"],
            "name": "x",
            "models": ["digits-sdxl"],
            "energy": {"carbon": False},
        },
    )
    suite = load_suite(path)
    assert (suite.evaluation.samples, suite.evaluation.seed) == (7, 1)


def test_deep_merge_does_not_mutate():
    a = {"x": {"y": [1, 2], "z": 1}}
    b = {"x": {"y": [3]}}
    assert deep_merge(a, b) == {"x": {"y": [3], "z": 1}}
    assert a == {"x": {"y": [1, 2], "z": 1}}


def test_defaults_and_shorthand():
    suite = validate_suite({"name": "m", "models": ["digits-sdxl", "sdxl"], "energy": {"carbon": False}})
    zoo, hub = suite.models
    assert zoo.source == "zoo" and hub.source == "hub"
    assert hub.resolved_hub_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert suite.allow_hub is False and suite.methods == []
    assert suite.outputs.report == ["html", "md"]
    assert expand(suite).layout.store == Path("results/store.sqlite")
    assert [s.method for s in expand(suite).specs] == ["base", "base"]


def test_local_path_and_random_init_sources():
    suite = validate_suite(
        {
            "name": "m",
            "energy": {"carbon": False},
            "models": [
                {"name": "sdxl", "source": "./my-pruned-sdxl", "label": "mine"},
                {"name": "flux-dev", "source": "random-init"},
                {"name": "digits-sdxl", "source": "hub", "hub_id": "someone/digits"},
            ],
        }
    )
    local, rnd, hub = suite.models
    assert local.path == Path("my-pruned-sdxl") and rnd.source == "random-init"
    assert hub.resolved_hub_id == "someone/digits"


def test_report_bool_and_country_case():
    suite = validate_suite(
        {"name": "m", "models": ["digits-sdxl"], "outputs": {"report": False}, "energy": {"country": "fra"}}
    )
    assert suite.outputs.report == [] and suite.energy.country == "FRA"


def test_validation_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, {**BASE, "outputs": {"dir": "out", "store": "out/s.sqlite"}})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert _invoke("validate", str(path)).exit_code == 0
    assert _invoke("run", str(path), "--dry-run").exit_code == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
