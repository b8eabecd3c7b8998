"""The architecture as tested contracts: import directions, one home per concept, module sizes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import pruning
from ecodiff_bench.core.metrics import METRICS, QUALITY_METRICS
from ecodiff_bench.core.record import CALL_SETTINGS
from ecodiff_bench.suite import methods as suite_methods
from ecodiff_bench.suite import pruning_info

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> list[str]:
    """The modules loaded by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pruning_loads_no_harness_module():
    loaded = _modules_after("import pruning")
    assert "torch" in loaded  # the check below means something only if pruning really loaded
    assert [m for m in loaded if m.split(".")[0] in ("ecodiff_bench", "reports")] == []


def test_reports_load_no_torch_and_only_the_core_of_the_harness():
    loaded = _modules_after("import reports, reports.gate, reports.plots, reports.report, reports.synthetic")
    assert "reports.gate" in loaded
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]
    harness = [m for m in loaded if m.startswith("ecodiff_bench.")]
    assert harness and all(m.startswith("ecodiff_bench.core") for m in harness), harness


def test_the_suite_does_not_import_the_reports():
    assert not [m for m in _modules_after("import ecodiff_bench.suite") if m.split(".")[0] == "reports"]


def test_no_module_over_600_lines():
    sizes = {
        p: len(p.read_text().splitlines())
        for d in ("ecodiff_bench", "reports")
        for p in (ROOT / d).rglob("*.py")
    }
    assert {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 600} == {}


# -- methods: one place on the harness side, generated from pruning --------------------------------------------


def test_suite_methods_are_prunings_methods():
    assert suite_methods.METHODS.names() == list(pruning.METHODS)
    for name in pruning.METHODS:
        info = suite_methods.method_info(name)
        assert info.help == pruning.METHODS[name]
        assert info.needs_calibration == (name not in pruning.DATA_FREE)


@pytest.mark.parametrize("name", ["ecodiff", "taylor"])
def test_every_config_field_is_an_option_or_set_by_the_harness(name):
    info = suite_methods.method_info(name)
    fields = dataclasses.fields(pruning_info._live(info.config))
    options = set(info.options.model_fields)
    for field in fields:
        assert (field.name in options) != (field.name in suite_methods.NOT_OPTIONS), field.name
    defaults = info.options()  # pruning's defaults, or None where the architecture decides
    for field in fields:
        if field.name in options and getattr(defaults, field.name) is not None:
            assert getattr(defaults, field.name) == field.default, field.name


@pytest.mark.parametrize(
    "ref", ["pruning.methods.ecodiff:EcoDiffConfig", "pruning.methods.taylor:TaylorConfig"]
)
def test_reading_prunings_source_equals_importing_it(ref):
    live = pruning_info._live(ref)
    hints = typing.get_type_hints(live)
    expected = [(f.name, hints[f.name], f.default) for f in dataclasses.fields(live)]
    assert [(f.name, f.type, f.default) for f in pruning_info._static_fields(*ref.split(":"))] == expected


CONSTANTS = [
    "methods:METHODS",
    "methods:DATA_FREE",
    "methods:RATIO_SPECIFIC",
    "plan:RANKINGS",
    "plan:TARGETS",
    "masks:PARAMETRIZATIONS",
    "inference:ATTENTION",
    "inference:CHANNELS_LAST",
    "inference:COMPILE_MODES",
]


@pytest.mark.parametrize("ref", [f"pruning.{c}" for c in CONSTANTS])
def test_prunings_constants_read_from_source_equal_the_imported_ones(ref):
    assert pruning_info._static_constant(*ref.split(":")) == pruning_info._live(ref)


def test_what_the_source_cannot_tell_comes_from_the_imported_module(monkeypatch):
    def unreadable(*args):
        raise pruning_info._Unreadable("computed")

    monkeypatch.delitem(sys.modules, "pruning")  # as in a process that has not imported pruning
    monkeypatch.setattr(pruning_info, "_static_constant", unreadable)
    monkeypatch.setattr(pruning_info, "_static_fields", unreadable)
    assert pruning_info.constant("pruning.plan:RANKINGS") == pruning.RANKINGS
    fields = pruning_info.config_fields("pruning.methods.taylor:TaylorConfig")
    assert [f.name for f in fields] == [f.name for f in dataclasses.fields(pruning.TaylorConfig)]


