"""Report plots made from the records' metrics, rendered with matplotlib's object API (Agg canvas, no
pyplot state) to PNG bytes: quality against energy (with its Pareto front) and the paired speed and
energy ratios with their intervals. Plots made from artifacts are in :mod:`reports.artifact_plots`.

Each builder returns a :class:`Plot`; when its data is missing the plot has ``png=None`` and its
``messages`` say what is missing, so the report shows the reason instead of failing. Every axis names
its quantity, its unit and which way is better; colours stand for methods, with a legend.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ecodiff_bench.core.stats import change_sign, interval_of  # noqa: E402
from reports.analysis import pareto_front, quality_metric  # noqa: E402
from reports.cells import Group  # noqa: E402
from reports.records import direction, full_label, is_base, metric, number  # noqa: E402

DPI = 100
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BASE_COLOR = "#222222"
#: How an axis names a metric (the catalog names are for machines).
AXIS_NAMES = {
    "fid": "FID",
    "frechet_distance": "Fréchet distance",
    "clip_score": "CLIP score",
    "ssim_vs_base": "SSIM vs base",
    "psnr_vs_base": "PSNR vs base [dB]",
    "recognisability": "recognisability",
}


@dataclass
class Plot:
    key: str
    title: str
    png: bytes | None
    messages: list[str] = field(default_factory=list)
    caption: str = ""


def png_bytes(fig: Figure) -> bytes:
    """The figure rendered to PNG (on its own Agg canvas: no pyplot state)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def method_colors(methods) -> dict[str, str]:
    """One colour per method (the base in black), the same in every plot of a report."""
    names = sorted({m for m in methods if m != "base"})
    out = {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)}
    out["base"] = BASE_COLOR
    return out


def slug(text: str) -> str:
    """``text`` made safe for a file name or an HTML id (letters, digits, - and _)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def axis_label(name: str, higher_is_better: bool | None) -> str:
    """The axis title of a metric, with which way is better."""
    way = {None: "", True: " (higher is better ↑)", False: " (lower is better ↓)"}[higher_is_better]
    return AXIS_NAMES.get(name, name) + way


def _method_legend(where, colors: dict[str, str], methods, **kw) -> None:
    """A legend of the methods' colours on an axes or a whole figure."""
    handles = [
        Line2D([], [], marker="s" if m == "base" else "o", linestyle="", color=colors[m], label=m)
        for m in sorted(set(methods), key=lambda m: (m != "base", m))
    ]
    where.legend(handles=handles, title="method", fontsize=8, title_fontsize=8, **kw)


def _label_points(ax, texts) -> None:
    """Move point labels apart (adjustText), with a thin line back to their point."""
    from adjustText import adjust_text

    if texts:
        adjust_text(texts, ax=ax, arrowprops={"arrowstyle": "-", "color": "#888", "lw": 0.5})


# -- quality vs energy -----------------------------------------------------------------------------------
class EnergyPoint(NamedTuple):
    record: dict
    energy: float  # J per image
    interval: tuple[float, float] | None  # of the energy
    quality: float


