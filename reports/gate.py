"""Regression gate: compare a candidate release of pruned models against a baseline release.

Records are matched by (model, method, ratio); several seeds of one configuration are averaged.
Each threshold bounds the change of one metric from baseline to candidate, in the direction that is a
regression for it::

    fid:             {max_increase: 2.0}         # candidate - baseline <= 2.0
    clip_score:      {max_decrease: 0.5}         # baseline - candidate <= 0.5
    latency_image_s: {max_increase_frac: 0.05}   # (candidate - baseline) / |baseline| <= 5 %
    energy_image_j:  {max_increase_frac: 0.05, required: true}

Policy for missing data, stated in every result: a metric that is unavailable (or absent) on either side,
a configuration without a counterpart, or a quality metric computed from different sample counts is
"not compared". Not-compared rows are listed and counted but do not fail the gate, unless the metric's
threshold says ``required: true`` or the check runs with ``strict=True``. A candidate record whose run
failed is a failure. Smoke and full releases are never compared (``IncomparableError``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ecodiff_bench.core.files import write_text_atomic
from ecodiff_bench.core.metrics import SAMPLE_SENSITIVE, direction
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.tables import text_table
from ecodiff_bench.core.thresholds import (
    BOUNDS,
    DEFAULT_THRESHOLDS,
    MetricThreshold,
    Thresholds,
    default_thresholds,
    validate_thresholds,
)
from reports.analysis import device_of, sample_count

__all__ = [
    "BOUNDS",
    "DEFAULT_THRESHOLDS",
    "Change",
    "Comparison",
    "GateResult",
    "IncomparableError",
    "MetricThreshold",
    "Thresholds",
    "check",
    "default_thresholds",
    "diff",
    "key_text",
    "validate_thresholds",
    "verdict",
]

Outcome = Literal["pass", "fail", "not_compared"]


class IncomparableError(ValueError):
    """The two releases cannot be compared at all (e.g. smoke against full)."""


# -- pairing records ---------------------------------------------------------------------------------
Key = tuple[str, str, float]


def _key(record: dict) -> Key:
    return (record["model"], record["method"], round(float(record["ratio"]), 6))


def key_text(key: Key) -> str:
    model, method, ratio = key
    return f"{model}/base" if method == "base" else f"{model}/{method}@{ratio:g}"


def _by_config(records: list[dict], key=_key) -> tuple[dict[Key, list[dict]], dict[Key, list[dict]]]:
    """(ok records, failed records) per configuration."""
    ok, failed = defaultdict(list), defaultdict(list)
    for r in records:
        (ok if r["status"] == "ok" else failed)[key(r)].append(r)
    return ok, failed


@dataclass
class Side:
    """One configuration's value of one metric on one side (mean over seeds)."""

    value: float | None
    unit: str = ""
    status: str = "unavailable"
    note: str = ""
    n: int = 0
    samples: set = field(default_factory=set)
    recorded: bool = False  # some record holds the metric (perhaps as unavailable)
    higher_is_better: bool | None = None  # as stored (used only for metrics outside the catalog)

    def text(self) -> str:
        if not self.recorded:
            return "not recorded"
        if self.value is None:
            return "n/a"
        return f"{self.value:.6g}{' (est.)' if self.status == 'estimated' else ''}"


def _side(records: list[dict], name: str) -> Side:
    vals, notes, statuses, unit, samples, hib, recorded = [], [], set(), "", set(), None, False
    for r in records:
        vd = r["metrics"].get(name)
        if vd is None:
            notes.append(f"{name} not recorded")
            continue
        recorded, unit, hib = True, vd["unit"], vd["higher_is_better"]
        if vd["status"] == "unavailable":
            notes.append(vd["note"] or "unavailable")
            continue
        vals.append(float(vd["value"]))
        statuses.add(vd["status"])
        if name in SAMPLE_SENSITIVE:
            samples.add(sample_count(r, name))
    if not vals:
        note = "; ".join(dict.fromkeys(notes)) or "no records"
        return Side(None, unit, "unavailable", note, 0, samples, recorded, hib)
    status = "estimated" if "estimated" in statuses else "measured"
    return Side(sum(vals) / len(vals), unit, status, "", len(vals), samples, recorded, hib)


