"""Regression gate: compare a candidate release of pruned models against a baseline release.

Records are matched by (model, method, ratio); several seeds of one configuration are averaged.
Each threshold bounds the change of one metric from baseline to candidate, in the direction that is a
regression for it::

    frechet_distance: {max_increase_frac: 0.5}   # (candidate - baseline) / |baseline| <= 50 %
    clip_score:       {max_decrease: 0.5}        # baseline - candidate <= 0.5
    latency_image_s:  {max_increase_frac: 0.10}  # compared through the paired ratio, see below

Which thresholds: those given (``check --thresholds``), else the ones the baseline was run with (the
suite's ``regression.thresholds``, kept in every record's provenance), else :data:`DEFAULT_THRESHOLDS`;
the result says which. Only metrics that both releases recorded are compared: a threshold on a metric
neither side has is skipped (and listed in the warnings), one that only one side has is "not compared".

Noise is never a regression. A value that carries a confidence interval (``ci_low``/``ci_high`` in its
details) fails only when the whole interval of the change lies beyond the bound (the two sides' interval
half-widths combined in quadrature, on the log scale for relative bounds). Latency and energy of a pruned
configuration are compared through their paired ratios to the base of the same run
(``latency_ratio_vs_base``, ``energy_ratio_vs_base``): two runs are timed hours apart on machines whose
load differs, while each ratio was measured in interleaved pairs. The base configurations' own timings
are therefore "not compared" (no pairing across runs); their quality metrics are.

A threshold may also set an absolute ``window: [low, high]`` (as MLPerf's accuracy window): every candidate
configuration's own value of the metric must lie inside it, baseline or not (a row of kind "window"). A
value with an interval fails only when the whole interval lies outside; a metric recorded only for pruned
models is not looked for in the bases.

Policy for missing data, stated in every result: a metric that is unavailable on either side, a
configuration without a counterpart, or a quality metric computed from different sample counts is
"not compared". Not-compared rows are listed and counted but do not fail the gate, unless the metric's
threshold says ``required: true`` or the check runs with ``strict=True``. A candidate record whose run
failed is a failure. Smoke and full releases are never compared (``IncomparableError``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ecodiff_bench.core.metrics import METRICS, SAMPLE_SENSITIVE, direction
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.stats import interval_of
from ecodiff_bench.core.thresholds import (
    BOUNDS,
    DEFAULT_THRESHOLDS,
    MetricThreshold,
    Thresholds,
    default_thresholds,
    validate_thresholds,
)
from reports.gate_result import Comparison, GateResult, Outcome, key_text
from reports.records import WORLD_SENSITIVE, device_of, sample_count, world_size_of

__all__ = [
    "BOUNDS",
    "DEFAULT_THRESHOLDS",
    "PAIRED_RATIOS",
    "Change",
    "Comparison",
    "GateResult",
    "IncomparableError",
    "MetricThreshold",
    "Thresholds",
    "check",
    "default_thresholds",
    "configurations",
    "diff",
    "gated_value",
    "key_text",
    "recorded_thresholds",
    "validate_thresholds",
    "verdict",
    "windows",
]

#: Metrics of a pruned configuration that the gate compares through a paired ratio to the run's base.
PAIRED_RATIOS = {
    "latency_image_s": "latency_ratio_vs_base",
    "latency_step_s": "latency_ratio_vs_base",
    "energy_image_j": "energy_ratio_vs_base",
    "gco2e_per_1000_images": "energy_ratio_vs_base",
}
#: Their counterparts that are inverses of the ratio (more images per second when the ratio drops).
_TIMINGS = (
    *PAIRED_RATIOS,
    "throughput_img_per_s",
    "gpu_energy_image_j",
    "gpu_energy_image_net_j",
    "cpu_energy_image_j",
)


class IncomparableError(ValueError):
    """The two releases cannot be compared at all (e.g. smoke against full)."""


# -- pairing records ---------------------------------------------------------------------------------
Key = tuple[str, str, float]


def _key(record: dict) -> Key:
    return (record["model"], record["method"], round(float(record["ratio"]), 6))


def _by_config(records: list[dict], key=_key) -> tuple[dict[Key, list[dict]], dict[Key, list[dict]]]:
    """(ok records, failed records) per configuration."""
    ok, failed = defaultdict(list), defaultdict(list)
    for r in records:
        (ok if r["status"] == "ok" else failed)[key(r)].append(r)
    return ok, failed


def _key_of(c: Comparison) -> Key:
    return c.model, c.method, round(float(c.ratio), 6)


def configurations(records: list[dict]) -> dict[Key, list[dict]]:
    """The successful records of each configuration (model, method, ratio)."""
    return dict(_by_config([normalize_record(r) for r in records])[0])


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
    interval: tuple[float, float] | None = None  # confidence interval of value (mean over seeds)

    def text(self) -> str:
        if not self.recorded:
            return "not recorded"
        if self.value is None:
            return "n/a"
        return f"{self.value:.6g}{' (est.)' if self.status == 'estimated' else ''}"


def _side(records: list[dict], name: str) -> Side:
    vals, notes, statuses, unit, samples, hib, recorded = [], [], set(), "", set(), None, False
    intervals = []
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
        intervals.append(interval_of(vd["details"]))
        statuses.add(vd["status"])
        if name in SAMPLE_SENSITIVE:
            samples.add(sample_count(r, name))
    if not vals:
        note = "; ".join(dict.fromkeys(notes)) or "no records"
        return Side(None, unit, "unavailable", note, 0, samples, recorded, hib)
    status = "estimated" if "estimated" in statuses else "measured"
    interval = None
    if all(iv is not None for iv in intervals):  # the mean of the seeds' bounds (an approximation)
        interval = (sum(iv[0] for iv in intervals) / len(vals), sum(iv[1] for iv in intervals) / len(vals))
    return Side(sum(vals) / len(vals), unit, status, "", len(vals), samples, recorded, hib, interval)


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

    def to_dict(self) -> dict:
        def side(x: Side | None):
            if x is None:
                return None
            return {"value": x.value, "status": x.status, "note": x.note, "n": x.n, "interval": x.interval}

        return {
            "config": self.config,
            "metric": self.metric,
            "unit": self.unit,
            "a": side(self.a),
            "b": side(self.b),
            "change": self.change,
            "change_frac": self.change_frac,
            "verdict": self.verdict,
        }


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
def _change_interval(base: Side, cand: Side, relative: bool) -> tuple[float, float] | None:
    """The interval of the change (relative or absolute), the sides' half-widths added in quadrature."""
    if base.interval is None or cand.interval is None:
        return None
    (b_lo, b_hi), (c_lo, c_hi) = base.interval, cand.interval
    if relative:
        if min(b_lo, c_lo, base.value, cand.value) <= 0:
            return None
        half = math.hypot(math.log(b_hi / b_lo) / 2, math.log(c_hi / c_lo) / 2)
        centre = math.log(cand.value / base.value)
        return math.exp(centre - half) - 1, math.exp(centre + half) - 1
    half = math.hypot((b_hi - b_lo) / 2, (c_hi - c_lo) / 2)
    change = cand.value - base.value
    return change - half, change + half


