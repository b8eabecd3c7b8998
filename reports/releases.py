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

from ecodiff_bench.core.metrics import METRICS
from reports.formatting import fmt_value, sig
from reports.gate import (
    Comparison,
    GateResult,
    IncomparableError,
    Thresholds,
    check,
    configurations,
    gated_value,
    key_text,
    recorded_thresholds,
    validate_thresholds,
    windows,
)
from reports.records import commit_of

Key = tuple[str, str, float]


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
    out = [Release(t["name"], t["created_at"], store.tagged(t["name"])) for t in store.tags()]
    out.sort(key=lambda r: (r.created_at, _natural(r.name)))
    return [r for r in out if suite is None or suite in r.suite.split("+")]


def previous_release(
    releases: list[Release], candidate: list[dict], name: str | None = None
) -> Release | None:
    """The release a candidate is gated against by ``check --against previous``: the most recent release of
    its series (its suite, smoke or full) tagged before it. A candidate that is a release (by ``name``, or a
    run whose records a release holds) is placed at that release's position."""
    series = Release("", "", candidate).series
    same = [r for r in releases if r.series == series]
    runs = sorted({r["run_id"] for r in candidate})
    for i, r in enumerate(same):
        if r.name == name or (name is None and r.runs == runs):
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
            "failures": [{**_comparison_brief(c)} for c in self.failures],
        }


def _comparison_brief(c: Comparison) -> dict:
    return {"config": c.config, "metric": c.metric, "check": c.check_name, "reason": c.reason}


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


def _verdict(comps: list[Comparison]) -> str:
    outcomes = {c.outcome for c in comps}
    for v in ("fail", "pass", "not_compared"):
        if v in outcomes:
            return v
    return ""


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
        return [s.release.name for s in self.steps]

    def configs(self, metric: str) -> list[Key]:
        return sorted({p.key for p in self.points.get(metric, [])}, key=lambda k: (k[0], k[1] != "base", k))

    def cell(self, metric: str, key: Key, release: str) -> Point | None:
        return self._cells.get((metric, key, release))

    @cached_property
    def _cells(self) -> dict[tuple[str, Key, str], Point]:
        return {(m, p.key, p.release): p for m, points in self.points.items() for p in points}

    def to_dict(self) -> dict:
        return {
            "suite": self.suite,
            "smoke": self.smoke,
            "releases": [s.summary() for s in self.steps],
            "metrics": {m: [p.to_dict() for p in self.points[m]] for m in self.metrics},
        }


def _step(release: Release, previous: Release | None) -> Step:
    if previous is None:
        th, source = recorded_thresholds(release.records)
        rows = windows(release.records, th) if th is not None else []
        source = source.replace("the baseline's suite", "its own suite") if th is not None else ""
        return Step(release, None, first_windows=rows, thresholds=th, thresholds_source=source)
    try:
        result = check(
            release.records,
            previous.records,
            baseline_name=f"release {previous.name}",
            candidate_name=f"release {release.name}",
        )
    except IncomparableError as exc:
        return Step(release, previous, error=str(exc))
    th = validate_thresholds(result.thresholds)
    return Step(release, previous, result, thresholds=th, thresholds_source=result.thresholds_source)


def _points(metric: str, steps: list[Step]) -> list[Point]:
    out: list[Point] = []
    before: dict[Key, Point] = {}  # the previous release's points: the one each release is gated against
    for step in steps:
        th = step.thresholds.root.get(metric) if step.thresholds is not None else None
        ok, by_key = step.configurations, step.comparisons_by_key
        keys = set(ok) | {k for k, cs in by_key.items() if any(c.metric == "run" for c in cs)}
        now: dict[Key, Point] = {}
        for key in sorted(keys):
            comps = [c for c in by_key.get(key, []) if c.metric in (metric, "run")]
            gated = gated_value(metric, key, ok[key]) if key in ok else None
            if gated is None and not any(c.outcome == "fail" for c in comps):
                continue  # the gate compares nothing here (a base's own timings) and nothing failed
            compared, side = gated if gated else (metric, None)
            p = Point(step.release.name, key, metric, compared, side.value if side else None)
            if side is not None:
                p.unit, p.status, p.interval = side.unit, side.status, side.interval
            p.verdict, p.reasons = _verdict(comps), [c.reason for c in comps if c.reason]
            prev = before.get(key)
            if prev is not None and prev.compared == compared and None not in (prev.value, p.value):
                p.change = p.value - prev.value
                p.change_frac = p.change / abs(prev.value) if prev.value else None
                if th is not None and th.bounds():
                    p.band, p.band_origin = th.allowed_range(prev.value), prev.value
                    p.relative = th.max_increase_frac is not None or th.max_decrease_frac is not None
            if th is not None and th.window is not None and compared == metric:
                p.window = th.window
            now[key] = p
            out.append(p)
        before = now
    return out


