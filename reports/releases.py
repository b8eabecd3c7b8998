"""The release history: tagged releases in order, each gated against the one before it.

A *series* is the releases of one suite in the order they were tagged (tag time, then the names in
natural order: v2 before v10); smoke and full releases form separate series, since the gate never
compares them. Each release after the first is checked by the gate (:func:`reports.gate.check`)
against its predecessor, with the thresholds the predecessor's suite recorded, which is what
``ecodiff-bench check --against previous`` does; the first release, which has nothing before it, is
checked against its own suite's windows only. Nothing here decides a verdict: every pass and fail comes
from the gate.

For each gated metric (a metric named by the thresholds some release was checked with) and configuration
(model, method, ratio), a :class:`Point` holds the value the gate compares (a pruned model's paired ratio
to its base for latency and energy; the bases' own timings are not compared across runs and are left
out), its change from the previous release, the gate's verdict with its reasons, and the band of values
the relative thresholds allowed around the previous release's value. ``ecodiff-bench releases`` prints
it; the report draws it (:mod:`reports.release_plots`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from ecodiff_bench.core.metrics import direction
from reports.compare import Key, configurations
from reports.formatting import fmt_value, sig
from reports.gate import (
    Comparison,
    GateResult,
    IncomparableError,
    MetricThreshold,
    Thresholds,
    check,
    gated_value,
    key_text,
    recorded_thresholds,
    validate_thresholds,
    windows,
)
from reports.records import commit_of


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass
class Release:
    """One tagged release: its name, when it was tagged, and its own copies of the records."""

    name: str
    created_at: str
    records: list[dict]

    @property
    def suite(self) -> str:
        return "+".join(sorted({r["suite"] for r in self.records})) or "unknown"

    @property
    def smoke(self) -> bool:
        return any(r["smoke"] for r in self.records)

    @property
    def series(self) -> tuple[str, bool]:
        return self.suite, self.smoke

    @property
    def runs(self) -> list[str]:
        return sorted({r["run_id"] for r in self.records})

    def summary(self) -> dict:
        """What ``releases`` lists about a release."""
        ratios = sorted({float(r["ratio"]) for r in self.records if r["method"] != "base"})
        return {
            "name": self.name,
            "created_at": self.created_at,
            "suite": self.suite,
            "smoke": self.smoke,
            "records": len(self.records),
            "failed_records": sum(1 for r in self.records if r["status"] != "ok"),
            "runs": self.runs,
            "models": sorted({r["model"] for r in self.records}),
            "methods": sorted({r["method"] for r in self.records}),
            "ratios": ratios,
            "commits": sorted({commit_of(r) for r in self.records}),
        }


def load_releases(store, suite: str | None = None) -> list[Release]:
    """Every tagged release of the store (of ``suite`` only, if given), oldest first."""
    out = [Release(tag["name"], tag["created_at"], store.tagged(tag["name"])) for tag in store.tags()]
    out.sort(key=lambda release: (release.created_at, _natural(release.name)))
    return [release for release in out if suite is None or suite in release.suite.split("+")]


def previous_release(
    releases: list[Release], candidate: list[dict], name: str | None = None
) -> Release | None:
    """The release a candidate is gated against by ``check --against previous``: the most recent release of
    its series (its suite, smoke or full) tagged before it. A candidate that is a release (by ``name``, or a
    run whose records a release holds) is placed at that release's position."""
    series = Release("", "", candidate).series
    same = [release for release in releases if release.series == series]
    runs = sorted({r["run_id"] for r in candidate})
    for i, release in enumerate(same):
        if release.name == name or (name is None and release.runs == runs):
            same = same[:i]
            break
    return same[-1] if same else None


