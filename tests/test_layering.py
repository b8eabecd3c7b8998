"""The architecture as tested contracts: import directions, one home per concept, module sizes."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pruning
from ecodiff_bench.core.metrics import METRICS, QUALITY_METRICS
from ecodiff_bench.core.record import CALL_SETTINGS
from ecodiff_bench.suite import methods as suite_methods

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> list[str]:
    """The modules loaded by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pruning_loads_no_harness_module():
    loaded = _modules_after("import pruning; pruning.score")
    assert "torch" in loaded  # the check below means something only if pruning really loaded
    assert [m for m in loaded if m.split(".")[0] in ("ecodiff_bench", "reports")] == []


def test_importing_pruning_and_its_registry_loads_no_torch():
    loaded = _modules_after(
        "import pruning, pruning.registry, pruning.config; pruning.METHODS['ecodiff'].help"
    )
    assert "pruning.registry" in loaded
    assert not [m for m in loaded if m == "torch" or m.startswith(("torch.", "diffusers"))]


def test_lazy_names_are_not_shadowed_by_submodules():
    code = "import pruning.io, pruning.surgery, pruning.plans, pruning\n" + "".join(
        f"assert not isinstance(pruning.{name}, type(pruning)), {name!r}\n" for name in pruning.__all__
    )
    _modules_after(code)


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
        for d in ("pruning", "ecodiff_bench", "reports")
        for p in (ROOT / d).rglob("*.py")
    }
    assert {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 600} == {}


# -- methods: one place on the harness side, generated from pruning --------------------------------------------


def test_suite_methods_are_prunings_methods():
    assert suite_methods.METHODS.names() == list(pruning.METHODS)
    for name, method in pruning.METHODS.items():
        info = suite_methods.method_info(name)
        assert info.help == method.help and info.config is method.config
        assert info.needs_calibration == method.needs_calibration == (name not in pruning.DATA_FREE)


@pytest.mark.parametrize("name", list(pruning.METHODS))
def test_every_config_field_is_an_option_or_set_by_the_harness(name):
    info = suite_methods.method_info(name)
    fields = dataclasses.fields(info.config)
    options = set(info.options.model_fields)
    for field in fields:
        assert (field.name in options) != (field.name in suite_methods.NOT_OPTIONS), field.name
    defaults = info.options()  # pruning's defaults, or None where the architecture decides
    for field in fields:
        if field.name in options and getattr(defaults, field.name) is not None:
            assert getattr(defaults, field.name) == field.default, field.name


@pytest.mark.parametrize("name", list(pruning.METHODS))
def test_every_method_has_a_scorer_and_refuses_unknown_options(name):
    method = pruning.METHODS[name]
    assert callable(method.score_function())
    with pytest.raises(ValueError, match=f"unknown {name} option.*no_such_option"):
        method.make_config({"no_such_option": 1})


def test_every_block_class_belongs_to_one_architecture():
    from pruning.architectures import ARCHITECTURES, BLOCKS

    owners = [cls for arch in ARCHITECTURES for cls in arch.blocks]
    assert sorted(owners, key=str) == sorted(BLOCKS, key=str) and len(set(owners)) == len(owners)


def test_only_the_architecture_registry_asks_which_denoiser_a_pipeline_has():
    pattern = re.compile(r"""(hasattr|getattr)\(\w+, *["'](unet|transformer)["']""")
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for d in ("pruning", "ecodiff_bench", "reports", "benchmarks")
        for p in (ROOT / d).rglob("*.py")
        if "zoo" not in p.parts
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_validating_and_listing_load_no_torch():
    code = (
        "from click.testing import CliRunner; from ecodiff_bench.cli import main; "
        "assert CliRunner().invoke(main, ['validate', 'digits']).exit_code == 0; "
        "assert CliRunner().invoke(main, ['ls']).exit_code == 0"
    )
    loaded = _modules_after(code)
    assert "ecodiff_bench.suite.methods" in loaded
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]
    assert {m for m in loaded if m.startswith("pruning")} <= {"pruning", "pruning.config", "pruning.registry"}


@dataclasses.dataclass
class WithSchedule(pruning.EcoDiffConfig):
    """EcoDiffConfig as another change may extend it (a learning-rate schedule)."""

    schedule: str = "constant"
    ramp_power: float | None = None


def test_a_new_config_field_becomes_a_suite_option(monkeypatch):
    method = dataclasses.replace(pruning.METHODS["ecodiff"], config=WithSchedule)
    monkeypatch.setitem(suite_methods.PRUNING_METHODS, "ecodiff", method)
    info = suite_methods._build("ecodiff")
    opts = info.options.model_validate({"schedule": "cosine", "ramp_power": 2.0, "controller": "none"})
    assert (opts.schedule, opts.ramp_power) == ("cosine", 2.0)
    kwargs = info.config_kwargs({**opts.model_dump(), "ranking": "global"}, seed=2)
    assert kwargs["ramp_power"] == 2.0 and kwargs["seed"] == 2 and "ranking" not in kwargs
    method.make_config(kwargs)  # what the runner passes is what pruning's config accepts


def test_not_options_name_real_config_fields():
    fields = {f.name for m in pruning.METHODS.values() for f in dataclasses.fields(m.config)}
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


# -- the shape of the code, read from the source (ast: nothing is imported) -------------------------------------

PACKAGES = ("pruning", "ecodiff_bench", "reports")
MAX_FUNCTION_LINES = 60
#: The zoo's training recipes are one long, linear script each (data, model, loop, save): left whole on purpose.
TRAINING_RECIPES = {"train_sdxl", "train_sdxl_turbo", "train_flux", "train_flux_schnell", "train_clip"}


def _source_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported(tree, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement of ``module`` names (relative imports made absolute)."""
    here = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _import_graph() -> dict[str, set[str]]:
    """File -> the files it imports. A package's ``__init__`` is left out as a target: importing a
    submodule runs it, but it is where a package gathers its names, not a piece others build on."""
    modules = _source_modules()
    targets = {m for m, p in modules.items() if p.name != "__init__.py"}
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = (_imported(tree, module, path.name == "__init__.py") & targets) - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each set of files that reach one another (depth-first search, three colours)."""
    state: dict[str, str] = {}
    path: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_files():
    graph = _import_graph()
    assert {"pruning.trajectory", "ecodiff_bench.suite.schema", "reports.cells"} <= set(graph)
    assert "ecodiff_bench.core.hashing" in graph["ecodiff_bench.suite.schema"]  # the graph sees real imports
    assert _cycles(graph) == []


def test_no_function_over_60_lines():
    too_long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in _source_modules().values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
        and not ("zoo" in path.parts and node.name in TRAINING_RECIPES)
    ]
    assert too_long == []
