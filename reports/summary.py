"""The report's first table, per model: what each pruned variant removed, what it gained in speed and
energy (paired ratios with their intervals), and how much quality it kept."""

from __future__ import annotations

from dataclasses import dataclass

from ecodiff_bench.core.metrics import QUALITY_METRICS
from ecodiff_bench.core.stats import interval_of
from reports.analysis import metric, number
from reports.cells import COLUMN, NO_CHANGE, Cell, Group, make_cell
from reports.formatting import fmt_value

#: (key, header, the word for a ratio below 1, above 1) of the paired ratios.
RATIOS = (
    ("latency_ratio_vs_base", "Latency pruned/base", "faster", "slower"),
    ("energy_ratio_vs_base", "Energy pruned/base", "less energy", "more energy"),
)
QUALITY_KEYS = {c.metrics[0]: c.key for c in COLUMN.values() if c.metrics[0] in QUALITY_METRICS}


@dataclass
class Summary:
    model: str
    columns: list[tuple[str, str]]  # (key, header)
    rows: list[tuple[str, dict[str, Cell]]]  # (label, cells by column key)
    base_line: str  # the base model's own figures, in one line


def ratio_cell(record: dict, name: str, lower: str, higher: str) -> Cell:
    vd = metric(record, name)
    if vd is None:
        return Cell("n/a", "missing", f"{name} was not recorded (base and pruned were not timed paired)")
    if vd["status"] == "unavailable":
        return Cell("n/a", "unavailable", vd["note"] or "unavailable")
    r = float(vd["value"])
    iv = interval_of(vd["details"])
    conf = vd["details"].get("confidence", 0.95)
    note = vd["note"] if vd["status"] == "estimated" else ""
    if iv is None:
        why = "too few pairs" if "ci_n" in vd["details"] else "no interval recorded"
        return Cell(f"{r:.3g}×", vd["status"], note, f"no interval ({why}): no claim", "", "neutral", r)
    lo, hi = iv
    text = f"{r:.3g}× [{lo:.3g}, {hi:.3g}]"
    title = f"{100 * conf:g}% bootstrap interval over {vd['details'].get('ci_n', '?')} interleaved pairs"
    if lo <= 1.0 <= hi:
        return Cell(text, vd["status"], note, NO_CHANGE, "=", "neutral", r, title)
    faster = hi < 1.0
    return Cell(
        text,
        vd["status"],
        note,
        lower if faster else higher,
        "↓" if faster else "↑",
        "good" if faster else "bad",
        r,
        title,
    )


def _removed(record: dict, base: dict | None, name: str) -> Cell:
    """The share of the base's ``name`` (parameters, FLOPs per step) that the pruned model no longer has."""
    p, b = number(record, name), (number(base, name) if base else None)
    if p is None or b is None or b == 0:
        return Cell("n/a", "missing", f"{name} of the pruned model or its base is not available")
    cell = Cell(f"{100 * (1 - p / b):.1f} %", "measured", value=1 - p / b)
    cell.title = f"{fmt_value(b, metric(base, name)['unit'])} → {fmt_value(p, metric(record, name)['unit'])}"
    prunable = number(record, "params_removed_frac")
    if name == "params" and prunable is not None:
        cell.delta = f"{100 * prunable:.1f} % of the prunable units' parameters"
        cell.verdict = "neutral"
    return cell


def _base_line(group: Group) -> str:
    if not group.bases:
        return "no base record selected"
    base = group.bases[0]
    parts = []
    for name in ("params", "flops_per_step", "latency_image_s", "energy_image_j", *QUALITY_METRICS):
        vd = metric(base, name)
        if vd and vd["status"] != "unavailable":
            text = fmt_value(vd["value"], vd["unit"])
            iv = interval_of(vd["details"])
            if iv is not None and vd["value"]:
                text += f" ±{100 * (iv[1] - iv[0]) / 2 / vd['value']:.1f} %"
            est = " (est.)" if vd["status"] == "estimated" else ""
            parts.append(f"{name} {text}{est}")
    return "; ".join(parts)


def summaries(groups: list[Group]) -> list[Summary]:
    out = []
    for g in groups:
        quality = [m for m in QUALITY_METRICS if m in g.metric_for.values()]
        columns = [("params_removed", "Denoiser params removed"), ("flops_removed", "FLOPs/step removed")]
        columns += [(name, header) for name, header, _, _ in RATIOS]
        columns += [(m, COLUMN[QUALITY_KEYS[m]].header) for m in quality]
        rows = []
        for row in g.rows:
            r = row.record
            if row.base is None:
                continue
            cells = {
                "params_removed": _removed(r, row.base, "params"),
                "flops_removed": _removed(r, row.base, "flops_per_step"),
            }
            for name, _, lower, higher in RATIOS:
                cells[name] = ratio_cell(r, name, lower, higher)
            for m in quality:
                cells[m] = make_cell(r, m, row.base, COLUMN[QUALITY_KEYS[m]])
            rows.append((row.label, cells))
        out.append(Summary(g.model, columns, rows, _base_line(g)))
    return out
