"""Result commands (history, compare, export, report, tag, check) through click's CliRunner."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ecodiff_bench.cli.results import register
from ecodiff_bench.core.store import Store
from reports.synthetic import demo_records


@click.group()
def cli():
    """Stand-in for the main ecodiff-bench group."""


register(cli)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "store.sqlite"
    s = Store(path)
    s.put_many(demo_records(run_id="run-base"))
    cand = demo_records(run_id="run-cand")
    for r in cand:
        r["record_id"] += "-c"
        r["created_at"] = r["created_at"].replace("2025-01-01", "2025-01-02")
    s.put_many(cand)
    bad = demo_records(run_id="run-bad")
    for r in bad:
        r["record_id"] += "-b"
        r["created_at"] = r["created_at"].replace("2025-01-01", "2025-01-03")
        r["metrics"]["fid"]["value"] += 10
    s.put_many(bad)
    smoke = demo_records(run_id="run-smoke", smoke=True, methods=("random",), ratios=(0.5,))
    for r in smoke:
        r["record_id"] += "-s"
    s.put_many(smoke)
    s.tag("v1", run_id="run-base")
    s.close()
    return path


def run(args, db=None):
    if db is not None:
        args = [*args, "--store", str(db)]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_history_lists_runs_and_tags(db):
    res = run(["history"], db)
    assert res.exit_code == 0, res.output
    assert "run-base" in res.output and "run-smoke" in res.output and "v1" in res.output
    res = run(["history", "--records"], db)
    assert res.exit_code == 0 and "smoke record(s) hidden" in res.output
    res = run(["history", "--json"], db)
    assert json.loads(res.output)["tags"][0]["name"] == "v1"


def test_compare_releases_and_runs(db):
    res = run(["compare", "v1", "run-bad", "--metric", "fid"], db)
    assert res.exit_code == 0, res.output
    assert "digits-sdxl/ecodiff@0.2" in res.output and "+10" in res.output and "worse" in res.output


def test_export_and_report(db, tmp_path):
    res = run(["export", str(tmp_path / "x.parquet"), "--run-id", "run-base"], db)
    assert res.exit_code == 0 and "Wrote 5 record(s)" in res.output
    res = run(["report", "--out", str(tmp_path / "rep"), "--tag", "v1"], db)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "report.html").exists() and (tmp_path / "rep" / "report.md").exists()


def test_check_pass_fail_and_junit(db, tmp_path):
    res = run(["check", "--baseline", "v1", "--run-id", "run-cand", "--junit", str(tmp_path / "ok.xml")], db)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output
    ET.parse(tmp_path / "ok.xml")
    res = run(["tag", "v2", "--run-id", "run-bad"], db)
    assert res.exit_code == 0
    res = run(["check", "--baseline", "v1", "--candidate", "v2", "--junit", str(tmp_path / "bad.xml")], db)
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "regression" in res.output
    assert (
        ET.parse(tmp_path / "bad.xml").getroot().find("testsuite").get("failures") == "5"
    )  # base + 4 pruned, fid +10 each


def test_check_reads_thresholds_from_a_suite_like_yaml(db, tmp_path):
    th = tmp_path / "suite.yaml"
    th.write_text("name: digits\nregression:\n  thresholds:\n    fid: {max_increase: 20}\n")
    res = run(["check", "--baseline", "v1", "--run-id", "run-bad", "--thresholds", str(th)], db)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["check", "--baseline", "v9"], "'v9' is neither a release tag nor a run id"),
        (["check", "--baseline", "v1", "--candidate", "v1", "--run-id", "run-cand"], "not both"),
        (["check", "--baseline", "v1", "--run-id", "run-smoke"], "smoke"),
        (["check", "--baseline", "v1", "--run-id", "nope"], "unknown run id 'nope'"),
        (["check"], "give --baseline RELEASE (or run id) or --against previous"),
        (["export", "out.xlsx"], "cannot tell the format"),
        (["export", "out.csv", "--format", "xml"], "'xml' is not one of"),
        (["export", "out.csv", "--tag", "nope"], "unknown release tag 'nope'"),
        (["report", "--run-id", "nope"], "unknown run id 'nope'"),
        (["report", "--tag", "nope"], "unknown release tag 'nope'"),
        (["compare", "v1", "zzz"], "'zzz' is not a release tag, run id or record id"),
        (["compare", "v1", "run-cand", "--metric", "fdi"], "Did you mean: fid?"),
        (["history", "--limit", "0"], "0 is not in the range x>=1"),
        (["tag", "v1", "--run-id", "run-cand"], "already exists"),
        (["tag", "v3"], "give either --run-id RUN or one or more --record ID"),
        (["tag", "v3", "--record", "missing"], "unknown record id(s): missing"),
    ],
)
def test_usage_errors_exit_2_without_traceback(db, args, needle):
    res = run(args, db)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_missing_store_and_bad_thresholds_exit_2(tmp_path, db):
    res = run(["history", "--store", str(tmp_path / "absent.sqlite")])
    assert res.exit_code == 2 and "no results store at" in res.output and "--store" in res.output
    bad = tmp_path / "th.yaml"
    bad.write_text("thresholds:\n  fdi: {max_increase: 1}\n")
    res = run(["check", "--baseline", "v1", "--run-id", "run-cand", "--thresholds", str(bad)], db)
    assert res.exit_code == 2 and "Did you mean: fid?" in res.output and "Traceback" not in res.output


def test_json_output_of_check_and_compare(db):
    res = run(["check", "--baseline", "v1", "--run-id", "run-bad", "--json"], db)
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["passed"] is False and out["counts"]["failed"] == 5
    assert {c["metric"] for c in out["comparisons"] if c["outcome"] == "fail"} == {"fid"}
    res = run(["compare", "v1", "run-bad", "--metric", "fid", "--json"], db)
    changes = json.loads(res.output)["changes"]
    assert res.exit_code == 0 and len(changes) == 5 and changes[0]["change"] == pytest.approx(10)


def test_export_wide_and_long_carry_percentiles_intervals_and_wh_per_1000(db, tmp_path):
    import pandas as pd

    assert run(["export", str(tmp_path / "wide.csv"), "--run-id", "run-base"], db).exit_code == 0
    wide = pd.read_csv(tmp_path / "wide.csv")
    for col in (
        "latency_image_s__p50",
        "latency_image_s__p99",
        "latency_image_s__ci_low",
        "latency_ratio_vs_base__ci_high",
        "energy_wh_per_1000_images",
    ):
        assert col in wide.columns, col
    base = wide[wide["method"] == "base"].iloc[0]
    assert base["energy_wh_per_1000_images"] == pytest.approx(base["energy_image_j"] * 1000 / 3600)
    res = run(["export", str(tmp_path / "long.parquet"), "--run-id", "run-base", "--layout", "long"], db)
    assert res.exit_code == 0, res.output
    long = pd.read_parquet(tmp_path / "long.parquet")
    assert {
        "record_id",
        "metric",
        "value",
        "unit",
        "value_status",
        "p50",
        "p90",
        "p99",
        "ci_low",
        "ci_high",
    } <= set(long.columns)
    wh = long[(long["metric"] == "energy_wh_per_1000_images") & (long["method"] == "base")]
    assert len(wh) == 1 and wh["unit"].iloc[0] == "Wh/1000 images" and wh["ci_low"].iloc[0] > 0


def test_report_renders_every_figure_from_another_directory(tmp_path, monkeypatch):
    """Artifact paths relative to the store's folder, the report rendered from elsewhere."""
    store_dir = tmp_path / "results"
    recs = demo_records(store_dir / "artifacts")
    for r in recs:
        r["artifacts"] = {k: str(Path(v).relative_to(store_dir)) for k, v in r["artifacts"].items()}
    with Store(store_dir / "store.sqlite") as s:
        s.put_many(recs)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    res = run(["report", "--store", str(store_dir / "store.sqlite"), "--out", "rep", "--format", "html"])
    assert res.exit_code == 0, res.output
    html = (elsewhere / "rep" / "report.html").read_text()
    assert not (elsewhere / "rep" / "report.md").exists()  # --format html only
    assert "not found" not in html and "not available" not in html
    assert html.count("<img ") == 10  # 2 metric plots, heatmap, power, training, 5 sample grids
