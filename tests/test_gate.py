"""Regression gate: thresholds schema, pass/fail/not-compared policy, JUnit XML (no torch)."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from reports.gate import (
    DEFAULT_THRESHOLDS,
    IncomparableError,
    MetricThreshold,
    Thresholds,
    check,
    validate_thresholds,
)
from reports.synthetic import demo_records, value


def release(run_id="rel", **kw):
    return demo_records(run_id=run_id, **kw)


def find(result, config, metric):
    return next(c for c in result.comparisons if c.config == config and c.metric == metric)


def scale(record, name, factor):
    """Multiply a metric and its interval (a planted change)."""
    vd = record["metrics"][name]
    vd["value"] *= factor
    for k in ("ci_low", "ci_high"):
        if k in vd["details"]:
            vd["details"][k] *= factor


def test_unchanged_release_passes():
    result = check(release("cand"), release("base"), DEFAULT_THRESHOLDS)
    assert result.passed
    assert not result.failures
    # 5 configurations x 4 metrics; the bases' own timings are not paired across runs
    assert len(result.comparisons) == 20
    assert {(c.config, c.metric) for c in result.not_compared} == {
        ("digits-sdxl/base", "latency_image_s"),
        ("digits-sdxl/base", "energy_image_j"),
    }
    assert "not paired" in result.not_compared[0].reason
    assert "PASS" in result.table()


def test_noise_inside_the_intervals_never_fails():
    """A rerun of an unchanged release: each paired ratio moved by less than its interval's width."""
    cand = release("cand")
    for i, r in enumerate(cand):
        if r["method"] != "base":
            scale(r, "latency_ratio_vs_base", 1.04 if i % 2 else 0.96)
            scale(r, "energy_ratio_vs_base", 1.05)
            scale(r, "latency_image_s", 1.4)  # the whole machine was busier: absolute timings move a lot
    result = check(cand, release("base"), {"latency_image_s": {"max_increase_frac": 0.05}})
    assert result.passed, result.table()
    lat = find(result, "digits-sdxl/ecodiff@0.2", "latency_image_s")
    assert lat.compared == "latency_ratio_vs_base" and lat.change_frac == pytest.approx(0.04)
    lo, hi = lat.change_interval
    assert lo < 0.05 < hi  # the change may reach the bound, but is not shown to: no failure


def test_planted_regressions_fail():
    cand = release("cand")
    pruned = next(r for r in cand if r["method"] == "ecodiff" and r["ratio"] == 0.4)
    pruned["metrics"]["fid"]["value"] += 2.5  # > max_increase 2.0
    scale(pruned, "latency_ratio_vs_base", 1.30)  # a 30% slowdown of the pruned model vs its base
    pruned["metrics"]["clip_score"]["value"] -= 0.4  # within max_decrease 0.5
    result = check(cand, release("base"), DEFAULT_THRESHOLDS)
    assert not result.passed
    assert {(c.config, c.metric) for c in result.failures} == {
        ("digits-sdxl/ecodiff@0.4", "fid"),
        ("digits-sdxl/ecodiff@0.4", "latency_image_s"),
    }
    assert find(result, "digits-sdxl/ecodiff@0.4", "clip_score").outcome == "pass"
    lat = find(result, "digits-sdxl/ecodiff@0.4", "latency_image_s")
    assert lat.change_frac == pytest.approx(0.30) and "increase 30.00% > 5% (whole interval)" in lat.reason
    assert lat.change_interval[0] > 0.05
    assert "FAIL" in result.table()


def test_thresholds_come_from_the_baselines_suite_unless_given():
    base = release("base")
    for r in base:
        r["provenance"]["thresholds"] = {"clip_score": {"max_decrease": 0.1}}
    cand = release("cand")
    cand[1]["metrics"]["clip_score"]["value"] -= 0.2
    result = check(cand, base)
    assert "baseline's suite 'digits'" in result.thresholds_source
    assert [(c.metric, c.outcome) for c in result.failures] == [("clip_score", "fail")]
    assert {c.metric for c in result.comparisons} == {"clip_score"}
    assert check(cand, base, {"clip_score": {"max_decrease": 0.5}}).passed  # overridden


def test_only_metrics_both_releases_have_are_compared():
    cand, base = release("cand"), release("base")
    for r in cand + base:
        del r["metrics"]["fid"]  # a suite that never asked for FID
    result = check(cand, base, DEFAULT_THRESHOLDS)
    assert result.passed and "fid" not in {c.metric for c in result.comparisons}
    assert any("neither release recorded were skipped: fid" in w for w in result.warnings)
    del cand[1]["metrics"]["clip_score"]  # only one side has it: listed, not compared
    one = find(check(cand, base, DEFAULT_THRESHOLDS), "digits-sdxl/ecodiff@0.2", "clip_score")
    assert one.outcome == "not_compared" and "not recorded" in one.reason


def test_improvements_pass_both_directions():
    cand = release("cand")
    for r in cand:
        r["metrics"]["fid"]["value"] -= 5
        r["metrics"]["clip_score"]["value"] += 3
        r["metrics"]["energy_image_j"]["value"] *= 0.5
    assert check(cand, release("base"), DEFAULT_THRESHOLDS).passed