def _broken_bounds(th: MetricThreshold, comp: Comparison, base: Side, cand: Side) -> list[str]:
    """The bounds the change breaks; with intervals, only when the whole interval lies beyond a bound."""
    broken = []
    rel, ab = _change_interval(base, cand, True), _change_interval(base, cand, False)
    comp.change_interval = (
        rel if (th.max_increase_frac is not None or th.max_decrease_frac is not None) else ab
    )
    lo, hi = ab if ab else (comp.change, comp.change)
    rlo, rhi = rel if rel else (comp.change_frac, comp.change_frac)
    sure = " (whole interval)" if (ab or rel) else ""
    if th.max_increase is not None and lo > th.max_increase:
        broken.append(f"increase {comp.change:.4g} > {th.max_increase:g}{sure}")
    if th.max_decrease is not None and -hi > th.max_decrease:
        broken.append(f"decrease {-comp.change:.4g} > {th.max_decrease:g}{sure}")
    if th.max_increase_frac is not None and rlo > th.max_increase_frac:
        broken.append(f"increase {100 * comp.change_frac:.2f}% > {100 * th.max_increase_frac:g}%{sure}")
    if th.max_decrease_frac is not None and -rhi > th.max_decrease_frac:
        broken.append(f"decrease {100 * -comp.change_frac:.2f}% > {100 * th.max_decrease_frac:g}%{sure}")
    return broken


