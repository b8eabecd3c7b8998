"""The base-vs-pruned tables: which columns a model group gets, and what each cell says.

A group gets a column only for metrics its records hold (a suite that never asked for FID gets no FID
column). A change against the base is shown the way the metric is measured:

- latency and energy of a pruned model come from the paired, interleaved ratio to its base (with its
  confidence interval); a ratio whose interval contains 1 reads "no measurable change", never a win or a
  loss. Without a paired ratio (an older record) the change of the separately timed means is shown grey,
  marked unpaired, and makes no claim either;
- counts (parameters, FLOPs, the model's memory) and quality scores change by their difference;
- whole-process RSS carries no change at all: it follows the process's history, not the model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ecodiff_bench.core import metrics as catalog
from ecodiff_bench.core.stats import NO_CHANGE, change_sign, interval_of
from reports.formatting import fmt_value
from reports.records import direction, is_base, label, metric, number


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    metrics: tuple[str, ...]  # the first one a group records is shown
    ratio: str | None = None  # the paired ratio that gives a pruned row's change
    delta: bool = True  # show a change against the base at all


COLUMNS: tuple[Column, ...] = (
    Column("params", "Params", ("params",)),
    Column("flops", "FLOPs/step", ("flops_per_step",)),
    Column("latency", "Latency/image", ("latency_image_s",), ratio="latency_ratio_vs_base"),
    Column("step", "Latency/step", ("latency_step_s",), ratio="latency_ratio_vs_base"),
    Column("energy", "Energy/image", ("energy_image_j",), ratio="energy_ratio_vs_base"),
    Column(
        "memory", "Model memory", ("model_peak_bytes", "cuda_peak_allocated_bytes", "nvml_memory_used_bytes")
    ),
    Column("rss", "Process RSS (whole process)", ("peak_rss_bytes",), delta=False),
    Column("fid", "FID", ("fid",)),
    Column("frechet", "Fréchet dist.", ("frechet_distance",)),
    Column("clip", "CLIP score", ("clip_score",)),
    Column("ssim", "SSIM vs base", ("ssim_vs_base",)),
    Column("psnr", "PSNR vs base", ("psnr_vs_base",)),
    Column("recog", "Recognisability", ("recognisability",)),
)
COLUMN = {c.key: c for c in COLUMNS}
#: Metrics measured against the base model: the base row is their reference, not a missing value.
VS_BASE = ("ssim_vs_base", "psnr_vs_base")
#: How a cell shows which way a change went (+1 up, -1 down, 0 no change).
ARROWS = {1: "↑", -1: "↓", 0: "="}


@dataclass
class Cell:
    text: str
    status: str  # measured | estimated | unavailable | missing | reference
    note: str = ""  # reason (unavailable) or remark (estimated)
    delta: str = ""  # "+12 %" / "-0.5" / "-18.9 % [-21.0, -16.5]" / "no measurable change"
    arrow: str = ""  # "↑" / "↓" / "="
    verdict: str = ""  # "good" | "bad" | "neutral" | ""
    value: float | None = None
    title: str = ""  # what the change is based on (a hover text)


@dataclass
class Row:
    record: dict
    label: str
    cells: dict[str, Cell]
    base: dict | None


@dataclass
class Group:
    model: str
    rows: list[Row]
    metric_for: dict[str, str]  # column key -> metric name chosen for this group
    bases: list[dict]
    pruned: list[dict]
    columns: tuple[Column, ...] = COLUMNS  # the columns this group's records hold


def verdict_of(sign: int, higher_is_better: bool | None) -> str:
    """What a change going ``sign`` (+1 up, -1 down, 0 none) means by the metric's direction: "good" or
    "bad"; "neutral" for no change or a metric without a better direction."""
    if sign == 0 or higher_is_better is None:
        return "neutral"
    return "good" if (sign > 0) == higher_is_better else "bad"


def no_interval_reason(details: dict) -> str:
    """Why a paired ratio has no interval: too few pairs were timed, or none was recorded (older record)."""
    return "too few pairs" if "ci_n" in details else "no interval recorded"


def percent_change(ratio: float) -> str:
    """A ratio as the change it stands for: 0.82 -> "-18.0 %"."""
    return f"{100 * (ratio - 1):+.1f} %"


def _paired_change(
    record: dict, ratio_name: str, higher_is_better: bool | None
) -> tuple[str, str, str, str] | None:
    """(delta, arrow, verdict, title) of a pruned record from its paired ratio, or None without one."""
    stored = metric(record, ratio_name)
    if not stored or stored["status"] == "unavailable":
        return None
    ratio = float(stored["value"])
    interval = interval_of(stored["details"])
    confidence = stored["details"].get("confidence", 0.95)
    if interval is None:
        why = no_interval_reason(stored["details"])
        return (
            f"{percent_change(ratio)} ({why})",
            "",
            "neutral",
            f"{ratio_name} = {ratio:.3g} without an interval: no claim",
        )
    low, high = interval
    title = f"{ratio_name} = {ratio:.3g}, {100 * confidence:g}% interval [{low:.3g}, {high:.3g}] over interleaved pairs"
    sign = change_sign(interval, no_change=1.0)
    if sign == 0:
        return NO_CHANGE, ARROWS[0], "neutral", title
    delta = (
        f"{percent_change(ratio)} [{percent_change(low).rstrip(' %')}, {percent_change(high).rstrip(' %')}]"
    )
    return delta, ARROWS[sign], verdict_of(sign, higher_is_better), title


def _difference_change(
    cell: Cell, name: str, value: float, base_value: float, higher_is_better: bool | None
) -> None:
    """The cell's change from the base's value: absolute for quality scores, else in per cent."""
    difference = value - base_value
    if catalog.is_absolute_delta(name):
        cell.delta = f"{difference:+.3g}" if difference else "±0"
    elif base_value != 0:
        cell.delta = f"{100 * difference / abs(base_value):+.1f} %" if difference else "±0 %"
    else:
        cell.delta = "±0 %" if difference == 0 else "n/a (base is 0)"
    sign = (difference > 0) - (difference < 0)
    cell.arrow, cell.verdict = ARROWS[sign], verdict_of(sign, higher_is_better)


def make_cell(record: dict, name: str, base: dict | None, column: Column | None = None) -> Cell:
    """The cell of metric ``name`` in ``record``'s row, with its change from ``base`` as ``column`` says."""
    stored = metric(record, name)
    if stored is None:
        if name in VS_BASE and is_base(record):
            return Cell("ref.", "reference", "the base model is the reference of this metric")
        return Cell("n/a", "missing", f"{name} was not recorded for this run")
    status = stored["status"]
    if status == "unavailable":
        return Cell("n/a", "unavailable", stored["note"] or "unavailable (no reason given)")
    value = float(stored["value"])
    cell = Cell(fmt_value(value, stored["unit"]), status, value=value)
    if status == "estimated":
        cell.note = stored["note"] or "estimated, not measured"
    interval = interval_of(stored["details"])
    if interval is not None and value:
        low, high = (fmt_value(bound, stored["unit"]) for bound in interval)
        cell.title = f"{100 * stored['details'].get('confidence', 0.95):g}% interval {low} .. {high}"
    if base is None or base is record or (column is not None and not column.delta):
        return cell
    base_value = number(base, name)
    if base_value is None:
        return cell
    higher_is_better = direction(name, stored)
    if column is None or not column.ratio:
        _difference_change(cell, name, value, base_value, higher_is_better)
        return cell
    paired = _paired_change(record, column.ratio, higher_is_better)
    if paired is not None:
        cell.delta, cell.arrow, cell.verdict, cell.title = paired
        return cell
    _difference_change(cell, name, value, base_value, higher_is_better)
    cell.delta += " (unpaired)"
    cell.verdict = "neutral"
    cell.title = "timed separately from the base, no paired ratio recorded: no claim of a change"
    return cell