def _changes(base: Side, cand: Side) -> tuple[float, float]:
    """candidate - baseline, absolute and relative to |baseline|."""
    b, c = base.value, cand.value
    frac = (c - b) / abs(b) if b != 0 else (0.0 if c == b else math.copysign(math.inf, c - b))
    return c - b, frac


def verdict(name: str, change: float, stored_direction: bool | None = None) -> str:
    """``"better"`` / ``"worse"`` for a change of metric ``name`` (by its direction), ``""`` for none."""
    hib = direction(name, stored_direction)
    if not change or hib is None:
        return ""
    return "better" if (change > 0) == hib else "worse"


# -- compare: every metric, no thresholds -------------------------------------------------------------
@dataclass
class Change:
    """One metric of one configuration from A to B; ``a``/``b`` is None when the configuration is missing."""

    config: str
    metric: str
    a: Side | None
    b: Side | None
    change: float | None = None
    change_frac: float | None = None
    verdict: str = ""

    @property
    def unit(self) -> str:
        return (self.b.unit if self.b and self.b.unit else "") or (self.a.unit if self.a else "")


def diff(a_records: list[dict], b_records: list[dict], metrics: list[str] | None = None) -> list[Change]:
    """B against A, configuration by configuration (seeds averaged), for ``metrics`` (default: all recorded).

    Two single records are compared with each other whatever their configurations.
    """
    a_records, b_records = [normalize_record(r) for r in a_records], [normalize_record(r) for r in b_records]
    single = len(a_records) == 1 and len(b_records) == 1
    key = (lambda r: ("", "", 0.0)) if single else _key
    a_ok, _ = _by_config(a_records, key)
    b_ok, _ = _by_config(b_records, key)
    out: list[Change] = []
    for k in sorted(set(a_ok) | set(b_ok)):
        ra, rb = a_ok.get(k), b_ok.get(k)
        config = key_text(_key((ra or rb)[0]))
        if ra is None or rb is None:
            out.append(
                Change(config, "*", None if ra is None else Side(None), None if rb is None else Side(None))
            )
            continue
        names = metrics or sorted({n for r in ra + rb for n in r["metrics"]})
        for name in names:
            sa, sb = _side(ra, name), _side(rb, name)
            c = Change(config, name, sa, sb)
            if sa.value is not None and sb.value is not None:
                c.change, c.change_frac = _changes(sa, sb)
                c.verdict = verdict(name, c.change, sb.higher_is_better)
            out.append(c)
    return out


# -- check: thresholds ---------------------------------------------------------------------------------
@dataclass
class Comparison:
    model: str
    method: str
    ratio: float
    metric: str
    outcome: Outcome
    reason: str
    baseline: float | None = None
    candidate: float | None = None
    unit: str = ""
    change: float | None = None
    change_frac: float | None = None
    limits: str = ""

    @property
    def config(self) -> str:
        return key_text((self.model, self.method, self.ratio))


