"""Release history (``releases``, the report's "Release history", ``check --against previous``) and the
thresholds' absolute windows; no torch."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

import reports
from ecodiff_bench.cli.results import register
from ecodiff_bench.core.store import Store
from ecodiff_bench.core.thresholds import MetricThreshold, validate_thresholds
from ecodiff_bench.suite import load_suite
from reports.gate import check, windows
from reports.releases import load_releases, previous_release, store_history
from reports.synthetic import release_records

# The planted regression: this configuration's Fréchet distance rises by 80 % in v3 (the suite allows 50 %).
PLANTED = ("digits-flux", "magnitude", 0.4)


@click.group()
def cli():
    """Stand-in for the main ecodiff-bench group."""


register(cli)


def run(args, store=None):
    if store is not None:
        args = [*args, "--store", str(store)]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def digits_thresholds(**extra) -> dict:
    """The digits suite's own regression thresholds, as the runner records them in provenance."""
    th = load_suite("digits").regression.thresholds
    return {**{k: v.model_dump(mode="json", exclude_none=True) for k, v in th.items()}, **extra}


def four_releases(path, thresholds=None, planted=None) -> Store:
    """v1..v4 of the digits suite, values drifting inside the thresholds; ``planted`` changes in v3."""
    store = Store(path)
    for i in range(4):
        changes = {PLANTED: planted or {"frechet_distance": 1.8}} if i == 2 else None
        store.put_many(release_records(f"run-{i + 1}", index=i, thresholds=thresholds or digits_thresholds(),
                                       changes=changes))  # fmt: skip
        store.tag(f"v{i + 1}", run_id=f"run-{i + 1}")
    return store


@pytest.fixture
def db(tmp_path):
    four_releases(tmp_path / "store.sqlite").close()
    return tmp_path / "store.sqlite"


def test_four_releases_mark_exactly_the_planted_regression(db, tmp_path):
    # releases: only v3 fails, and only on the planted configuration and metric
    res = run(["releases", "--json"], db)
    assert res.exit_code == 0, res.output
    (series,) = json.loads(res.output)["series"]
    assert [(r["name"], r["previous"], r["verdict"]) for r in series["releases"]] == [
        ("v1", None, "first"),
        ("v2", "v1", "pass"),
        ("v3", "v2", "fail"),
        ("v4", "v3", "pass"),
    ]
    assert set(series["metrics"]) == {
        "latency_image_s",
        "energy_image_j",
        "frechet_distance",
        "recognisability",
    }
    fails = [
        (p["release"], p["config"], p["metric"])
        for ps in series["metrics"].values()
        for p in ps
        if p["verdict"] == "fail"
    ]
    assert fails == [("v3", "digits-flux/magnitude@0.4", "frechet_distance")]
    planted = next(
        p
        for p in series["metrics"]["frechet_distance"]
        if p["release"] == "v3" and p["config"] == "digits-flux/magnitude@0.4"
    )
    assert planted["change_frac"] == pytest.approx(0.8, abs=0.05)
    assert planted["band"][1] == pytest.approx(1.5 * planted["band_origin"])  # max_increase_frac 0.5
    assert planted["value"] > planted["band"][1]
    # pruned latency is shown as the gate compares it: the paired ratio; the bases' own timings not at all
    lat = series["metrics"]["latency_image_s"]
    assert {p["compared"] for p in lat} == {"latency_ratio_vs_base"} and all(
        p["method"] != "base" for p in lat
    )

    text = run(["releases", "--metric", "frechet_distance"], db).output
    assert re.findall(r"^\s*(v\d) vs v\d: .* FAILED", text, re.M) == ["v3"]
    row = next(line for line in text.splitlines() if line.startswith("digits-flux/magnitude@0.4"))
    assert row.count("FAIL") == 1 and row.index("FAIL") > row.index("+7")  # in v3's column: +7x.x% FAIL

    # the report's history marks the same release, in HTML and Markdown
    out = reports.render(db, tmp_path / "rep")
    html, md = out["html"].read_text(), out["markdown"].read_text()
    start = html.index('<section id="release-history">')
    section = html[start : html.index("</section>", start)]
    assert re.findall(r"<tr class='regress'><td class='l'>(v\d)</td>", section) == ["v3"]
    assert section.count("<tr class=regress>") == 1  # the planted configuration's row of its metric
    assert section.count('<figure class="plot">') == 4  # one plot per gated metric
    assert "Regressions of frechet_distance in: v3." in section
    history_md = md[md.index("## Release history") : md.index("## Base vs pruned")]
    assert re.findall(r"^\| (v\d) \|.*\| FAIL \(1\) \|$", history_md, re.M) == ["v3"]
    assert re.findall(r"^- ❌ (v\d) vs v\d", history_md, re.M) == ["v3"]
    fail_rows = [line for line in history_md.splitlines() if line.startswith("|") and "FAIL" in line]
    assert len(fail_rows) == 2 and fail_rows[1].startswith("| digits-flux/magnitude@0.4 |")  # release, cell
    assert len(list((tmp_path / "rep" / "assets").glob("history_digits_*.png"))) == 4

    # check --against previous: the third fails against the second, the fourth passes against the third
    res = run(["check", "--against", "previous", "--candidate", "v3"], db)
    assert res.exit_code == 1, res.output
    assert "Baseline: release v2" in res.output and "FAIL: release v3 vs release v2" in res.output
    res = run(["check", "--against", "previous", "--candidate", "v4", "--json"], db)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["passed"] and out["baseline"] == "release v3" and "Baseline: release v3" in res.stderr
    # a run that a release holds takes that release's place
    res = run(["check", "--against", "previous", "--run-id", "run-3"], db)
    assert res.exit_code == 1 and "Baseline: release v2" in res.output


