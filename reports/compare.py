"""Two sets of run records compared configuration by configuration: a configuration's records (model,
method, ratio: :data:`Key`), one metric's value over its seeds (:class:`Side`), and :func:`diff`, every
metric's change with no thresholds (``ecodiff-bench compare``). The regression gate (:mod:`reports.gate`)
compares the same :class:`Side` values against its thresholds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from ecodiff_bench.core.metrics import SAMPLE_SENSITIVE, direction
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.stats import interval_of
from reports.gate_result import key_text
from reports.records import sample_count

Key = tuple[str, str, float]


def config_key(record: dict) -> Key:
    return (record["model"], record["method"], round(float(record["ratio"]), 6))


ByConfig = tuple[dict[Key, list[dict]], dict[Key, list[dict]]]  # (ok, failed) records per configuration


def by_config(records: list[dict], key=config_key) -> ByConfig:
    """(ok records, failed records) per configuration."""
    ok, failed = defaultdict(list), defaultdict(list)
    for record in records:
        (ok if record["status"] == "ok" else failed)[key(record)].append(record)
    return ok, failed


def configurations(records: list[dict]) -> dict[Key, list[dict]]:
    """The successful records of each configuration (model, method, ratio)."""
    return dict(by_config([normalize_record(r) for r in records])[0])


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


def side_of(records: list[dict], name: str) -> Side:
    """Metric ``name`` over one configuration's records (its seeds): their mean, and why there is none."""
    values, intervals, notes, statuses, samples = [], [], [], set(), set()
    unit, higher_is_better, recorded = "", None, False
    for record in records:
        stored = record["metrics"].get(name)
        if stored is None:
            notes.append(f"{name} not recorded")
            continue
        recorded, unit, higher_is_better = True, stored["unit"], stored["higher_is_better"]
        if stored["status"] == "unavailable":
            notes.append(stored["note"] or "unavailable")
            continue
        values.append(float(stored["value"]))
        intervals.append(interval_of(stored["details"]))
        statuses.add(stored["status"])
        if name in SAMPLE_SENSITIVE:
            samples.add(sample_count(record, name))
    if not values:
        note = "; ".join(dict.fromkeys(notes)) or "no records"
        return Side(None, unit, "unavailable", note, 0, samples, recorded, higher_is_better)
    status = "estimated" if "estimated" in statuses else "measured"
    n = len(values)
    interval = None
    if all(iv is not None for iv in intervals):  # the mean of the seeds' bounds (an approximation)
        interval = (sum(iv[0] for iv in intervals) / n, sum(iv[1] for iv in intervals) / n)
    return Side(sum(values) / n, unit, status, "", n, samples, recorded, higher_is_better, interval)


def changes(baseline: Side, candidate: Side) -> tuple[float, float]:
    """candidate - baseline, absolute and relative to |baseline|."""
    before, after = baseline.value, candidate.value
    if before != 0:
        relative = (after - before) / abs(before)
    else:
        relative = 0.0 if after == before else math.copysign(math.inf, after - before)
    return after - before, relative


def verdict(name: str, change: float, stored_direction: bool | None = None) -> str:
    """``"better"`` / ``"worse"`` for a change of metric ``name`` (by its direction), ``""`` for none."""
    higher_is_better = direction(name, stored_direction)
    if not change or higher_is_better is None:
        return ""
    return "better" if (change > 0) == higher_is_better else "worse"


_SIDE_FIELDS = ("value", "status", "note", "n", "interval")  # what ``compare --json`` shows of a side


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
        def side(values: Side | None):
            return None if values is None else {k: getattr(values, k) for k in _SIDE_FIELDS}

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
    key = (lambda r: ("", "", 0.0)) if single else config_key
    a_ok, _ = by_config(a_records, key)
    b_ok, _ = by_config(b_records, key)
    out: list[Change] = []
    for key in sorted(set(a_ok) | set(b_ok)):
        in_a, in_b = a_ok.get(key), b_ok.get(key)
        config = key_text(config_key((in_a or in_b)[0]))
        if in_a is None or in_b is None:
            missing = Change(
                config, "*", None if in_a is None else Side(None), None if in_b is None else Side(None)
            )
            out.append(missing)
            continue
        names = metrics or sorted({name for record in in_a + in_b for name in record["metrics"]})
        for name in names:
            side_a, side_b = side_of(in_a, name), side_of(in_b, name)
            change = Change(config, name, side_a, side_b)
            if side_a.value is not None and side_b.value is not None:
                change.change, change.change_frac = changes(side_a, side_b)
                change.verdict = verdict(name, change.change, side_b.higher_is_better)
            out.append(change)
    return out