def test_unavailable_metric_is_not_compared_unless_required_or_strict():
    cand = release("cand")
    cand[1]["metrics"]["fid"] = value("fid", None, note="no Inception weights offline")
    result = check(cand, release("base"), DEFAULT_THRESHOLDS)
    assert result.passed
    nc = [c for c in result.not_compared if c.metric == "fid"]
    assert len(nc) == 1 and "no Inception weights offline" in nc[0].reason
    assert "3 not compared" in result.summary()  # and the base's two timings
    strict = check(cand, release("base"), DEFAULT_THRESHOLDS, strict=True)
    assert not strict.passed and strict.failures[0].metric == "fid"
    required = {**DEFAULT_THRESHOLDS, "fid": {"max_increase": 2.0, "required": True}}
    assert not check(cand, release("base"), required).passed


def test_different_fid_sample_counts_are_not_compared():
    cand = release("cand")
    for r in cand:
        r["metrics"]["fid"]["details"]["n_samples"] = 100
    result = check(cand, release("base"), {"fid": {"max_increase": 2.0}})
    assert all(c.outcome == "not_compared" for c in result.comparisons)
    assert "sample counts differ (baseline 1000, candidate 100)" in result.comparisons[0].reason


def test_failed_candidate_run_fails_and_missing_configs_are_listed():
    cand = release("cand")
    cand[1]["status"], cand[1]["error"] = "failed", "CUDA out of memory"
    del cand[2]
    result = check(cand, release("base"), DEFAULT_THRESHOLDS)
    assert not result.passed
    run = [c for c in result.comparisons if c.metric == "run"]
    assert len(run) == 1 and "CUDA out of memory" in run[0].reason
    missing = [c for c in result.comparisons if c.metric == "*"]
    assert len(missing) == 1 and missing[0].outcome == "not_compared"


def test_seeds_are_averaged_per_configuration():
    base = release("base")
    cand = release("cand")
    twin = copy.deepcopy(cand[1])
    twin["seed"], twin["record_id"] = 1, "other-seed"
    cand[1]["metrics"]["fid"]["value"] += 3.0  # mean +1.5 over two seeds: within 2.0
    cand.append(twin)
    assert find(check(cand, base, DEFAULT_THRESHOLDS), "digits-sdxl/ecodiff@0.2", "fid").outcome == "pass"


def test_smoke_against_full_is_refused_and_devices_warn():
    with pytest.raises(IncomparableError, match="smoke"):
        check(release("c", smoke=True), release("b"), DEFAULT_THRESHOLDS)
    result = check(release("c", smoke=True), release("b"), DEFAULT_THRESHOLDS, allow_smoke_mismatch=True)
    assert any("smoke" in w for w in result.warnings)
    cand = release("c")
    for r in cand:
        r["provenance"]["torch"]["cuda_devices"] = ["Other GPU"]
    assert any("devices differ" in w for w in check(cand, release("b")).warnings)
    with pytest.raises(IncomparableError, match="no records"):
        check([], release("b"))


def test_junit_xml_parses_and_counts(tmp_path):
    cand = release("cand")
    cand[1]["metrics"]["fid"]["value"] += 10
    cand[2]["metrics"]["clip_score"] = value("clip_score", None, note="no CLIP weights")
    result = check(cand, release("base"), DEFAULT_THRESHOLDS, baseline_name="v1", candidate_name="v2")
    path = result.write_junit(tmp_path / "junit" / "gate.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite.get("tests") == "20" and suite.get("failures") == "1" and suite.get("skipped") == "3"
    cases = suite.findall("testcase")
    assert len(cases) == 20
    failed = [c for c in cases if c.find("failure") is not None]
    assert failed[0].get("name") == "fid" and failed[0].get("classname") == "digits-sdxl/ecodiff@0.2"
    assert "regression" in failed[0].find("failure").get("message")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert any("no CLIP weights" in c.find("skipped").get("message") for c in skipped)


def test_threshold_schema():
    th = validate_thresholds({"fid": {"max_increase": 2}, "energy_image_j": {"max_increase_frac": 0.05}})
    assert isinstance(th, Thresholds) and th.root["fid"].bounds() == {"max_increase": 2.0}
    assert MetricThreshold(max_decrease=0.5).required is False
    with pytest.raises(ValueError, match="unknown metric 'fdi'. Did you mean: fid?"):
        validate_thresholds({"fdi": {"max_increase": 2}})
    with pytest.raises(ValueError, match=r"thresholds.fid: .*set at least one of"):
        validate_thresholds({"fid": {}})
    with pytest.raises(ValueError, match=r"thresholds.fid.max_increase: .*greater than or equal to 0"):
        validate_thresholds({"fid": {"max_increase": -1}})
    with pytest.raises(ValueError, match=r"thresholds.fid.max_incr: Extra inputs are not permitted"):
        validate_thresholds({"fid": {"max_incr": 1}})
    # usable as a field type in another pydantic model (the suite schema)
    from pydantic import BaseModel

    class Suite(BaseModel):
        gate: Thresholds

    assert Suite.model_validate({"gate": DEFAULT_THRESHOLDS}).gate.root["clip_score"].max_decrease == 0.5
