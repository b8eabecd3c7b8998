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
from typing import Any

from ecodiff_bench.core.metrics import METRICS, SAMPLE_SENSITIVE
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.thresholds import (
    BOUNDS,
    DEFAULT_THRESHOLDS,
    MetricThreshold,
    Thresholds,
    default_thresholds,
    validate_thresholds,
)
from reports.compare import (
    ByConfig,
    Change,
    Key,
    Side,
    by_config,
    changes,
    configurations,
    diff,
    side_of,
    verdict,
)
from reports.gate_result import Comparison, GateResult, Outcome, key_text
from reports.records import WORLD_SENSITIVE, device_of, world_size_of

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


def _key_of(row: Comparison) -> Key:
    return row.model, row.method, round(float(row.ratio), 6)


# -- check: thresholds ---------------------------------------------------------------------------------
def _change_interval(baseline: Side, candidate: Side, relative: bool) -> tuple[float, float] | None:
    """The interval of the change (relative or absolute), the sides' half-widths added in quadrature."""
    if baseline.interval is None or candidate.interval is None:
        return None
    (base_low, base_high), (cand_low, cand_high) = baseline.interval, candidate.interval
    if relative:
        if min(base_low, cand_low, baseline.value, candidate.value) <= 0:
            return None
        half = math.hypot(math.log(base_high / base_low) / 2, math.log(cand_high / cand_low) / 2)
        centre = math.log(candidate.value / baseline.value)
        return math.exp(centre - half) - 1, math.exp(centre + half) - 1
    half = math.hypot((base_high - base_low) / 2, (cand_high - cand_low) / 2)
    change = candidate.value - baseline.value
    return change - half, change + half


def _broken_bounds(threshold: MetricThreshold, row: Comparison, baseline: Side, candidate: Side) -> list[str]:
    """The bounds the change breaks; with intervals, only when the whole interval lies beyond a bound."""
    broken = []
    relative = _change_interval(baseline, candidate, True)
    absolute = _change_interval(baseline, candidate, False)
    bounds_relative = threshold.max_increase_frac is not None or threshold.max_decrease_frac is not None
    row.change_interval = relative if bounds_relative else absolute
    low, high = absolute if absolute else (row.change, row.change)
    rel_low, rel_high = relative if relative else (row.change_frac, row.change_frac)
    sure = " (whole interval)" if (absolute or relative) else ""
    if threshold.max_increase is not None and low > threshold.max_increase:
        broken.append(f"increase {row.change:.4g} > {threshold.max_increase:g}{sure}")
    if threshold.max_decrease is not None and -high > threshold.max_decrease:
        broken.append(f"decrease {-row.change:.4g} > {threshold.max_decrease:g}{sure}")
    if threshold.max_increase_frac is not None and rel_low > threshold.max_increase_frac:
        broken.append(f"increase {100 * row.change_frac:.2f}% > {100 * threshold.max_increase_frac:g}%{sure}")
    if threshold.max_decrease_frac is not None and -rel_high > threshold.max_decrease_frac:
        broken.append(
            f"decrease {100 * -row.change_frac:.2f}% > {100 * threshold.max_decrease_frac:g}%{sure}"
        )
    return broken


def _missing(row: Comparison, threshold: MetricThreshold, strict: bool, why: str) -> Comparison:
    """``row`` not compared for ``why``; a failure when the metric is required or the check strict."""
    row.reason = f"unavailable: {why}"
    if threshold.required or strict:
        row.outcome = "fail"
        row.reason += " (required metric)" if threshold.required else " (strict)"
    return row


def _sample_counts(counts: set) -> str:
    return "/".join("unknown" if n is None else str(n) for n in sorted(counts, key=str))