def test_check_against_previous_usage_errors(db, tmp_path):
    res = run(["check", "--against", "previous", "--candidate", "v1"], db)
    assert res.exit_code == 2
    assert "no full release of suite 'digits' was tagged before release v1" in res.output
    res = run(["check", "--against", "previous", "--baseline", "v1"], db)
    assert res.exit_code == 2 and "not both" in res.output
    res = run(["check", "--against", "latest"], db)
    assert res.exit_code == 2 and "'latest' is not" in res.output
    with Store(db) as s:  # a smoke run is gated against smoke releases only
        s.put_many([{**r, "smoke": True, "record_id": r["record_id"] + "-s", "run_id": "run-smoke"}
                    for r in release_records("run-smoke", index=9)])  # fmt: skip
    res = run(["check", "--against", "previous", "--run-id", "run-smoke"], db)
    assert res.exit_code == 2 and "no smoke release of suite 'digits'" in res.output
    assert "Traceback" not in res.output


def test_previous_release_is_the_one_before_in_the_same_series(db):
    with Store(db, readonly=True) as s:
        rels = load_releases(s)
        assert [r.name for r in rels] == ["v1", "v2", "v3", "v4"]
        assert previous_release(rels, s.tagged("v3"), "v3").name == "v2"
        assert previous_release(rels, s.tagged("v1"), "v1") is None
        untagged = release_records("run-5", index=5)
        assert previous_release(rels, untagged).name == "v4"  # a new run: the most recent release
        other = release_records("run-x", index=5, suite="other")
        assert previous_release(rels, other) is None


def test_releases_cli_errors_and_an_empty_store(db, tmp_path):
    for args, needle in [
        (["releases", "--metric", "fdi"], "Did you mean: fid?"),
        (["releases", "--metric", "clip_score"], "is not gated by any release's thresholds"),
        (["releases", "--suite", "sdxl"], "no release of suite 'sdxl'; suites with releases: digits"),
    ]:
        res = run(args, db)
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    res = run(["releases"], empty)
    assert res.exit_code == 0 and "No tagged releases yet" in res.output
    assert json.loads(run(["releases", "--json"], empty).output) == {"series": []}


def test_report_history_is_optional_and_required_on_demand(db, tmp_path):
    res = run(["report", "--out", str(tmp_path / "a"), "--no-releases", "--format", "md"], db)
    assert res.exit_code == 0 and "Release history" not in (tmp_path / "a" / "report.md").read_text()
    empty = tmp_path / "untagged.sqlite"
    with Store(empty) as s:
        s.put_many(release_records("run-1"))
    res = run(["report", "--out", str(tmp_path / "b"), "--format", "md"], empty)
    assert res.exit_code == 0 and "Release history" not in (tmp_path / "b" / "report.md").read_text()
    res = run(["report", "--out", str(tmp_path / "c"), "--releases"], empty)
    assert res.exit_code == 2 and "no tagged release of suite(s) digits" in res.output


