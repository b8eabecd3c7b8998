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


def test_unchanged_release_passes():
    result = check(release("cand"), release("base"), DEFAULT_THRESHOLDS)
    assert result.passed
    assert not result.failures and not result.not_compared
    # 5 configurations x 4 metrics
    assert len(result.comparisons) == 20
    assert "PASS" in result.table()


def test_planted_regressions_fail():
    cand = release("cand")
    pruned = next(r for r in cand if r["method"] == "ecodiff" and r["ratio"] == 0.4)
    pruned["metrics"]["fid"]["value"] += 2.5  # > max_increase 2.0
    pruned["metrics"]["latency_image_s"]["value"] *= 1.10  # > 5 %
    pruned["metrics"]["clip_score"]["value"] -= 0.4  # within max_decrease 0.5
    result = check(cand, release("base"), DEFAULT_THRESHOLDS)
    assert not result.passed
    assert {(c.config, c.metric) for c in result.failures} == {
        ("digits-sdxl/ecodiff@0.4", "fid"), ("digits-sdxl/ecodiff@0.4", "latency_image_s")}
    assert find(result, "digits-sdxl/ecodiff@0.4", "clip_score").outcome == "pass"
    lat = find(result, "digits-sdxl/ecodiff@0.4", "latency_image_s")
    assert lat.change_frac == pytest.approx(0.10) and "increase 10.00% > 5%" in lat.reason
    assert "FAIL" in result.table()


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
    nc = result.not_compared
    assert len(nc) == 1 and nc[0].metric == "fid" and "no Inception weights offline" in nc[0].reason
    assert "1 not compared" in result.summary()
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
    assert suite.get("tests") == "20" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert len(cases) == 20
    failed = [c for c in cases if c.find("failure") is not None]
    assert failed[0].get("name") == "fid" and failed[0].get("classname") == "digits-sdxl/ecodiff@0.2"
    assert "regression" in failed[0].find("failure").get("message")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert "no CLIP weights" in skipped[0].find("skipped").get("message")


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