def _compare(
    name: str,
    threshold: MetricThreshold,
    key: Key,
    baseline: Side,
    candidate: Side,
    strict: bool,
    compared: str = "",
) -> Comparison:
    """The change of one metric in one configuration against the threshold's bounds."""
    model, method, ratio = key
    limits = ", ".join(f"{bound}={limit:g}" for bound, limit in threshold.bounds().items())
    row = Comparison(model, method, ratio, name, "not_compared", "", baseline.value, candidate.value,
                     candidate.unit or baseline.unit, limits=limits, compared=compared)  # fmt: skip
    missing = []
    if baseline.value is None:
        missing.append(f"baseline: {baseline.note}")
    if candidate.value is None:
        missing.append(f"candidate: {candidate.note}")
    if not missing and name in SAMPLE_SENSITIVE and baseline.samples != candidate.samples:
        counts = f"baseline {_sample_counts(baseline.samples)}, candidate {_sample_counts(candidate.samples)}"
        missing.append(f"sample counts differ ({counts})")
    if missing:
        return _missing(row, threshold, strict, "; ".join(missing))
    row.change, row.change_frac = changes(baseline, candidate)
    broken = _broken_bounds(threshold, row, baseline, candidate)
    estimated = " (estimated values)" if "estimated" in (baseline.status, candidate.status) else ""
    paired = f"; paired ratio to each run's base ({compared})" if compared else ""
    if broken:
        row.outcome, row.reason = "fail", "regression: " + "; ".join(broken) + estimated + paired
    elif row.change_interval is not None:
        row.outcome = "pass"
        row.reason = "within limits, or the change's interval reaches them" + estimated + paired
    else:
        row.outcome, row.reason = "pass", "within limits" + estimated + paired
    return row


def _recorded(records: list[dict], name: str) -> bool:
    return any(name in r["metrics"] for r in records)


def _check_metric(
    name: str, threshold: MetricThreshold, key: Key, baseline: list[dict], candidate: list[dict], strict: bool
):
    """The comparison of one threshold's metric in one configuration, or None when neither has it."""
    model, method, ratio = key
    if method != "base" and name in PAIRED_RATIOS and _recorded(baseline + candidate, PAIRED_RATIOS[name]):
        ratio_name = PAIRED_RATIOS[name]
        sides = side_of(baseline, ratio_name), side_of(candidate, ratio_name)
        return _compare(name, threshold, key, *sides, strict, ratio_name)
    sides = side_of(baseline, name), side_of(candidate, name)
    if not _recorded(baseline, name) and not _recorded(candidate, name):
        return _compare(name, threshold, key, *sides, strict) if threshold.required else None
    if name in _TIMINGS:
        outcome: Outcome = "fail" if threshold.required and strict else "not_compared"
        why = (
            "timed in two separate runs, not paired (machine load differs between runs); "
            "pruned configurations are gated on their paired ratio to the base"
        )
        return Comparison(model, method, ratio, name, outcome, why, sides[0].value, sides[1].value)
    return _compare(name, threshold, key, *sides, strict)


def gated_value(name: str, key: Key, records: list[dict]) -> tuple[str, Side] | None:
    """What the gate compares for threshold metric ``name`` in one configuration's records: (the metric
    compared, its side), e.g. a pruned model's paired latency ratio for ``latency_image_s``; None when the
    gate compares nothing across releases (a base's own timings, or a metric not recorded)."""
    if key[1] != "base" and name in PAIRED_RATIOS and _recorded(records, PAIRED_RATIOS[name]):
        return PAIRED_RATIOS[name], side_of(records, PAIRED_RATIOS[name])
    if name in _TIMINGS or not _recorded(records, name):
        return None
    return name, side_of(records, name)