def test_a_release_that_cannot_be_compared_is_said_so(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.put_many(release_records("run-1", index=0))
        s.tag("v1", run_id="run-1")
        mixed = release_records("run-2", index=1)
        mixed[0]["smoke"] = True  # one smoke record in a full release: the gate refuses to compare
        s.put_many(mixed)
        s.tag("v2", record_ids=[r["record_id"] for r in mixed])
        hist = store_history(s)
    assert [(x.smoke, [st.verdict for st in x.steps]) for x in hist.series] == [
        (False, ["first"]),
        (True, ["first"]),
    ]


# -- windows -------------------------------------------------------------------------------------------
def test_window_fails_only_outside_and_applies_without_a_baseline():
    th = {"frechet_distance": {"window": [3.0, 8.5]}, "recognisability": {"max_decrease": 0.1}}
    base, cand = release_records("b", index=0), release_records("c", index=1)
    result = check(cand, base, th)
    rows = [c for c in result.comparisons if c.kind == "window"]
    assert len(rows) == 10 and result.passed, result.table()  # every configuration, bases too
    assert all(c.limits == "window=[3, 8.5]" and c.baseline is None for c in rows)
    assert "frechet_distance (window)" in result.table() and "(window)" in result.junit_xml()

    cand = release_records("c", index=1, changes={PLANTED: {"frechet_distance": 1.1}})  # 8.3 -> ~9.1
    base = [r for r in base if (r["model"], r["method"], r["ratio"]) != PLANTED]  # no baseline for it
    result = check(cand, base, th)
    assert [(c.config, c.metric, c.kind) for c in result.failures] == [
        ("digits-flux/magnitude@0.4", "frechet_distance", "window")
    ]
    assert "above [3, 8.5]" in result.failures[0].reason
    # a first release, with nothing before it: windows() alone
    assert [c.config for c in windows(cand, th) if c.outcome == "fail"] == ["digits-flux/magnitude@0.4"]


def test_window_respects_intervals_and_pruned_only_metrics():
    th = {"latency_ratio_vs_base": {"window": [0.0, 0.88]}}
    recs = release_records("c", index=0)  # 20 % ratios ~0.88 +- 3 %: some above 0.88, inside the interval
    rows = windows(recs, th)
    assert {c.method for c in rows} == {"ecodiff", "magnitude"}  # the bases hold no paired ratio
    assert all(c.outcome == "pass" for c in rows)
    assert any("its interval reaches the window" in c.reason for c in rows)
    far = release_records(
        "c", index=0, changes={("digits-sdxl", "ecodiff", 0.2): {"latency_ratio_vs_base": 1.2}}
    )
    assert [c.config for c in windows(far, th) if c.outcome == "fail"] == ["digits-sdxl/ecodiff@0.2"]


@pytest.mark.parametrize(
    "window, needle",
    [
        ([24.0, 23.0], "low <= high"),
        ([23.0], "two numbers"),
        ("23-24", "two numbers"),
        ([True, 2], "two numbers"),
        ([1.0, float("inf")], "finite"),
    ],
)
def test_bad_windows_name_the_field_and_what_is_allowed(window, needle, tmp_path):
    with pytest.raises(ValueError, match=r"thresholds\.fid\.window") as err:
        validate_thresholds({"fid": {"window": window}})
    assert needle in str(err.value)
    if window == "23-24" or window[0] == float("inf") or window[-1] == float("inf"):
        return
    # the same message for a suite file, through `validate`
    from ecodiff_bench.cli.main import main
    from ecodiff_bench.suite import SUITES_DIR

    text = (SUITES_DIR / "digits.yaml").read_text()
    assert "frechet_distance: {max_increase_frac: 0.5}" in text
    suite = tmp_path / "s.yaml"
    suite.write_text(
        text.replace(
            "frechet_distance: {max_increase_frac: 0.5}",
            f"frechet_distance: {{max_increase_frac: 0.5, window: {json.dumps(window)}}}",
        )
    )
    res = CliRunner().invoke(main, ["validate", str(suite)])
    assert res.exit_code == 2
    assert "regression.thresholds.frechet_distance.window" in res.output and needle in res.output
    assert "Traceback" not in res.output


def test_window_alone_is_a_threshold_and_recorded_in_provenance_form():
    th = validate_thresholds({"fid": {"window": [23.01, 23.95]}})
    assert th.root["fid"].bounds() == {}
    assert th.root["fid"].model_dump(mode="json", exclude_none=True)["window"] == [23.01, 23.95]
    shipped = load_suite("digits").regression.thresholds  # the shipped suite sets no window
    assert all(t.window is None for t in shipped.values())


def test_allowed_range_takes_the_tightest_bound_on_each_side():
    assert MetricThreshold(max_increase=2.0).allowed_range(10.0) == (10.0, 12.0)
    assert MetricThreshold(max_increase=2.0, max_increase_frac=0.1).allowed_range(10.0) == (10.0, 11.0)
    assert MetricThreshold(max_decrease=0.1, max_decrease_frac=0.5).allowed_range(0.9) == pytest.approx(
        (0.8, 0.9)
    )
    assert MetricThreshold(max_increase_frac=0.1).allowed_range(-2.0) == pytest.approx((-2.0, -1.8))
