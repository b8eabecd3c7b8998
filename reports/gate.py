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

import difflib
import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from reports.analysis import device_of, sample_count

# Canonical metric names (CONTRACTS.md); thresholds on other names are refused with a suggestion.
KNOWN_METRICS: tuple[str, ...] = (
    "params", "params_prunable", "params_removed_frac", "units_removed_frac", "disk_bytes", "flops_per_step",
    "latency_image_s", "latency_step_s", "throughput_img_per_s", "cuda_peak_allocated_bytes",
    "cuda_peak_reserved_bytes", "nvml_memory_used_bytes", "peak_rss_bytes", "gpu_energy_image_j",
    "gpu_energy_image_net_j", "idle_power_w", "cpu_energy_image_j", "energy_image_j", "gco2e_per_1000_images",
    "fid", "frechet_distance", "clip_score", "ssim_vs_base", "psnr_vs_base", "recognisability",
    "pruning_energy_j", "pruning_time_s",
)
BOUNDS = ("max_increase", "max_decrease", "max_increase_frac", "max_decrease_frac")
SAMPLE_SENSITIVE = ("fid", "frechet_distance", "clip_score")

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fid": {"max_increase": 2.0},
    "clip_score": {"max_decrease": 0.5},
    "latency_image_s": {"max_increase_frac": 0.05},
    "energy_image_j": {"max_increase_frac": 0.05},
}

Outcome = Literal["pass", "fail", "not_compared"]


class IncomparableError(ValueError):
    """The two releases cannot be compared at all (e.g. smoke against full)."""


class MetricThreshold(BaseModel):
    """Allowed change of one metric from baseline to candidate; set at least one bound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_increase: float | None = Field(None, ge=0, description="candidate - baseline may be at most this")
    max_decrease: float | None = Field(None, ge=0, description="baseline - candidate may be at most this")
    max_increase_frac: float | None = Field(None, ge=0, description="(candidate - baseline) / |baseline| at most")
    max_decrease_frac: float | None = Field(None, ge=0, description="(baseline - candidate) / |baseline| at most")
    required: bool = Field(False, description="fail (instead of 'not compared') when the metric is unavailable")

    @model_validator(mode="after")
    def _one_bound(self) -> MetricThreshold:
        if all(getattr(self, b) is None for b in BOUNDS):
            raise ValueError(f"set at least one of {', '.join(BOUNDS)}")
        return self

    def bounds(self) -> dict[str, float]:
        return {b: getattr(self, b) for b in BOUNDS if getattr(self, b) is not None}


class Thresholds(RootModel[dict[str, MetricThreshold]]):
    """Mapping metric name -> :class:`MetricThreshold`. Reusable as a field type in the suite schema."""

    @field_validator("root")
    @classmethod
    def _known_metrics(cls, v: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
        for name in v:
            if name not in KNOWN_METRICS:
                close = difflib.get_close_matches(name, KNOWN_METRICS, n=1, cutoff=0.6)
                hint = f" Did you mean: {close[0]}?" if close else ""
                raise ValueError(f"unknown metric {name!r}.{hint} Known metrics: {', '.join(KNOWN_METRICS)}")
        return v

    def items(self):
        return self.root.items()

    def __len__(self) -> int:
        return len(self.root)


def default_thresholds() -> Thresholds:
    return Thresholds.model_validate(DEFAULT_THRESHOLDS)


def validate_thresholds(data: Any) -> Thresholds:
    """Validate a plain mapping (e.g. parsed YAML). Raises ``ValueError`` whose message names each bad path."""
    if isinstance(data, Thresholds):
        return data
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"] if p != "root") or "thresholds"
            lines.append(f"thresholds.{path}: {err['msg']} (got {err.get('input')!r})")
        raise ValueError("invalid gate thresholds:\n  " + "\n  ".join(lines)) from None


# -- comparison --------------------------------------------------------------------------------------
Key = tuple[str, str, float]


def _key(record: dict) -> Key:
    return (record["model"], record["method"], round(float(record.get("ratio", 0.0)), 6))


def key_text(key: Key) -> str:
    model, method, ratio = key
    return f"{model}/base" if method == "base" else f"{model}/{method}@{ratio:g}"


@dataclass
class Side:
    """One configuration's value of one metric on one side (mean over seeds)."""

    value: float | None
    unit: str = ""
    status: str = "unavailable"
    note: str = ""
    n: int = 0
    samples: set = field(default_factory=set)