# -- windows: absolute ranges of a metric -----------------------------------------------------------
def _check_window(name: str, threshold: MetricThreshold, key: Key, candidate: list[dict], strict: bool):
    """The window row of one metric in one candidate configuration, or None when it is not looked for."""
    model, method, ratio = key
    if method == "base" and name in METRICS and METRICS.get(name).stage == "pruned":
        return None
    if not _recorded(candidate, name) and not threshold.required:
        return None
    low, high = threshold.window
    side = side_of(candidate, name)
    row = Comparison(
        model, method, ratio, name, "not_compared", "", None, side.value, side.unit,
        limits=f"window=[{low:g}, {high:g}]", kind="window",
    )  # fmt: skip
    if side.value is None:
        return _missing(row, threshold, strict, side.note)
    value_low, value_high = side.interval or (side.value, side.value)
    sure = " (whole interval)" if side.interval else ""
    estimated = " (estimated value)" if side.status == "estimated" else ""
    if value_high < low or value_low > high:
        where = "below" if value_high < low else "above"
        row.outcome = "fail"
        row.reason = f"outside the window: {side.value:.4g} {where} [{low:g}, {high:g}]{sure}{estimated}"
    elif low <= side.value <= high:
        row.outcome, row.reason = "pass", f"inside the window [{low:g}, {high:g}]{estimated}"
    else:
        row.outcome = "pass"
        row.reason = (
            f"{side.value:.4g} outside [{low:g}, {high:g}], but its interval reaches the window{estimated}"
        )
    return row


def _window_rows(key: Key, thresholds: Thresholds, records: list[dict], strict: bool) -> list[Comparison]:
    """The window rows of one candidate configuration, one per threshold that sets a window."""
    rows = []
    for name, threshold in thresholds.items():
        if threshold.window is not None and (row := _check_window(name, threshold, key, records, strict)):
            rows.append(row)
    return rows


def windows(candidate_records: list[dict], thresholds: Any, *, strict: bool = False) -> list[Comparison]:
    """The window rows of a candidate alone (a first release, which has no baseline to compare with)."""
    validated = validate_thresholds(thresholds)
    return [
        row
        for key, records in sorted(configurations(candidate_records).items())
        for row in _window_rows(key, validated, records, strict)
    ]


def recorded_thresholds(records: list[dict]) -> tuple[Thresholds | None, str]:
    """The regression thresholds the records' suite was run with (kept in provenance.thresholds)."""
    found = {}
    for record in records:
        recorded = record["provenance"].get("thresholds")
        if isinstance(recorded, dict):
            found[json.dumps(recorded, sort_keys=True)] = (recorded, record["suite"])
    if not found:
        return None, ""
    (first, suite), *others = sorted(found.values(), key=lambda pair: pair[1])
    source = f"the baseline's suite '{suite}'"
    if others:
        source += f" (the baseline's records hold {len(found)} different sets; using the first)"
    return validate_thresholds(first) if first else None, source


def _release_warnings(
    candidate: list[dict],
    baseline: list[dict],
    candidate_name: str,
    baseline_name: str,
    allow_smoke_mismatch: bool,
) -> list[str]:
    """What makes the two releases less comparable (raises for smoke against full, unless allowed)."""
    smoke = [sorted({r["smoke"] for r in side}) for side in (candidate, baseline)]
    warnings: list[str] = []
    if smoke[0] != smoke[1] or len(smoke[0]) > 1:
        message = (
            f"smoke flags differ: {candidate_name} smoke={smoke[0]}, {baseline_name} smoke={smoke[1]}; "
            "smoke and full records are not comparable"
        )
        if not allow_smoke_mismatch:
            raise IncomparableError(message)
        warnings.append(message)
    elif smoke[0] == [True]:
        warnings.append("both releases are smoke runs: the comparison checks the pipeline, not the benchmark")
    differ = (
        (device_of, "devices", "latency, energy and memory changes may reflect hardware"),
        (world_size_of, "numbers of processes", f"{', '.join(WORLD_SENSITIVE)} is not compared"),
    )
    for of, what, consequence in differ:
        in_candidate, in_baseline = (
            {of(r) for r in side if r["status"] == "ok"} for side in (candidate, baseline)
        )
        if in_candidate != in_baseline:
            shown = [", ".join(map(str, sorted(values))) for values in (in_candidate, in_baseline)]
            warnings.append(
                f"{what} differ ({candidate_name}: {shown[0]}; {baseline_name}: {shown[1]}); {consequence}"
            )
    return warnings