@dataclass
class GateResult:
    comparisons: list[Comparison]
    warnings: list[str]
    strict: bool = False
    baseline_name: str = "baseline"
    candidate_name: str = "candidate"

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.outcome == "fail"]

    @property
    def not_compared(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.outcome == "not_compared"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        n = len(self.comparisons)
        verdict = "PASS" if self.passed else "FAIL"
        policy = (
            "strict: not-compared rows fail"
            if self.strict
            else "not-compared rows do not fail unless the metric is required"
        )
        return (
            f"{verdict}: {self.candidate_name} vs {self.baseline_name}: {n} check(s), "
            f"{n - len(self.failures) - len(self.not_compared)} passed, {len(self.failures)} failed, "
            f"{len(self.not_compared)} not compared ({policy})."
        )

    def table(self) -> str:
        """A text table of every comparison, then warnings and the summary line."""

        def num(v):
            return "n/a" if v is None else f"{v:.6g}"

        rows = []
        for c in self.comparisons:
            if c.change is None:
                change = "n/a"
            elif c.change_frac is not None:
                change = f"{c.change:+.4g} ({100 * c.change_frac:+.1f}%)"
            else:
                change = f"{c.change:+.4g}"
            outcome = c.outcome.upper().replace("_", " ")
            rows.append(
                (c.config, c.metric, num(c.baseline), num(c.candidate), change, c.limits, outcome, c.reason)
            )
        header = ("config", "metric", "baseline", "candidate", "change", "limit", "result", "reason")
        lines = [text_table(header, rows)]
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        lines += ["", self.summary()]
        return "\n".join(lines)

    def junit_xml(self) -> str:
        suite = ET.Element(
            "testsuite",
            {
                "name": f"ecodiff-bench gate: {self.candidate_name} vs {self.baseline_name}",
                "tests": str(len(self.comparisons)),
                "failures": str(len(self.failures)),
                "errors": "0",
                "skipped": str(len(self.not_compared)),
            },
        )
        props = ET.SubElement(suite, "properties")
        for k, v in (
            ("baseline", self.baseline_name),
            ("candidate", self.candidate_name),
            ("strict", str(self.strict).lower()),
        ):
            ET.SubElement(props, "property", {"name": k, "value": v})
        for c in self.comparisons:
            case = ET.SubElement(suite, "testcase", {"classname": c.config, "name": c.metric, "time": "0"})
            text = (
                f"baseline={c.baseline} candidate={c.candidate} unit={c.unit} change={c.change} "
                f"limits={c.limits}: {c.reason}"
            )
            if c.outcome == "fail":
                ET.SubElement(case, "failure", {"message": c.reason, "type": "regression"}).text = text
            elif c.outcome == "not_compared":
                ET.SubElement(case, "skipped", {"message": f"not compared: {c.reason}"})
        if self.warnings:
            ET.SubElement(suite, "system-out").text = "\n".join(self.warnings)
        root = ET.Element(
            "testsuites",
            {"tests": suite.get("tests"), "failures": suite.get("failures"), "skipped": suite.get("skipped")},
        )
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def write_junit(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.junit_xml())


def _compare(name: str, th: MetricThreshold, key: Key, base: Side, cand: Side, strict: bool) -> Comparison:
    model, method, ratio = key
    limits = ", ".join(f"{b}={v:g}" for b, v in th.bounds().items())
    comp = Comparison(
        model,
        method,
        ratio,
        name,
        "not_compared",
        "",
        base.value,
        cand.value,
        cand.unit or base.unit,
        limits=limits,
    )
    missing = []
    if base.value is None:
        missing.append(f"baseline: {base.note}")
    if cand.value is None:
        missing.append(f"candidate: {cand.note}")
    if not missing and name in SAMPLE_SENSITIVE and base.samples != cand.samples:

        def s(x):
            return "/".join("unknown" if v is None else str(v) for v in sorted(x, key=str))

        missing.append(f"sample counts differ (baseline {s(base.samples)}, candidate {s(cand.samples)})")
    if missing:
        comp.reason = "unavailable: " + "; ".join(missing)
        if th.required or strict:
            comp.outcome = "fail"
            comp.reason += " (required metric)" if th.required else " (strict)"
        return comp
    comp.change, comp.change_frac = _changes(base, cand)
    broken = []
    if th.max_increase is not None and comp.change > th.max_increase:
        broken.append(f"increase {comp.change:.4g} > {th.max_increase:g}")
    if th.max_decrease is not None and -comp.change > th.max_decrease:
        broken.append(f"decrease {-comp.change:.4g} > {th.max_decrease:g}")
    if th.max_increase_frac is not None and comp.change_frac > th.max_increase_frac:
        broken.append(f"increase {100 * comp.change_frac:.2f}% > {100 * th.max_increase_frac:g}%")
    if th.max_decrease_frac is not None and -comp.change_frac > th.max_decrease_frac:
        broken.append(f"decrease {100 * -comp.change_frac:.2f}% > {100 * th.max_decrease_frac:g}%")
    est = " (estimated values)" if "estimated" in (base.status, cand.status) else ""
    if broken:
        comp.outcome, comp.reason = "fail", "regression: " + "; ".join(broken) + est
    else:
        comp.outcome, comp.reason = "pass", "within limits" + est
    return comp


def _release_warnings(
    cand: list[dict], base: list[dict], cand_name: str, base_name: str, allow_smoke_mismatch: bool
) -> list[str]:
    smoke_c, smoke_b = {r["smoke"] for r in cand}, {r["smoke"] for r in base}
    warnings: list[str] = []
    if smoke_c != smoke_b or len(smoke_c) > 1:
        msg = (
            f"smoke flags differ: {cand_name} smoke={sorted(smoke_c)}, {base_name} smoke={sorted(smoke_b)}; "
            "smoke and full records are not comparable"
        )
        if not allow_smoke_mismatch:
            raise IncomparableError(msg)
        warnings.append(msg)
    elif smoke_c == {True}:
        warnings.append("both releases are smoke runs: the comparison checks the pipeline, not the benchmark")
    dev_c = {device_of(r) for r in cand if r["status"] == "ok"}
    dev_b = {device_of(r) for r in base if r["status"] == "ok"}
    if dev_c != dev_b:
        warnings.append(
            f"devices differ ({cand_name}: {', '.join(sorted(dev_c))}; {base_name}: "
            f"{', '.join(sorted(dev_b))}); latency, energy and memory changes may reflect hardware"
        )
    return warnings


def check(
    candidate_records: list[dict],
    baseline_records: list[dict],
    thresholds: Any = None,
    *,
    strict: bool = False,
    allow_smoke_mismatch: bool = False,
    baseline_name: str = "baseline",
    candidate_name: str = "candidate",
) -> GateResult:
    """Compare two releases metric by metric. ``thresholds``: :class:`Thresholds`, a plain mapping, or None
    for :data:`DEFAULT_THRESHOLDS`. Raises :class:`IncomparableError` for smoke vs full and empty sides."""
    th = default_thresholds() if thresholds is None else validate_thresholds(thresholds)
    if not candidate_records:
        raise IncomparableError(f"{candidate_name} has no records")
    if not baseline_records:
        raise IncomparableError(f"{baseline_name} has no records")
    candidate_records = [normalize_record(r) for r in candidate_records]
    baseline_records = [normalize_record(r) for r in baseline_records]
    warnings = _release_warnings(
        candidate_records, baseline_records, candidate_name, baseline_name, allow_smoke_mismatch
    )
    cand_ok, cand_failed = _by_config(candidate_records)
    base_ok, base_failed = _by_config(baseline_records)
    comps: list[Comparison] = []
    for key in sorted(set(cand_ok) | set(cand_failed) | set(base_ok) | set(base_failed)):
        model, method, ratio = key
        if key in cand_failed and key not in cand_ok:
            err = cand_failed[key][0]["error"] or "no error recorded"
            comps.append(Comparison(model, method, ratio, "run", "fail", f"candidate run failed: {err}"))
            continue
        if key not in cand_ok:
            why = (
                "baseline run failed"
                if key in base_failed and key not in base_ok
                else "configuration missing"
            )
            outcome: Outcome = "fail" if strict else "not_compared"
            comps.append(Comparison(model, method, ratio, "*", outcome, f"{why} in {candidate_name}"))
            continue
        if key not in base_ok:
            why = (
                "baseline run failed"
                if key in base_failed
                else f"no {baseline_name} record for this configuration"
            )
            outcome = "fail" if strict else "not_compared"
            comps.append(Comparison(model, method, ratio, "*", outcome, why))
            continue
        for name, t in th.items():
            comps.append(_compare(name, t, key, _side(base_ok[key], name), _side(cand_ok[key], name), strict))
    return GateResult(comps, warnings, strict, baseline_name, candidate_name)