def quality_vs_energy(groups: list[Group]) -> Plot:
    """Per model: quality against energy per image, every point labelled, the Pareto front drawn."""
    records = [row.record for group in groups for row in group.rows]
    quality = quality_metric(records)
    title = "Quality vs energy (Pareto front)"
    if quality is None:
        why = "Not enough records with both energy_image_j and a quality metric (fid, frechet_distance, "
        return Plot("quality_vs_energy", title, None, [why + "clip_score or ssim_vs_base) available."])
    colors = method_colors(r["method"] for r in records)
    shown = [(group, points) for group in groups if (points := _energy_points(group, quality))]
    ncols = min(2, len(shown))
    nrows = -(-len(shown) // ncols)
    fig = Figure(layout="constrained", figsize=(6.2 * ncols, 4.6 * nrows))
    left_out = []
    for k, (group, points) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        plotted = {id(point.record) for point in points}
        left_out += [full_label(row.record) for row in group.rows if id(row.record) not in plotted]
        _energy_panel(ax, group.model, points, quality, colors)
        if k == 0:
            _method_legend(ax, colors, [r["method"] for r in records], loc="best")
    messages = [f"Not plotted ({quality} or energy_image_j n/a): {', '.join(left_out)}"] if left_out else []
    caption = (
        "One panel per model; colour = method, label = pruning ratio; squares: the unpruned base. A pruned "
        "model's energy is the base's times its paired ratio (timed in alternation with the base, so "
        "noise between separate measurements does not move it); horizontal bars: its confidence interval. "
        "Hollow markers: estimated energy (CPU: TDP x CPU time). Dashed: the Pareto front (no other "
        "variant of the model uses less energy at better quality)."
    )
    return Plot("quality_vs_energy", title, png_bytes(fig), messages, caption)


def _energy_panel(ax, model: str, points: list[EnergyPoint], quality: str, colors: dict[str, str]) -> None:
    """One model's panel: each point with its energy interval and its label, then the Pareto front."""
    higher_is_better = direction(quality, None)
    labels = []
    for point in points:
        record, color = point.record, colors[point.record["method"]]
        low, high = point.interval or (None, None)
        xerr = [[point.energy - low], [high - point.energy]] if point.interval else None
        estimated = (metric(record, "energy_image_j") or {}).get("status") == "estimated"
        ax.errorbar([point.energy], [point.quality], xerr=xerr, fmt="s" if is_base(record) else "o", color=color,
                    ms=7, mfc="white" if estimated else color, mew=1.5, capsize=3, lw=1, zorder=3)  # fmt: skip
        text = "base" if is_base(record) else f"{100 * float(record['ratio']):.0f}%"
        labels.append(ax.text(point.energy, point.quality, text, fontsize=8, color=color, zorder=4))
    front = pareto_front([(p.energy, p.quality) for p in points], bool(higher_is_better))
    ax.plot([points[i].energy for i in front], [points[i].quality for i in front], color="#999", ls="--", lw=1,
            zorder=2, label="Pareto front")  # fmt: skip
    ax.set_xlabel("energy per image [J] (lower is better ←)")
    ax.set_ylabel(axis_label(quality, higher_is_better))
    ax.set_title(model, fontsize=10)
    ax.grid(True, alpha=0.3)
    _label_points(ax, labels)


def _energy_points(group: Group, quality: str) -> list[EnergyPoint]:
    """The group's records that have both an energy and ``quality``; a pruned record's energy through its
    paired ratio to the base it is compared with (``Row.base``)."""
    out = []
    for row in group.rows:
        record, quality_value = row.record, number(row.record, quality)
        base_joules = number(row.base, "energy_image_j") if row.base and not is_base(record) else None
        ratio = None if base_joules is None else number(record, "energy_ratio_vs_base")
        if ratio is not None:  # the paired ratio, scaled by the base's energy
            energy = base_joules * ratio
            interval = interval_of(metric(record, "energy_ratio_vs_base")["details"])
            interval = (base_joules * interval[0], base_joules * interval[1]) if interval else None
        else:
            energy = number(record, "energy_image_j")
            interval = (
                interval_of(metric(record, "energy_image_j")["details"]) if energy is not None else None
            )
        if energy is not None and quality_value is not None:
            out.append(EnergyPoint(record, energy, interval, quality_value))
    return out


# -- paired ratios -----------------------------------------------------------------------------------
RATIO_PANELS = (
    ("latency_ratio_vs_base", "latency per image, pruned / base"),
    ("energy_ratio_vs_base", "energy per image, pruned / base"),
)


def paired_ratios(groups: list[Group]) -> Plot:
    """Every pruned model's latency and energy ratio to its base, with the interval; 1 = no change."""
    pruned = [(g.model, row.record) for g in groups for row in g.rows if not is_base(row.record)]
    pruned = [(m, r) for m, r in pruned if any(number(r, name) is not None for name, _ in RATIO_PANELS)]
    title = "Speed and energy: paired ratios to the base"
    if not pruned:
        return Plot(
            "paired_ratios", title, None, ["No pruned record holds a paired latency or energy ratio."]
        )
    records = [record for _, record in pruned]
    colors = method_colors(r["method"] for r in records)
    fig = Figure(layout="constrained", figsize=(10, max(3.0, 0.28 * len(pruned) + 1.8)))
    labels = [f"{model} · {r['method']} @{100 * float(r['ratio']):.0f}%" for model, r in pruned]
    first = None
    for k, (name, xlabel) in enumerate(RATIO_PANELS):
        ax = fig.add_subplot(1, 2, k + 1, sharey=first)
        first = first or ax
        _ratio_panel(ax, records, name, colors)
        ax.set_xlabel(f"{xlabel} (< 1 is better ←)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_yticks(range(len(records)))
        if k == 0:
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
        else:
            ax.tick_params(labelleft=False)
    methods = {r["method"] for r in records}  # above the panels, where it hides no interval
    _method_legend(fig, colors, methods, loc="outside upper center", ncols=len(methods))
    caption = (
        "Each pruned model timed in alternation with its base in the same run; the point is the ratio of "
        "medians over the pairs, the bar its bootstrap confidence interval. Hollow points: the interval "
        "contains 1, no measurable change."
    )
    return Plot("paired_ratios", title, png_bytes(fig), [], caption)


def _ratio_panel(ax, records: list[dict], name: str, colors: dict[str, str]) -> None:
    """One ratio for every record, a row each; hollow where the change is not measurable."""
    for i, record in enumerate(records):
        ratio = number(record, name)
        if ratio is None:
            ax.text(1.0, i, "n/a", ha="center", va="center", fontsize=7, color="#888")
            continue
        interval = interval_of(metric(record, name)["details"])
        measurable = change_sign(interval, no_change=1.0) not in (None, 0)
        color = colors[record["method"]]
        xerr = [[ratio - interval[0]], [interval[1] - ratio]] if interval else None
        ax.errorbar([ratio], [i], xerr=xerr, fmt="o", color=color, mfc=color if measurable else "white", mew=1.5,
                    capsize=3, lw=1.2)  # fmt: skip
    ax.axvline(1.0, color="#444", lw=1, ls=":")