def test_validating_and_listing_load_no_torch():
    code = (
        "from click.testing import CliRunner; from ecodiff_bench.cli import main; "
        "assert CliRunner().invoke(main, ['validate', 'digits']).exit_code == 0; "
        "assert CliRunner().invoke(main, ['ls']).exit_code == 0"
    )
    loaded = _modules_after(code)
    assert "ecodiff_bench.suite.methods" in loaded
    assert not [m for m in loaded if m == "torch" or m.startswith(("torch.", "pruning"))]


@dataclasses.dataclass
class WithSchedule(pruning.EcoDiffConfig):
    """EcoDiffConfig as another change may extend it (a learning-rate schedule)."""

    schedule: str = "constant"
    ramp_power: float | None = None


def test_a_new_config_field_becomes_a_suite_option(monkeypatch):
    monkeypatch.setitem(suite_methods._CONFIGS, "ecodiff", f"{__name__}:WithSchedule")
    info = suite_methods._build("ecodiff")
    opts = info.options.model_validate({"schedule": "cosine", "ramp_power": 2.0, "controller": "none"})
    assert (opts.schedule, opts.ramp_power) == ("cosine", 2.0)
    kwargs = info.config_kwargs({**opts.model_dump(), "ranking": "global"}, seed=2)
    assert kwargs["ramp_power"] == 2.0 and kwargs["seed"] == 2 and "ranking" not in kwargs
    WithSchedule(**kwargs)  # what the runner passes is what pruning's config accepts


def test_not_options_name_real_config_fields():
    configs = [pruning_info._live(ref) for ref in suite_methods._CONFIGS.values()]
    fields = {f.name for config in configs for f in dataclasses.fields(config)}
    assert set(suite_methods.NOT_OPTIONS) <= fields


# -- one spelling of the call settings ------------------------------------------------------------------------


def test_call_settings_are_spelled_once():
    from ecodiff_bench.models import FAMILIES
    from ecodiff_bench.suite.sources import ZooModel

    assert set(CALL_SETTINGS) == set(pruning.SAMPLING_KEYS)
    assert set(CALL_SETTINGS) <= set(ZooModel.model_fields)
    for family in FAMILIES.names():
        fam = FAMILIES.get(family)
        assert set(fam.defaults) <= set(CALL_SETTINGS)
        arguments = fam.pipeline_arguments(fam.defaults)
        assert "num_inference_steps" in arguments and "steps" not in arguments
        assert fam.settings_from_arguments(arguments) == dict(fam.defaults)
        with pytest.raises(ValueError, match="spell it 'steps'"):
            fam.pipeline_arguments({"num_inference_steps": 4})


# -- metrics: one catalog ---------------------------------------------------------------------------------------


def test_quality_metrics_a_suite_may_ask_for_are_in_the_catalog():
    from ecodiff_bench.suite import Evaluation

    assert QUALITY_METRICS == (
        "fid",
        "frechet_distance",
        "clip_score",
        "ssim_vs_base",
        "psnr_vs_base",
        "recognisability",
    )
    assert Evaluation(metrics=list(QUALITY_METRICS)).metrics == list(QUALITY_METRICS)


def test_every_catalog_metric_is_accepted_by_the_gate_and_the_suite():
    from ecodiff_bench.core.thresholds import validate_thresholds
    from ecodiff_bench.suite import validate_suite

    thresholds = {name: {"max_increase": 1.0} for name in METRICS}
    assert len(validate_thresholds(thresholds)) == len(METRICS)
    suite = validate_suite(
        {
            "name": "t",
            "models": ["digits-sdxl"],
            "energy": {"carbon": False},
            "regression": {"thresholds": thresholds},
        }
    )
    assert set(suite.regression.thresholds) == set(METRICS)