def _thresholds_for(thresholds: Any, baseline_records: list[dict]) -> tuple[Thresholds, str]:
    """The thresholds a check uses and where they come from: given, the baseline's, or the defaults."""
    if thresholds is not None:
        return validate_thresholds(thresholds), "given"
    recorded, source = recorded_thresholds(baseline_records)
    if recorded is None:
        return default_thresholds(), "built-in defaults (the baseline recorded none)"
    return recorded, source


def _unmatched(key: Key, candidate: ByConfig, baseline: ByConfig, names: tuple[str, str], strict: bool):
    """The one row of a configuration that a side lacks (its run failed, or it is missing), else None."""
    (candidate_ok, candidate_failed), (baseline_ok, baseline_failed) = candidate, baseline
    candidate_name, baseline_name = names
    model, method, ratio = key
    outcome: Outcome = "fail" if strict else "not_compared"
    if key in candidate_failed and key not in candidate_ok:
        error = candidate_failed[key][0]["error"] or "no error recorded"
        return Comparison(model, method, ratio, "run", "fail", f"candidate run failed: {error}")
    if key not in candidate_ok:
        why = (
            "baseline run failed"
            if key in baseline_failed and key not in baseline_ok
            else "configuration missing"
        )
        return Comparison(model, method, ratio, "*", outcome, f"{why} in {candidate_name}")
    if key not in baseline_ok:
        why = (
            "baseline run failed"
            if key in baseline_failed
            else f"no {baseline_name} record for this configuration"
        )
        return Comparison(model, method, ratio, "*", outcome, why)
    return None


def _compare_configuration(
    key: Key, thresholds: Thresholds, baseline: list[dict], candidate: list[dict], strict: bool
) -> tuple[list[Comparison], set[str]]:
    """The rows of each bounded threshold in one configuration both releases hold, and the thresholds'
    metrics that neither side recorded (skipped)."""
    model, method, ratio = key
    sizes = [sorted({world_size_of(r) for r in side}) for side in (candidate, baseline)]
    rows, skipped = [], set()
    for name, threshold in thresholds.items():
        if not threshold.bounds():
            continue  # a window only: a row of its own
        if name in WORLD_SENSITIVE and sizes[0] != sizes[1]:
            why = f"measured by {sizes[0]} vs {sizes[1]} processes: throughput adds up over processes"
            rows.append(Comparison(model, method, ratio, name, "not_compared", why))
            continue
        row = _check_metric(name, threshold, key, baseline, candidate, strict)
        if row is None:
            skipped.add(name)
        else:
            rows.append(row)
    return rows, skipped


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
    validated, source = _thresholds_for(thresholds, baseline_records)
    warnings = _release_warnings(
        candidate_records, baseline_records, candidate_name, baseline_name, allow_smoke_mismatch
    )
    candidate, baseline = by_config(candidate_records), by_config(baseline_records)
    rows: list[Comparison] = []
    window_rows: list[Comparison] = []
    skipped: set[str] = set()
    for key in sorted(set(candidate[0]) | set(candidate[1]) | set(baseline[0]) | set(baseline[1])):
        if key in candidate[0]:
            window_rows += _window_rows(key, validated, candidate[0][key], strict)
        unmatched = _unmatched(key, candidate, baseline, (candidate_name, baseline_name), strict)
        if unmatched is not None:
            rows.append(unmatched)
            continue
        compared, not_recorded = _compare_configuration(
            key, validated, baseline[0][key], candidate[0][key], strict
        )
        rows += compared
        skipped |= not_recorded
    never = sorted(skipped - {row.metric for row in rows})
    rows = sorted(rows + window_rows, key=lambda row: (_key_of(row), row.kind == "window"))  # stable
    if never:
        warnings.append(f"thresholds on metrics neither release recorded were skipped: {', '.join(never)}")
    dump = {name: t.model_dump(mode="json", exclude_none=True) for name, t in validated.items()}
    return GateResult(rows, warnings, strict, baseline_name, candidate_name, source, dump)