def _compare(
    name: str, th: MetricThreshold, key: Key, base: Side, cand: Side, strict: bool, compared: str = ""
) -> Comparison:
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
        compared=compared,
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
    broken = _broken_bounds(th, comp, base, cand)
    est = " (estimated values)" if "estimated" in (base.status, cand.status) else ""
    paired = f"; paired ratio to each run's base ({compared})" if compared else ""
    if broken:
        comp.outcome, comp.reason = "fail", "regression: " + "; ".join(broken) + est + paired
    elif comp.change_interval is not None:
        comp.outcome, comp.reason = (
            "pass",
            "within limits, or the change's interval reaches them" + est + paired,
        )
    else:
        comp.outcome, comp.reason = "pass", "within limits" + est + paired
    return comp


def _recorded(records: list[dict], name: str) -> bool:
    return any(name in r["metrics"] for r in records)


def _check_metric(name: str, th: MetricThreshold, key: Key, base: list[dict], cand: list[dict], strict: bool):
    """The comparison of one threshold's metric in one configuration, or None when neither has it."""
    model, method, ratio = key
    if method != "base" and name in PAIRED_RATIOS and _recorded(base + cand, PAIRED_RATIOS[name]):
        ratio_name = PAIRED_RATIOS[name]
        return _compare(name, th, key, _side(base, ratio_name), _side(cand, ratio_name), strict, ratio_name)
    in_base, in_cand = _recorded(base, name), _recorded(cand, name)
    if not in_base and not in_cand:
        return (
            None if not th.required else _compare(name, th, key, _side(base, name), _side(cand, name), strict)
        )
    if name in _TIMINGS:
        outcome: Outcome = "fail" if th.required and strict else "not_compared"
        why = (
            "timed in two separate runs, not paired (machine load differs between runs); "
            "pruned configurations are gated on their paired ratio to the base"
        )
        return Comparison(
            model, method, ratio, name, outcome, why, _side(base, name).value, _side(cand, name).value
        )
    return _compare(name, th, key, _side(base, name), _side(cand, name), strict)


def gated_value(name: str, key: Key, records: list[dict]) -> tuple[str, Side] | None:
    """What the gate compares for threshold metric ``name`` in one configuration's records: (the metric
    compared, its side), e.g. a pruned model's paired latency ratio for ``latency_image_s``; None when the
    gate compares nothing across releases (a base's own timings, or a metric not recorded)."""
    if key[1] != "base" and name in PAIRED_RATIOS and _recorded(records, PAIRED_RATIOS[name]):
        return PAIRED_RATIOS[name], _side(records, PAIRED_RATIOS[name])
    if name in _TIMINGS or not _recorded(records, name):
        return None
    return name, _side(records, name)


# -- windows: absolute ranges of a metric -----------------------------------------------------------
def _check_window(name: str, th: MetricThreshold, key: Key, cand: list[dict], strict: bool):
    """The window row of one metric in one candidate configuration, or None when it is not looked for."""
    model, method, ratio = key
    if method == "base" and name in METRICS and METRICS.get(name).stage == "pruned":
        return None
    if not _recorded(cand, name) and not th.required:
        return None
    low, high = th.window
    side = _side(cand, name)
    comp = Comparison(
        model, method, ratio, name, "not_compared", "", None, side.value, side.unit,
        limits=f"window=[{low:g}, {high:g}]", kind="window",
    )  # fmt: skip
    if side.value is None:
        comp.reason = f"unavailable: {side.note}"
        if th.required or strict:
            comp.outcome = "fail"
            comp.reason += " (required metric)" if th.required else " (strict)"
        return comp
    lo, hi = side.interval or (side.value, side.value)
    sure = " (whole interval)" if side.interval else ""
    est = " (estimated value)" if side.status == "estimated" else ""
    if hi < low or lo > high:
        where = "below" if hi < low else "above"
        comp.outcome = "fail"
        comp.reason = f"outside the window: {side.value:.4g} {where} [{low:g}, {high:g}]{sure}{est}"
    elif low <= side.value <= high:
        comp.outcome, comp.reason = "pass", f"inside the window [{low:g}, {high:g}]{est}"
    else:
        comp.outcome = "pass"
        comp.reason = (
            f"{side.value:.4g} outside [{low:g}, {high:g}], but its interval reaches the window{est}"
        )
    return comp