def build_series(releases: list[Release]) -> Series:
    """Gate each release of one series against the one before it (``releases`` oldest first)."""
    steps = [_step(r, releases[i - 1] if i else None) for i, r in enumerate(releases)]
    metrics = list(
        dict.fromkeys(m for s in steps if s.thresholds is not None for m, _ in s.thresholds.items())
    )
    return Series(
        releases[0].suite,
        releases[0].smoke,
        steps,
        metrics,
        {m: _points(m, steps) for m in metrics},
    )


@dataclass
class History:
    series: list[Series]

    def to_dict(self) -> dict:
        return {"series": [s.to_dict() for s in self.series]}


def history(releases: list[Release], suites: list[str] | None = None) -> History:
    """The history of every series among ``releases`` (oldest first), of ``suites`` only if given."""
    by_series: dict[tuple[str, bool], list[Release]] = {}
    for r in releases:
        if suites is None or set(r.suite.split("+")) & set(suites):
            by_series.setdefault(r.series, []).append(r)
    ordered = sorted(by_series.items(), key=lambda kv: (kv[0][1], kv[0][0]))  # full series first
    return History([build_series(rels) for _, rels in ordered])


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


def value_text(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return sig(x, 4) if unit in ("ratio", "") else fmt_value(x, unit, 4)


def cell_text(p: Point | None, mark: bool = True) -> str:
    """One history cell: the value, its change from the previous release and (``mark``) the verdict."""
    if p is None:
        return "-"
    text = value_text(p.value, p.unit) + (" (est.)" if p.status == "estimated" else "")
    if p.change_frac is not None and p.relative:
        text += f" {100 * p.change_frac:+.1f}%"
    elif p.change is not None and p.unit == "fraction":
        text += f" {100 * p.change:+.2f} pp"
    elif p.change is not None:
        text += f" {p.change:+.4g}"
    return f"{text} {MARKS.get(p.verdict, p.verdict)}".rstrip() if mark else text


def metric_heading(series: Series, metric: str) -> str:
    """The metric, which way is better, what is compared and the thresholds of the latest release."""
    hib = METRICS.get(metric).higher_is_better if metric in METRICS else None
    way = {True: "higher is better", False: "lower is better", None: "no better direction"}[hib]
    compared = sorted({p.compared for p in series.points[metric] if p.compared != metric})
    via = f"; pruned models via {', '.join(compared)}" if compared else ""
    limits = ""
    for step in reversed(series.steps):
        if step.thresholds is not None and metric in step.thresholds.root:
            th = step.thresholds.root[metric]
            limits = ", ".join(f"{k}={v:g}" for k, v in th.bounds().items())
            if th.window is not None:
                limits += (", " if limits else "") + f"window=[{th.window[0]:g}, {th.window[1]:g}]"
            break
    return f"{metric} ({way}{via}; thresholds: {limits or 'none'})"


NO_REGRESSIONS = "No regressions: every release passed the gate against the one before it."


def metric_rows(series: Series, metric: str) -> list[list[str]]:
    """Per configuration: its value in every release, as text (header ``["config", *series.releases]``)."""
    return [
        [key_text(k)] + [cell_text(series.cell(metric, k, r)) for r in series.releases]
        for k in series.configs(metric)
    ]


def release_rows(series: Series) -> list[list[str]]:
    """One row per release: :data:`RELEASE_HEADER`."""
    rows = []
    for step in series.steps:
        s = step.release.summary()
        verdict = STEP_VERDICTS[step.verdict]
        if step.verdict == "fail":
            verdict += f" ({len(step.failures)})"
        rows.append(
            [
                s["name"],
                s["created_at"],
                str(s["records"]),
                ", ".join(s["models"]),
                ", ".join(s["methods"]),
                ", ".join(f"{r:g}" for r in s["ratios"]),
                ", ".join(c[:10] for c in s["commits"]),
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
            f"{step.release.name}{vs}: {c.config} {c.check_name} FAILED: {c.reason}" for c in step.failures
        ]
    return out
