"""The report's first table, per model: what each pruned variant removed, what it gained in speed and
energy (paired ratios with their intervals), and how much quality it kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ecodiff_bench.core.metrics import QUALITY_METRICS
from ecodiff_bench.core.stats import NO_CHANGE, change_sign, interval_of
from reports.cells import ARROWS, COLUMN, Cell, Group, make_cell, no_interval_reason, verdict_of
from reports.formatting import fmt_value
from reports.records import direction, metric, number


class RatioColumn(NamedTuple):
    name: str  # the paired ratio's metric
    header: str
    below_one: str  # what a ratio measurably below 1 means
    above_one: str


RATIOS = (
    RatioColumn("latency_ratio_vs_base", "Latency pruned/base", "faster", "slower"),
    RatioColumn("energy_ratio_vs_base", "Energy pruned/base", "less energy", "more energy"),
)
#: The detail tables' column key of each quality metric.
QUALITY_KEYS = {c.metrics[0]: c.key for c in COLUMN.values() if c.metrics[0] in QUALITY_METRICS}


@dataclass
class Summary:
    model: str
    columns: list[tuple[str, str]]  # (key, header)
    rows: list[tuple[str, dict[str, Cell]]]  # (label, cells by column key)
    base_line: str  # the base model's own figures, in one line


def ratio_cell(record: dict, column: RatioColumn) -> Cell:
    """A paired ratio with its interval, and what it says: faster / slower, or no measurable change."""
    stored = metric(record, column.name)
    if stored is None:
        return Cell(
            "n/a", "missing", f"{column.name} was not recorded (base and pruned were not timed paired)"
        )
    if stored["status"] == "unavailable":
        return Cell("n/a", "unavailable", stored["note"] or "unavailable")
    ratio = float(stored["value"])
    interval = interval_of(stored["details"])
    note = stored["note"] if stored["status"] == "estimated" else ""
    if interval is None:
        why = no_interval_reason(stored["details"])
        return Cell(
            f"{ratio:.3g}×", stored["status"], note, f"no interval ({why}): no claim", "", "neutral", ratio
        )
    low, high = interval
    text = f"{ratio:.3g}× [{low:.3g}, {high:.3g}]"
    confidence = stored["details"].get("confidence", 0.95)
    pairs = stored["details"].get("ci_n", "?")
    title = f"{100 * confidence:g}% bootstrap interval over {pairs} interleaved pairs"
    sign = change_sign(interval, no_change=1.0)
    meaning = {0: NO_CHANGE, -1: column.below_one, 1: column.above_one}[sign]
    judged = verdict_of(sign, direction(column.name, stored))
    return Cell(text, stored["status"], note, meaning, ARROWS[sign], judged, ratio, title)


def _removed(record: dict, base: dict, name: str) -> Cell:
    """The share of the base's ``name`` (parameters, FLOPs per step) that the pruned model no longer has."""
    pruned_value, base_value = number(record, name), number(base, name)
    if pruned_value is None or base_value is None or base_value == 0:
        return Cell("n/a", "missing", f"{name} of the pruned model or its base is not available")
    share = 1 - pruned_value / base_value
    cell = Cell(f"{100 * share:.1f} %", "measured", value=share)
    before, after = (
        fmt_value(base_value, metric(base, name)["unit"]),
        fmt_value(pruned_value, metric(record, name)["unit"]),
    )
    cell.title = f"{before} → {after}"
    prunable_share = number(record, "params_removed_frac")
    if name == "params" and prunable_share is not None:
        cell.delta = f"{100 * prunable_share:.1f} % of the prunable units' parameters"
        cell.verdict = "neutral"
    return cell


def _base_line(group: Group) -> str:
    """The first base's parameters, FLOPs, latency, energy and quality in one line (± half its interval)."""
    if not group.bases:
        return "no base record selected"
    base = group.bases[0]
    parts = []
    for name in ("params", "flops_per_step", "latency_image_s", "energy_image_j", *QUALITY_METRICS):
        stored = metric(base, name)
        if not stored or stored["status"] == "unavailable":
            continue
        text = fmt_value(stored["value"], stored["unit"])
        interval = interval_of(stored["details"])
        if interval is not None and stored["value"]:
            text += f" ±{100 * (interval[1] - interval[0]) / 2 / stored['value']:.1f} %"
        estimated = " (est.)" if stored["status"] == "estimated" else ""
        parts.append(f"{name} {text}{estimated}")
    return "; ".join(parts)


def _summary(group: Group) -> Summary:
    quality = [m for m in QUALITY_METRICS if m in group.metric_for.values()]
    columns = [("params_removed", "Denoiser params removed"), ("flops_removed", "FLOPs/step removed")]
    columns += [(ratio.name, ratio.header) for ratio in RATIOS]
    columns += [(m, COLUMN[QUALITY_KEYS[m]].header) for m in quality]
    rows = []
    for row in group.rows:
        if row.base is None:
            continue
        record = row.record
        cells = {
            "params_removed": _removed(record, row.base, "params"),
            "flops_removed": _removed(record, row.base, "flops_per_step"),
        }
        for ratio in RATIOS:
            cells[ratio.name] = ratio_cell(record, ratio)
        for m in quality:
            cells[m] = make_cell(record, m, row.base, COLUMN[QUALITY_KEYS[m]])
        rows.append((row.label, cells))
    return Summary(group.model, columns, rows, _base_line(group))


def summaries(groups: list[Group]) -> list[Summary]:
    """The summary of each group: a row per pruned record that has a base to compare with."""
    return [_summary(group) for group in groups]
