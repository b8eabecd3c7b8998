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
from ecodiff_bench.core.stats import interval_of
from reports.analysis import direction, is_base, label, metric, number
from reports.formatting import fmt_value


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
NO_CHANGE = "no measurable change"


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


def pct(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.1f} %"


def ratio_change(record: dict, ratio_name: str, hib: bool | None) -> tuple[str, str, str, str] | None:
    """(delta, arrow, verdict, title) of a pruned record from its paired ratio, or None without one."""
    vd = metric(record, ratio_name)
    if not vd or vd["status"] == "unavailable":
        return None
    r = float(vd["value"])
    iv = interval_of(vd["details"])
    conf = vd["details"].get("confidence", 0.95)
    if iv is None:
        why = "too few pairs" if "ci_n" in vd["details"] else "no interval recorded"
        return f"{pct(r)} ({why})", "", "neutral", f"{ratio_name} = {r:.3g} without an interval: no claim"
    lo, hi = iv
    title = f"{ratio_name} = {r:.3g}, {100 * conf:g}% interval [{lo:.3g}, {hi:.3g}] over interleaved pairs"
    if lo <= 1.0 <= hi:
        return NO_CHANGE, "=", "neutral", title
    arrow = "↑" if lo > 1 else "↓"
    good = (lo > 1) == bool(hib) if hib is not None else None
    verdict = "neutral" if good is None else ("good" if good else "bad")
    return f"{pct(r)} [{pct(lo).rstrip(' %')}, {pct(hi).rstrip(' %')}]", arrow, verdict, title


def _plain_change(cell: Cell, name: str, val: float, b: float, hib: bool | None) -> None:
    diff = val - b
    if catalog.is_absolute_delta(name):
        cell.delta = f"{diff:+.3g}" if diff else "±0"
    elif b != 0:
        cell.delta = f"{100 * diff / abs(b):+.1f} %" if diff else "±0 %"
    else:
        cell.delta = "±0 %" if diff == 0 else "n/a (base is 0)"
    cell.arrow = "↑" if diff > 0 else ("↓" if diff < 0 else "=")
    if diff == 0 or hib is None:
        cell.verdict = "neutral"
    else:
        cell.verdict = "good" if (diff > 0) == hib else "bad"


def make_cell(record: dict, name: str, base: dict | None, column: Column | None = None) -> Cell:
    vd = metric(record, name)
    if vd is None:
        if name in VS_BASE and is_base(record):
            return Cell("ref.", "reference", "the base model is the reference of this metric")
        return Cell("n/a", "missing", f"{name} was not recorded for this run")
    status = vd["status"]
    if status == "unavailable":
        return Cell("n/a", "unavailable", vd["note"] or "unavailable (no reason given)")
    val = float(vd["value"])
    cell = Cell(fmt_value(val, vd["unit"]), status, value=val)
    if status == "estimated":
        cell.note = vd["note"] or "estimated, not measured"
    iv = interval_of(vd["details"])
    if iv is not None and val:
        cell.title = f"{100 * vd['details'].get('confidence', 0.95):g}% interval {fmt_value(iv[0], vd['unit'])} .. {fmt_value(iv[1], vd['unit'])}"
    if base is None or base is record or (column is not None and not column.delta):
        return cell
    b = number(base, name)
    if b is None:
        return cell
    hib = direction(name, vd)
    if column is not None and column.ratio:
        paired = ratio_change(record, column.ratio, hib)
        if paired is not None:
            cell.delta, cell.arrow, cell.verdict, cell.title = paired
            return cell
        _plain_change(cell, name, val, b, hib)
        cell.delta += " (unpaired)"
        cell.verdict = "neutral"
        cell.title = "timed separately from the base, no paired ratio recorded: no claim of a change"
        return cell
    _plain_change(cell, name, val, b, hib)
    return cell


def _pick_metric(records: list[dict], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` some record holds with a value, else one recorded at all, else None."""
    for name in names:
        if any(number(r, name) is not None for r in records):
            return name
    for name in names:
        if any(metric(r, name) for r in records):
            return name
    return None


def _base_for(record: dict, bases: list[dict]) -> dict | None:
    """The base a pruned record is compared with: same smoke flag first, then same run, same seed, newest."""
    if not bases:
        return None

    def rank(b: dict) -> tuple:
        return (
            b["smoke"] == record["smoke"],
            b["run_id"] == record["run_id"],
            b["seed"] == record["seed"],
            b["created_at"],
        )

    return max(bases, key=rank)


def build_groups(records: list[dict]) -> list[Group]:
    ok = [r for r in records if r["status"] == "ok"]
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_model[r["model"]].append(r)
    groups = []
    for model in sorted(by_model):
        recs = by_model[model]
        bases = sorted([r for r in recs if is_base(r)], key=lambda r: (r["seed"] is None, r["seed"] or 0))
        pruned = sorted(
            [r for r in recs if not is_base(r)],
            key=lambda r: (r["method"], float(r["ratio"]), r["seed"] or 0),
        )
        seeds = {r["seed"] for r in recs}
        chosen = {c.key: _pick_metric(recs, c.metrics) for c in COLUMNS}
        columns = tuple(c for c in COLUMNS if chosen[c.key] is not None)
        rows = []
        for r in bases + pruned:
            base = None if is_base(r) else _base_for(r, bases)
            cells = {c.key: make_cell(r, chosen[c.key], base, c) for c in columns}
            rows.append(Row(r, label(r, with_seed=len(seeds) > 1), cells, base))
        metric_for = {k: v for k, v in chosen.items() if v is not None}
        groups.append(Group(model, rows, metric_for, bases, pruned, columns))
    return groups
