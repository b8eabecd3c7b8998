"""The ``ecodiff-bench`` command line: help, version, ls, validate, run/prune wiring, zoo."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.suite import SUITES_DIR, RunPlan, expand, load_suite

REPO = Path(__file__).resolve().parents[1]


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_lists_the_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "validate", "ls", "prune", "zoo"):
        assert f"  {command} " in result.output
    for command in ("history", "compare", "export", "report", "check"):
        assert f"  {command} " in result.output


def test_version():
    result = _invoke("--version")
    assert result.exit_code == 0 and "ecodiff-bench" in result.output


def test_cli_import_does_not_import_torch():
    code = "import sys, ecodiff_bench.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "ecodiff_bench", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0 and "validate" in out.stdout


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("models", ["sdxl", "flux-schnell", "digits-sdxl", "digits-flux-schnell"]),
        ("methods", ["ecodiff", "taylor", "magnitude", "random"]),
        ("metrics", ["latency_image_s", "gco2e_per_1000_images", "fid", "clip_score", "recognisability"]),
        ("suites", ["digits", "sdxl", "flux-dev", "sdxl-arch"]),
    ],
)
def test_ls(kind, expected):
    result = _invoke("ls", kind)
    assert result.exit_code == 0, result.output
    for name in expected:
        assert name in result.output


def test_ls_all():
    result = _invoke("ls")
    assert result.exit_code == 0
    for header in ("models:", "methods:", "metrics:", "suites:"):
        assert header in result.output


def test_validate_digits_exits_0():
    result = _invoke("validate", str(SUITES_DIR / "digits.yaml"))
    assert result.exit_code == 0, result.output
    assert "18 runs" in result.output and "digits-flux-schnell" in result.output
    assert _invoke("validate", "digits").exit_code == 0


def test_validate_json_matches_expand():
    result = _invoke("validate", "digits", "--json", "--smoke")
    assert result.exit_code == 0
    specs = json.loads(result.output)
    assert [s["record_id"] for s in specs] == [
        s.record_id for s in expand(load_suite("digits"), smoke=True).specs
    ]
    assert all(s["smoke"] for s in specs)


def test_run_dry_run_lists_runs_without_the_runner(tmp_path):
    result = _invoke("run", "--dry-run", "--only", "digits-flux-schnell", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert (
        "dry run" in result.output and "digits-flux" in result.output and "digits-sdxl " not in result.output
    )
    assert not (tmp_path / "o").exists()


def _fake_run_module(**functions) -> types.ModuleType:
    """A stand-in for ecodiff_bench.run with ``functions``, and the real process-group helpers (without a
    launcher, a world of one), which the CLI imports from it."""
    from ecodiff_bench.run import distributed

    module = types.ModuleType("ecodiff_bench.run")
    module.distributed = distributed
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module


@pytest.fixture
def fake_runner(monkeypatch):
    calls: list = []

    def run_suite(plan, *, wait=False, summary=None):
        calls.append(("run", plan))
        return 0

    def prune_suite(plan):
        calls.append(("prune", plan))
        return 3

    monkeypatch.setitem(
        sys.modules, "ecodiff_bench.run", _fake_run_module(run_suite=run_suite, prune_suite=prune_suite)
    )
    return calls


def test_run_calls_the_runner_with_the_plan(fake_runner, tmp_path):
    result = _invoke("run", "--smoke", "--only", "digits-flux-schnell", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    ((kind, plan),) = fake_runner
    assert kind == "run" and isinstance(plan, RunPlan) and plan.suite == "digits" and plan.smoke is True
    assert plan.layout.root == tmp_path and plan.layout.root_field == "--out"
    assert plan.layout.store == tmp_path / "store.sqlite"
    assert {s.model for s in plan.specs} == {"digits-flux-schnell"} and all(s.smoke for s in plan.specs)
    assert plan.idle_baseline_s == load_suite("digits").smoke.idle_baseline_s


def test_run_without_suite_uses_digits(fake_runner):
    assert _invoke("run").exit_code == 0
    assert fake_runner[0][1].suite == "digits" and fake_runner[0][1].smoke is False


def test_prune_calls_the_runner_and_passes_its_exit_code(fake_runner):
    result = _invoke("prune", str(SUITES_DIR / "digits.yaml"), "--smoke")
    assert result.exit_code == 3
    assert fake_runner[0][0] == "prune" and fake_runner[0][1].smoke is True


def test_user_errors_from_the_runner_exit_2(monkeypatch, tmp_path):
    def run_suite(suite, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "weights.pth"))

    monkeypatch.setitem(sys.modules, "ecodiff_bench.run", _fake_run_module(run_suite=run_suite))
    result = _invoke("run", "digits")
    assert result.exit_code == 2 and "weights.pth" in result.stderr and "Traceback" not in result.output


def test_zoo_ls_lists_zoo_models():
    result = _invoke("zoo", "ls")
    assert result.exit_code == 0, result.output
    assert "digits-sdxl" in result.output and "digits-flux-schnell" in result.output


def test_zoo_train_calls_zoo(monkeypatch, tmp_path):
    import ecodiff_bench.zoo as zoo

    calls = []
    monkeypatch.setattr(
        zoo, "train", lambda name, out_dir, seed=0: calls.append((name, out_dir, seed)) or out_dir
    )
    result = _invoke("zoo", "train", "digits-flux", "--out", str(tmp_path), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert calls == [("digits-flux", tmp_path, 3)]


def test_validate_a_suite_written_by_hand(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "models": ["digits-sdxl"],
                "methods": [{"name": "random", "ratios": [0.5]}],
                "energy": {"carbon": False},
            }
        )
    )
    result = _invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "Suite 'mine'" in result.output and "2 runs" in result.output
