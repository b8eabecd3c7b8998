"""The wheel: every package and the built-in suites inside it, and a smoke run from an installed wheel."""

import fnmatch
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from setuptools import find_packages

from ecodiff_bench.cli import main
from ecodiff_bench.core.store import Store
from reports.synthetic import demo_records

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_code_package_is_listed_for_the_wheel():
    found = set(find_packages(str(ROOT), include=["ecodiff_bench*", "pruning*", "reports*"]))
    missing = sorted(found - set(SETUPTOOLS["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_every_builtin_suite_file_is_package_data():
    data = SETUPTOOLS["package-data"]
    for file in (ROOT / "suites").rglob("*"):
        if file.is_file():
            rel = file.relative_to(ROOT / "suites")
            package = ".".join(("ecodiff_bench", "suites", *rel.parts[:-1]))
            assert any(fnmatch.fnmatch(rel.name, g) for g in data.get(package, [])), (
                f"{rel} would miss the wheel"
            )


def test_check_takes_a_builtin_suite_name_for_its_thresholds(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    store.put_many(demo_records(run_id="run-base"))
    cand = demo_records(run_id="run-cand")
    for r in cand:
        r["record_id"] += "-c"
    store.put_many(cand)
    store.tag("v1", run_id="run-base")
    store.close()
    base = ["check", "--store", str(tmp_path / "store.sqlite"), "--baseline", "v1", "--run-id", "run-cand"]
    ok = CliRunner().invoke(main, [*base, "--thresholds", "digits"])
    assert ok.exit_code == 0, ok.output
    assert "latency_image_s" in ok.output  # the digits suite's thresholds were used
    typo = CliRunner().invoke(main, [*base, "--thresholds", "digitz"])
    assert typo.exit_code == 2 and "Did you mean: digits?" in typo.output and "Traceback" not in typo.output
    missing = CliRunner().invoke(main, [*base, "--thresholds", "absent.yaml"])
    assert missing.exit_code == 2 and "file not found" in missing.output


WHEEL_SMOKE = ROOT / ".ci" / "wheel-smoke"


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_the_smoke_suite_from_elsewhere(tmp_path):
    """The path a wheel user takes: build, install (no editable link to this checkout), run from another
    directory. The script is the one CI runs."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run(
        ["bash", str(WHEEL_SMOKE), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        cwd=tmp_path,
    )
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    figures = [line for line in res.stdout.splitlines() if line.startswith("wheel smoke:")]
    print(*figures, sep="\n")  # shown with pytest -s
    assert "wheel smoke: ok" in res.stdout
    runs = tmp_path / "elsewhere" / "results"
    assert (runs / "store.sqlite").is_file() and (runs / "report" / "report.html").is_file()
    cards = list((runs / "models").glob("*/README.md"))
    assert cards and all("## Measured" in c.read_text() for c in cards)


def test_ci_runs_the_wheel_smoke_through_the_slow_tests():
    assert WHEEL_SMOKE.is_file()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python -m pytest -q -m slow" in ci  # which holds the wheel test above