def _side(records: list[dict], name: str) -> Side:
    vals, notes, statuses, unit, samples = [], [], set(), "", set()
    for r in records:
        vd = (r.get("metrics") or {}).get(name)
        if vd is None:
            notes.append(f"{name} not recorded")
            continue
        unit = vd.get("unit", unit)
        if vd.get("status") == "unavailable" or vd.get("value") is None:
            notes.append(vd.get("note") or "unavailable")
            continue
        vals.append(float(vd["value"]))
        statuses.add(vd.get("status", "measured"))
        if name in SAMPLE_SENSITIVE:
            samples.add(sample_count(r, name))
    if not vals:
        return Side(None, unit, "unavailable", "; ".join(dict.fromkeys(notes)) or "no records", 0, samples)
    status = "estimated" if "estimated" in statuses else "measured"
    return Side(sum(vals) / len(vals), unit, status, "", len(vals), samples)


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
        policy = ("strict: not-compared rows fail" if self.strict
                  else "not-compared rows do not fail unless the metric is required")
        return (f"{verdict}: {self.candidate_name} vs {self.baseline_name}: {n} check(s), "
                f"{n - len(self.failures) - len(self.not_compared)} passed, {len(self.failures)} failed, "
                f"{len(self.not_compared)} not compared ({policy}).")

    def table(self) -> str:
        """A fixed-width text table of every comparison, then warnings and the summary line."""
        header = ("config", "metric", "baseline", "candidate", "change", "limit", "result", "reason")
        rows = []
        for c in self.comparisons:
            def f(v):
                return "n/a" if v is None else f"{v:.6g}"

            if c.change is None:
                change = "n/a"
            elif c.change_frac is not None:
                change = f"{c.change:+.4g} ({100 * c.change_frac:+.1f}%)"
            else:
                change = f"{c.change:+.4g}"
            rows.append((c.config, c.metric, f(c.baseline), f(c.candidate), change, c.limits,
                         c.outcome.upper().replace("_", " "), c.reason))
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
        widths[-1] = min(widths[-1], 80)
        lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        lines += ["", self.summary()]
        return "\n".join(lines)

    def junit_xml(self) -> str:
        suite = ET.Element("testsuite", {
            "name": f"ecodiff-bench gate: {self.candidate_name} vs {self.baseline_name}",
            "tests": str(len(self.comparisons)), "failures": str(len(self.failures)), "errors": "0",
            "skipped": str(len(self.not_compared)),
        })
        props = ET.SubElement(suite, "properties")
        for k, v in (("baseline", self.baseline_name), ("candidate", self.candidate_name),
                     ("strict", str(self.strict).lower())):
            ET.SubElement(props, "property", {"name": k, "value": v})
        for c in self.comparisons:
            case = ET.SubElement(suite, "testcase", {"classname": c.config, "name": c.metric, "time": "0"})
            text = (f"baseline={c.baseline} candidate={c.candidate} unit={c.unit} change={c.change} "
                    f"limits={c.limits}: {c.reason}")
            if c.outcome == "fail":
                ET.SubElement(case, "failure", {"message": c.reason, "type": "regression"}).text = text
            elif c.outcome == "not_compared":
                ET.SubElement(case, "skipped", {"message": f"not compared: {c.reason}"})
        if self.warnings:
            ET.SubElement(suite, "system-out").text = "\n".join(self.warnings)
        root = ET.Element("testsuites", {"tests": suite.get("tests"), "failures": suite.get("failures"),
                                         "skipped": suite.get("skipped")})
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def write_junit(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.junit_xml(), encoding="utf-8")
        return path


