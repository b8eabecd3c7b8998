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

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ecodiff_bench.core.stats import interval_of  # noqa: E402
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
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def method_colors(methods) -> dict[str, str]:
    """One colour per method (the base in black), the same in every plot of a report."""
    names = sorted({m for m in methods if m != "base"})
    out = {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)}
    out["base"] = BASE_COLOR
    return out


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def axis_label(name: str, hib: bool | None) -> str:
    way = "" if hib is None else (" (higher is better ↑)" if hib else " (lower is better ↓)")
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
def quality_vs_energy(groups: list[Group]) -> Plot:
    """Per model: quality against energy per image, every point labelled, the Pareto front drawn."""
    records = [row.record for g in groups for row in g.rows]
    qname = quality_metric(records)
    title = "Quality vs energy (Pareto front)"
    if qname is None:
        why = "Not enough records with both energy_image_j and a quality metric (fid, frechet_distance, "
        return Plot("quality_vs_energy", title, None, [why + "clip_score or ssim_vs_base) available."])
    hib = direction(qname, None)
    colors = method_colors(r["method"] for r in records)
    shown = [(g, pts) for g in groups if (pts := _energy_points(g, qname))]
    ncols = min(2, len(shown))
    nrows = -(-len(shown) // ncols)
    fig = Figure(layout="constrained", figsize=(6.2 * ncols, 4.6 * nrows))
    left_out = []
    for k, (g, pts) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        plotted = {id(p[0]) for p in pts}
        left_out += [full_label(row.record) for row in g.rows if id(row.record) not in plotted]
        xy = [(x, y) for _, x, _, y in pts]
        texts = []
        for r, x, iv, y in pts:
            c = colors[r["method"]]
            xerr = [[x - iv[0]], [iv[1] - x]] if iv else None
            est = (metric(r, "energy_image_j") or {}).get("status") == "estimated"
            ax.errorbar(
                [x],
                [y],
                xerr=xerr,
                fmt="s" if is_base(r) else "o",
                color=c,
                ms=7,
                mfc="white" if est else c,
                mew=1.5,
                capsize=3,
                lw=1,
                zorder=3,
            )
            text = "base" if is_base(r) else f"{100 * float(r['ratio']):.0f}%"
            texts.append(ax.text(x, y, text, fontsize=8, color=c, zorder=4))
        front = pareto_front(xy, bool(hib))
        ax.plot(
            [xy[i][0] for i in front],
            [xy[i][1] for i in front],
            color="#999",
            ls="--",
            lw=1,
            zorder=2,
            label="Pareto front",
        )
        ax.set_xlabel("energy per image [J] (lower is better ←)")
        ax.set_ylabel(axis_label(qname, hib))
        ax.set_title(g.model, fontsize=10)
        ax.grid(True, alpha=0.3)
        _label_points(ax, texts)
        if k == 0:
            _method_legend(ax, colors, [r["method"] for r in records], loc="best")
    msgs = [f"Not plotted ({qname} or energy_image_j n/a): {', '.join(left_out)}"] if left_out else []
    cap = (
        "One panel per model; colour = method, label = pruning ratio; squares: the unpruned base. A pruned "
        "model's energy is the base's times its paired ratio (timed in alternation with the base, so "
        "noise between separate measurements does not move it); horizontal bars: its confidence interval. "
        "Hollow markers: estimated energy (CPU: TDP x CPU time). Dashed: the Pareto front (no other "
        "variant of the model uses less energy at better quality)."
    )
    return Plot("quality_vs_energy", title, png_bytes(fig), msgs, cap)


def _energy_points(group: Group, qname: str) -> list[tuple[dict, float, tuple[float, float] | None, float]]:
    """(record, energy per image, its interval, quality) of a group's records that have both; a pruned
    record's energy through its paired ratio to the base it is compared with (``Row.base``)."""
    out = []
    for row in group.rows:
        r, y = row.record, number(row.record, qname)
        base_j = number(row.base, "energy_image_j") if row.base and not is_base(r) else None
        ratio = None if base_j is None else number(r, "energy_ratio_vs_base")
        if ratio is not None:  # the paired ratio, scaled by the base's energy
            x, iv = base_j * ratio, interval_of(metric(r, "energy_ratio_vs_base")["details"])
            iv = (base_j * iv[0], base_j * iv[1]) if iv else None
        else:
            x = number(r, "energy_image_j")
            iv = interval_of(metric(r, "energy_image_j")["details"]) if x is not None else None
        if x is not None and y is not None:
            out.append((r, x, iv, y))
    return out


# -- paired ratios -----------------------------------------------------------------------------------
RATIO_PANELS = (
    ("latency_ratio_vs_base", "latency per image, pruned / base"),
    ("energy_ratio_vs_base", "energy per image, pruned / base"),
)


def paired_ratios(groups: list[Group]) -> Plot:
    """Every pruned model's latency and energy ratio to its base, with the interval; 1 = no change."""
    rows = [(g.model, row.record) for g in groups for row in g.rows if not is_base(row.record)]
    rows = [(m, r) for m, r in rows if any(number(r, name) is not None for name, _ in RATIO_PANELS)]
    title = "Speed and energy: paired ratios to the base"
    if not rows:
        return Plot(
            "paired_ratios", title, None, ["No pruned record holds a paired latency or energy ratio."]
        )
    colors = method_colors(r["method"] for _, r in rows)
    fig = Figure(layout="constrained", figsize=(10, max(3.0, 0.28 * len(rows) + 1.8)))
    labels = [f"{m} · {r['method']} @{100 * float(r['ratio']):.0f}%" for m, r in rows]
    first = None
    for k, (name, xlabel) in enumerate(RATIO_PANELS):
        ax = fig.add_subplot(1, 2, k + 1, sharey=first)
        first = first or ax
        for i, (_, r) in enumerate(rows):
            v = number(r, name)
            if v is None:
                ax.text(1.0, i, "n/a", ha="center", va="center", fontsize=7, color="#888")
                continue
            iv = interval_of(metric(r, name)["details"])
            none = iv is None or iv[0] <= 1.0 <= iv[1]
            c = colors[r["method"]]
            xerr = [[v - iv[0]], [iv[1] - v]] if iv else None
            ax.errorbar(
                [v], [i], xerr=xerr, fmt="o", color=c, mfc="white" if none else c, mew=1.5, capsize=3, lw=1.2
            )
        ax.axvline(1.0, color="#444", lw=1, ls=":")
        ax.set_xlabel(f"{xlabel} (< 1 is better ←)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_yticks(range(len(rows)))
        if k == 0:
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
        else:
            ax.tick_params(labelleft=False)
    methods = {r["method"] for _, r in rows}  # above the panels, where it hides no interval
    _method_legend(fig, colors, methods, loc="outside upper center", ncols=len(methods))
    cap = (
        "Each pruned model timed in alternation with its base in the same run; the point is the ratio of "
        "medians over the pairs, the bar its bootstrap confidence interval. Hollow points: the interval "
        "contains 1, no measurable change."
    )
    return Plot("paired_ratios", title, png_bytes(fig), [], cap)