@dataclass
class Step:
    """One release in its series: the gate's result against the previous release (None for the first, or
    when the two cannot be compared: ``error`` says why), or the first release's window rows."""

    release: Release
    previous: Release | None
    gate: GateResult | None = None
    first_windows: list[Comparison] = field(default_factory=list)
    thresholds: Thresholds | None = None
    thresholds_source: str = ""
    error: str = ""

    @property
    def comparisons(self) -> list[Comparison]:
        return self.gate.comparisons if self.gate is not None else self.first_windows

    @cached_property
    def configurations(self) -> dict[Key, list[dict]]:
        """The release's ok records by configuration (grouped once, read for every metric)."""
        return configurations(self.release.records)

    @cached_property
    def comparisons_by_key(self) -> dict[Key, list[Comparison]]:
        by_key: dict[Key, list[Comparison]] = defaultdict(list)
        for c in self.comparisons:
            by_key[(c.model, c.method, c.ratio)].append(c)
        return by_key

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.outcome == "fail"]

    @property
    def verdict(self) -> str:
        """``fail``, ``pass``, ``first`` (nothing before it, no window broken) or ``incomparable``."""
        if self.error:
            return "incomparable"
        if self.failures:
            return "fail"
        return "pass" if self.previous is not None else "first"

    def summary(self) -> dict:
        return {
            **self.release.summary(),
            "previous": self.previous.name if self.previous else None,
            "verdict": self.verdict,
            "error": self.error,
            "thresholds_source": self.thresholds_source,
            "gate": self.gate.summary() if self.gate is not None else None,
            "failures": [
                {"config": row.config, "metric": row.metric, "check": row.check_name, "reason": row.reason}
                for row in self.failures
            ],
        }


@dataclass
class Point:
    """One gated metric of one configuration in one release."""

    release: str
    key: Key
    metric: str
    compared: str  # the metric whose value is shown and compared (a paired ratio for pruned timings)
    value: float | None
    unit: str = ""
    status: str = "measured"
    interval: tuple[float, float] | None = None
    change: float | None = None  # from the previous release's value
    change_frac: float | None = None
    verdict: str = ""  # the gate's: pass / fail / not_compared; "" when nothing was checked
    reasons: list[str] = field(default_factory=list)
    band: tuple[float, float] | None = None  # values the relative thresholds allowed (previous release)
    band_origin: float | None = None  # the previous release's value, which one end of the band is
    relative: bool = True  # the change reads as a percentage (the thresholds bound it relatively)
    window: tuple[float, float] | None = None  # the absolute window, when the value is the windowed metric

    @property
    def config(self) -> str:
        return key_text(self.key)

    def to_dict(self) -> dict:
        return {
            "release": self.release,
            "config": self.config,
            "model": self.key[0],
            "method": self.key[1],
            "ratio": self.key[2],
            "metric": self.metric,
            "compared": self.compared,
            "value": self.value,
            "unit": self.unit,
            "status": self.status,
            "interval": self.interval,
            "change": self.change,
            "change_frac": self.change_frac,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "band": self.band,
            "band_origin": self.band_origin,
            "window": self.window,
        }


def _verdict(rows: list[Comparison]) -> str:
    """The gate's word on a point: any failure fails it, else any pass passes it; "" when nothing was checked."""
    outcomes = {row.outcome for row in rows}
    return next((v for v in ("fail", "pass", "not_compared") if v in outcomes), "")


@dataclass
class Series:
    """The releases of one suite (smoke or full), each gated against the one before it."""

    suite: str
    smoke: bool
    steps: list[Step]
    metrics: list[str]
    points: dict[str, list[Point]]  # metric -> points, release by release

    @property
    def title(self) -> str:
        return f"{self.suite} (smoke)" if self.smoke else self.suite

    @property
    def releases(self) -> list[str]:
        return [step.release.name for step in self.steps]

    def configs(self, metric: str) -> list[Key]:
        """The configurations with a point of ``metric``, each model's base first."""
        keys = {point.key for point in self.points.get(metric, [])}
        return sorted(keys, key=lambda key: (key[0], key[1] != "base", key))

    def cell(self, metric: str, key: Key, release: str) -> Point | None:
        return self._cells.get((metric, key, release))

    @cached_property
    def _cells(self) -> dict[tuple[str, Key, str], Point]:
        return {(metric, p.key, p.release): p for metric, points in self.points.items() for p in points}

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "smoke": self.smoke,
            "releases": [step.summary() for step in self.steps],
            "metrics": {metric: [p.to_dict() for p in self.points[metric]] for metric in self.metrics},
        }