def _pick_metric(records: list[dict], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` some record holds with a value, else one recorded at all, else None."""
    for name in names:
        if any(number(record, name) is not None for record in records):
            return name
    for name in names:
        if any(metric(record, name) for record in records):
            return name
    return None


def _base_for(record: dict, bases: list[dict]) -> dict | None:
    """The base a pruned record is compared with: same smoke flag first, then same run, same seed, newest."""
    if not bases:
        return None

    def likeness(base: dict) -> tuple:
        return (
            base["smoke"] == record["smoke"],
            base["run_id"] == record["run_id"],
            base["seed"] == record["seed"],
            base["created_at"],
        )

    return max(bases, key=likeness)


def _group(model: str, records: list[dict]) -> Group:
    """One model's table: its bases first (by seed), then the pruned records by method, ratio and seed."""
    bases = sorted([r for r in records if is_base(r)], key=lambda r: (r["seed"] is None, r["seed"] or 0))
    pruned = sorted(
        [r for r in records if not is_base(r)],
        key=lambda r: (r["method"], float(r["ratio"]), r["seed"] or 0),
    )
    several_seeds = len({r["seed"] for r in records}) > 1
    chosen = {column.key: _pick_metric(records, column.metrics) for column in COLUMNS}
    columns = tuple(column for column in COLUMNS if chosen[column.key] is not None)
    rows = []
    for record in bases + pruned:
        base = None if is_base(record) else _base_for(record, bases)
        cells = {column.key: make_cell(record, chosen[column.key], base, column) for column in columns}
        rows.append(Row(record, label(record, with_seed=several_seeds), cells, base))
    metric_for = {key: name for key, name in chosen.items() if name is not None}
    return Group(model, rows, metric_for, bases, pruned, columns)


def build_groups(records: list[dict]) -> list[Group]:
    """The successful records, one :class:`Group` per model (sorted by model name)."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record["status"] == "ok":
            by_model[record["model"]].append(record)
    return [_group(model, by_model[model]) for model in sorted(by_model)]