def windows(candidate_records: list[dict], thresholds: Any, *, strict: bool = False) -> list[Comparison]:
    """The window rows of a candidate alone (a first release, which has no baseline to compare with)."""
    th = validate_thresholds(thresholds)
    out = []
    for key, recs in sorted(configurations(candidate_records).items()):
        for name, t in th.items():
            if t.window is not None and (comp := _check_window(name, t, key, recs, strict)) is not None:
                out.append(comp)
    return out


def recorded_thresholds(records: list[dict]) -> tuple[Thresholds | None, str]:
    """The regression thresholds the records' suite was run with (kept in provenance.thresholds)."""
    found = {}
    for r in records:
        th = r["provenance"].get("thresholds")
        if isinstance(th, dict):
            found[json.dumps(th, sort_keys=True)] = (th, r["suite"])
    if not found:
        return None, ""
    (th, suite), *others = sorted(found.values(), key=lambda x: x[1])
    source = f"the baseline's suite '{suite}'"
    if others:
        source += f" (the baseline's records hold {len(found)} different sets; using the first)"
    return validate_thresholds(th) if th else None, source


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
    differ = (
        (device_of, "devices", "latency, energy and memory changes may reflect hardware"),
        (world_size_of, "numbers of processes", f"{', '.join(WORLD_SENSITIVE)} is not compared"),
    )
    for of, what, consequence in differ:
        c, b = ({of(r) for r in side if r["status"] == "ok"} for side in (cand, base))
        if c != b:
            shown_c, shown_b = (", ".join(map(str, sorted(x))) for x in (c, b))
            warnings.append(f"{what} differ ({cand_name}: {shown_c}; {base_name}: {shown_b}); {consequence}")
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
    """Compare two releases metric by metric (module doc). ``thresholds``: :class:`Thresholds` or a plain
    mapping; None: the baseline's recorded thresholds, else :data:`DEFAULT_THRESHOLDS`. Raises
    :class:`IncomparableError` for smoke vs full and empty sides."""
    if not candidate_records:
        raise IncomparableError(f"{candidate_name} has no records")
    if not baseline_records:
        raise IncomparableError(f"{baseline_name} has no records")
    candidate_records = [normalize_record(r) for r in candidate_records]
    baseline_records = [normalize_record(r) for r in baseline_records]
    if thresholds is not None:
        th, source = validate_thresholds(thresholds), "given"
    else:
        th, source = recorded_thresholds(baseline_records)
        if th is None:
            th, source = default_thresholds(), "built-in defaults (the baseline recorded none)"
    warnings = _release_warnings(
        candidate_records, baseline_records, candidate_name, baseline_name, allow_smoke_mismatch
    )
    cand_ok, cand_failed = _by_config(candidate_records)
    base_ok, base_failed = _by_config(baseline_records)
    comps: list[Comparison] = []
    window_rows: list[Comparison] = []
    skipped: set[str] = set()
    for key in sorted(set(cand_ok) | set(cand_failed) | set(base_ok) | set(base_failed)):
        model, method, ratio = key
        if key in cand_ok:
            window_rows += [
                comp
                for name, t in th.items()
                if t.window is not None and (comp := _check_window(name, t, key, cand_ok[key], strict))
            ]
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
        sizes = [sorted({world_size_of(r) for r in side[key]}) for side in (cand_ok, base_ok)]
        for name, t in th.items():
            if not t.bounds():
                continue  # a window only, checked above
            if name in WORLD_SENSITIVE and sizes[0] != sizes[1]:
                why = f"measured by {sizes[0]} vs {sizes[1]} processes: throughput adds up over processes"
                comps.append(Comparison(model, method, ratio, name, "not_compared", why))
                continue
            comp = _check_metric(name, t, key, base_ok[key], cand_ok[key], strict)
            if comp is None:
                skipped.add(name)
            else:
                comps.append(comp)
    never = sorted(skipped - {c.metric for c in comps})
    comps = sorted(comps + window_rows, key=lambda c: (_key_of(c), c.kind == "window"))  # stable
    if never:
        warnings.append(f"thresholds on metrics neither release recorded were skipped: {', '.join(never)}")
    dump = {k: v.model_dump(mode="json", exclude_none=True) for k, v in th.items()}
    return GateResult(comps, warnings, strict, baseline_name, candidate_name, source, dump)