def _step(release: Release, previous: Release | None) -> Step:
    """Gate ``release`` against ``previous``; the first release only against its own suite's windows."""
    if previous is None:
        thresholds, source = recorded_thresholds(release.records)
        if thresholds is None:
            return Step(release, None)
        rows = windows(release.records, thresholds)
        source = source.replace("the baseline's suite", "its own suite")
        return Step(release, None, first_windows=rows, thresholds=thresholds, thresholds_source=source)
    try:
        result = check(
            release.records,
            previous.records,
            baseline_name=f"release {previous.name}",
            candidate_name=f"release {release.name}",
        )
    except IncomparableError as exc:
        return Step(release, previous, error=str(exc))
    thresholds = validate_thresholds(result.thresholds)
    return Step(release, previous, result, thresholds=thresholds, thresholds_source=result.thresholds_source)


def _point(
    metric: str, step: Step, key: Key, threshold: MetricThreshold | None, before: Point | None
) -> Point | None:
    """The point of one configuration in one release (``before``: its point in the previous release), or
    None where the gate compares nothing (a base's own timings) and nothing failed."""
    rows = [row for row in step.comparisons_by_key.get(key, []) if row.metric in (metric, "run")]
    gated = gated_value(metric, key, step.configurations[key]) if key in step.configurations else None
    if gated is None and not any(row.outcome == "fail" for row in rows):
        return None
    compared, side = gated if gated else (metric, None)
    point = Point(step.release.name, key, metric, compared, side.value if side else None)
    if side is not None:
        point.unit, point.status, point.interval = side.unit, side.status, side.interval
    point.verdict, point.reasons = _verdict(rows), [row.reason for row in rows if row.reason]
    if before is not None and before.compared == compared and None not in (before.value, point.value):
        point.change = point.value - before.value
        point.change_frac = point.change / abs(before.value) if before.value else None
        if threshold is not None and threshold.bounds():
            point.band, point.band_origin = threshold.allowed_range(before.value), before.value
            point.relative = (
                threshold.max_increase_frac is not None or threshold.max_decrease_frac is not None
            )
    if threshold is not None and threshold.window is not None and compared == metric:
        point.window = threshold.window
    return point


def _points(metric: str, steps: list[Step]) -> list[Point]:
    """Every point of ``metric``, release by release; each compared with the previous release's."""
    out: list[Point] = []
    before: dict[Key, Point] = {}  # the previous release's points: the one each release is gated against
    for step in steps:
        threshold = step.thresholds.root.get(metric) if step.thresholds is not None else None
        failed_runs = {
            key for key, rows in step.comparisons_by_key.items() if any(row.metric == "run" for row in rows)
        }
        now: dict[Key, Point] = {}
        for key in sorted(set(step.configurations) | failed_runs):
            point = _point(metric, step, key, threshold, before.get(key))
            if point is not None:
                now[key] = point
                out.append(point)
        before = now
    return out


def build_series(releases: list[Release]) -> Series:
    """Gate each release of one series against the one before it (``releases`` oldest first)."""
    steps = [_step(r, releases[i - 1] if i else None) for i, r in enumerate(releases)]
    metrics = list(
        dict.fromkeys(
            name for step in steps if step.thresholds is not None for name, _ in step.thresholds.items()
        )
    )
    return Series(
        releases[0].suite,
        releases[0].smoke,
        steps,
        metrics,
        {metric: _points(metric, steps) for metric in metrics},
    )


@dataclass
class History:
    series: list[Series]

    def to_dict(self) -> dict:
        return {"series": [series.to_dict() for series in self.series]}


def history(releases: list[Release], suites: list[str] | None = None) -> History:
    """The history of every series among ``releases`` (oldest first), of ``suites`` only if given."""
    by_series: dict[tuple[str, bool], list[Release]] = {}
    for release in releases:
        if suites is None or set(release.suite.split("+")) & set(suites):
            by_series.setdefault(release.series, []).append(release)
    ordered = sorted(
        by_series, key=lambda series: (series[1], series[0])
    )  # (suite, smoke): full series first
    return History([build_series(by_series[series]) for series in ordered])


def store_history(store, suites: list[str] | None = None) -> History:
    return history(load_releases(store), suites)