def _compare(name: str, th: MetricThreshold, key: Key, base: Side, cand: Side, strict: bool) -> Comparison:
    model, method, ratio = key
    limits = ", ".join(f"{b}={v:g}" for b, v in th.bounds().items())
    comp = Comparison(model, method, ratio, name, "not_compared", "", base.value, cand.value,
                      cand.unit or base.unit, limits=limits)
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
    b, c = base.value, cand.value
    comp.change = c - b
    comp.change_frac = (c - b) / abs(b) if b != 0 else (0.0 if c == b else math.copysign(math.inf, c - b))
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


def check(candidate_records: list[dict], baseline_records: list[dict], thresholds: Any = None, *,
          strict: bool = False, allow_smoke_mismatch: bool = False, baseline_name: str = "baseline",
          candidate_name: str = "candidate") -> GateResult:
    """Compare two releases metric by metric. ``thresholds``: :class:`Thresholds`, a plain mapping, or None
    for :data:`DEFAULT_THRESHOLDS`. Raises :class:`IncomparableError` for smoke vs full and empty sides."""
    th = default_thresholds() if thresholds is None else validate_thresholds(thresholds)
    if not candidate_records:
        raise IncomparableError(f"{candidate_name} has no records")
    if not baseline_records:
        raise IncomparableError(f"{baseline_name} has no records")
    smoke_c = {bool(r.get("smoke")) for r in candidate_records}
    smoke_b = {bool(r.get("smoke")) for r in baseline_records}
    warnings: list[str] = []
    if smoke_c != smoke_b or len(smoke_c) > 1:
        msg = (f"smoke flags differ: {candidate_name} smoke={sorted(smoke_c)}, {baseline_name} smoke={sorted(smoke_b)}; "
               "smoke and full records are not comparable")
        if not allow_smoke_mismatch:
            raise IncomparableError(msg)
        warnings.append(msg)
    elif smoke_c == {True}:
        warnings.append("both releases are smoke runs: the comparison checks the pipeline, not the benchmark")
    dev_c = {device_of(r) for r in candidate_records if r.get("status") == "ok"}
    dev_b = {device_of(r) for r in baseline_records if r.get("status") == "ok"}
    if dev_c != dev_b:
        warnings.append(f"devices differ ({candidate_name}: {', '.join(sorted(dev_c))}; {baseline_name}: "
                        f"{', '.join(sorted(dev_b))}); latency, energy and memory changes may reflect hardware")

    def groups(records):
        ok, failed = defaultdict(list), defaultdict(list)
        for r in records:
            (ok if r.get("status") == "ok" else failed)[_key(r)].append(r)
        return ok, failed

    cand_ok, cand_failed = groups(candidate_records)
    base_ok, base_failed = groups(baseline_records)
    comps: list[Comparison] = []
    for key in sorted(set(cand_ok) | set(cand_failed) | set(base_ok) | set(base_failed)):
        model, method, ratio = key
        if key in cand_failed and key not in cand_ok:
            err = cand_failed[key][0].get("error") or "no error recorded"
            comps.append(Comparison(model, method, ratio, "run", "fail", f"candidate run failed: {err}"))
            continue
        if key not in cand_ok:
            why = "baseline run failed" if key in base_failed and key not in base_ok else "configuration missing"
            outcome: Outcome = "fail" if strict else "not_compared"
            comps.append(Comparison(model, method, ratio, "*", outcome, f"{why} in {candidate_name}"))
            continue
        if key not in base_ok:
            why = ("baseline run failed" if key in base_failed else f"no {baseline_name} record for this configuration")
            outcome = "fail" if strict else "not_compared"
            comps.append(Comparison(model, method, ratio, "*", outcome, why))
            continue
        for name, t in th.items():
            comps.append(_compare(name, t, key, _side(base_ok[key], name), _side(cand_ok[key], name), strict))
    return GateResult(comps, warnings, strict, baseline_name, candidate_name)