# -- text, shared by ``ecodiff-bench releases`` and the report ------------------------------------------
#: How a verdict reads in a table cell.
MARKS = {"pass": "ok", "fail": "FAIL", "not_compared": "n/c", "": ""}
STEP_VERDICTS = {"first": "first", "pass": "PASS", "fail": "FAIL", "incomparable": "not comparable"}
LEGEND = (
    "Each release is gated against the one tagged before it in its suite, with the thresholds that one "
    "was run with (as `check --against previous`); the first release only against its absolute windows. "
    "A cell holds the value the gate compares (a pruned model's paired ratio to its base for latency and "
    "energy), its change from the previous release (in per cent where the thresholds bound it relatively; "
    "pp = percentage points) and the gate's verdict: ok, FAIL, n/c = not compared; none where nothing "
    "was checked."
)
RELEASE_HEADER = ["release", "tagged", "records", "models", "methods", "ratios", "commit", "vs", "gate"]


def value_text(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return sig(value, 4) if unit in ("ratio", "") else fmt_value(value, unit, 4)


def cell_text(point: Point | None) -> str:
    """One history cell: the value, its change from the previous release and the gate's verdict."""
    if point is None:
        return "-"
    text = value_text(point.value, point.unit) + (" (est.)" if point.status == "estimated" else "")
    if point.change_frac is not None and point.relative:
        text += f" {100 * point.change_frac:+.1f}%"
    elif point.change is not None and point.unit == "fraction":
        text += f" {100 * point.change:+.2f} pp"
    elif point.change is not None:
        text += f" {point.change:+.4g}"
    return f"{text} {MARKS.get(point.verdict, point.verdict)}".rstrip()


def metric_heading(series: Series, metric: str) -> str:
    """The metric, which way is better, what is compared and the thresholds of the latest release."""
    way = {True: "higher is better", False: "lower is better", None: "no better direction"}[direction(metric)]
    compared = sorted({p.compared for p in series.points[metric] if p.compared != metric})
    via = f"; pruned models via {', '.join(compared)}" if compared else ""
    limits = ""
    for step in reversed(series.steps):
        if step.thresholds is not None and metric in step.thresholds.root:
            threshold = step.thresholds.root[metric]
            limits = ", ".join(f"{bound}={limit:g}" for bound, limit in threshold.bounds().items())
            if threshold.window is not None:
                low, high = threshold.window
                limits += (", " if limits else "") + f"window=[{low:g}, {high:g}]"
            break
    return f"{metric} ({way}{via}; thresholds: {limits or 'none'})"


NO_REGRESSIONS = "No regressions: every release passed the gate against the one before it."


def metric_rows(series: Series, metric: str) -> list[list[str]]:
    """Per configuration: its value in every release, as text (header ``["config", *series.releases]``)."""
    return [
        [key_text(key)] + [cell_text(series.cell(metric, key, release)) for release in series.releases]
        for key in series.configs(metric)
    ]


def release_rows(series: Series) -> list[list[str]]:
    """One row per release: :data:`RELEASE_HEADER`."""
    rows = []
    for step in series.steps:
        release = step.release.summary()
        verdict = STEP_VERDICTS[step.verdict]
        if step.verdict == "fail":
            verdict += f" ({len(step.failures)})"
        rows.append(
            [
                release["name"],
                release["created_at"],
                str(release["records"]),
                ", ".join(release["models"]),
                ", ".join(release["methods"]),
                ", ".join(f"{ratio:g}" for ratio in release["ratios"]),
                ", ".join(commit[:10] for commit in release["commits"]),
                step.previous.name if step.previous else "-",
                verdict,
            ]
        )
    return rows


def regression_lines(series: Series) -> list[str]:
    """Every failure of every release (and why a release could not be compared), as sentences."""
    out = []
    for step in series.steps:
        vs = f" vs {step.previous.name}" if step.previous else ""
        if step.error:
            out.append(f"{step.release.name}{vs}: not compared: {step.error}")
        out += [
            f"{step.release.name}{vs}: {row.config} {row.check_name} FAILED: {row.reason}"
            for row in step.failures
        ]
    return out
