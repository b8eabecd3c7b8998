"""The release history plots: one per gated metric of a series, releases along the x axis.

Each panel is one model; each line one configuration (colour = method, line style and marker = pruning
ratio, black squares = the base), drawn through the value the gate compares in every release, with its
confidence interval when it has one. Behind each point a shaded band in the line's colour spans the
values the relative thresholds allowed it (from the previous release's value to the limit, which a short
line marks); the dashed grey lines are the metric's absolute window. A red cross marks every value the gate failed,
and the release's name on the x axis says "regression". The data and the verdicts come from
:mod:`reports.releases` (and through it from the gate); nothing here judges.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ecodiff_bench.core.metrics import direction
from reports.plots import BASE_COLOR, Plot, axis_label, method_colors, png_bytes, slug
from reports.releases import Point, Series

REGRESSION_COLOR = "#d62728"
BAND_WIDTH = 0.16
_STYLES = (("-", "o"), ("--", "^"), (":", "D"), ("-.", "v"), ((0, (5, 1)), "P"))
#: How the y axis names a paired ratio (the value a pruned model's timing is gated on).
RATIO_AXES = {
    "latency_ratio_vs_base": "latency per image, pruned / base (paired)",
    "energy_ratio_vs_base": "energy per image, pruned / base (paired)",
}


def _ratio_styles(ratios) -> dict[float, tuple]:
    pruned = sorted({r for r in ratios if r})
    return {r: _STYLES[i % len(_STYLES)] for i, r in enumerate(pruned)}


def _ylabel(metric: str, compared: set[str]) -> str:
    higher_is_better = direction(metric)
    if compared and compared != {metric}:
        names = [RATIO_AXES.get(name, name) for name in sorted(compared - {metric})]
        return axis_label(" / ".join(names), higher_is_better)
    return axis_label(metric, higher_is_better)


def _line(ax, series: Series, points: list[Point], color: str, style: tuple) -> None:
    """One configuration's line, its intervals, allowed bands and regressions (one artist of each kind)."""
    x_of = {name: i for i, name in enumerate(series.releases)}
    ls, marker = style
    shown = [p for p in points if p.value is not None]
    xs, ys = [x_of[p.release] for p in shown], [p.value for p in shown]
    ax.plot(xs, ys, color=color, ls=ls, marker=marker, ms=5, lw=1.4, zorder=3)
    spans = [(x, y, p.interval) for p, x, y in zip(shown, xs, ys, strict=True) if p.interval is not None]
    if spans:
        ax.errorbar([x for x, _, _ in spans], [y for _, y, _ in spans], fmt="none", ecolor=color, lw=1,
                    capsize=2, yerr=[[y - low for _, y, (low, _) in spans], [high - y for _, y, (_, high) in spans]])  # fmt: skip
    banded = [(x, p) for p, x in zip(shown, xs, strict=True) if p.band is not None]
    if banded:  # behind each point: a value outside its own band broke a bound
        lows, highs = [p.band[0] for _, p in banded], [p.band[1] for _, p in banded]
        heights = [high - low for low, high in zip(lows, highs, strict=True)]
        ax.bar([x for x, _ in banded], heights, bottom=lows, width=BAND_WIDTH, color=color, alpha=0.16, lw=0,
               zorder=1)  # fmt: skip
        limits = [(x, end) for x, p in banded for end in {p.band[0], p.band[1]} - {p.band_origin}]
        if limits:  # the limit itself, as a short line
            ax.scatter([x for x, _ in limits], [end for _, end in limits], marker="_", s=260, color=color,
                       lw=1.2, zorder=2)  # fmt: skip
    failed = [(x, y) for p, x, y in zip(shown, xs, ys, strict=True) if p.verdict == "fail"]
    if failed:
        ax.scatter(*zip(*failed, strict=True), marker="X", s=140, color=REGRESSION_COLOR, edgecolor="white",
                   zorder=5)  # fmt: skip
    for p in points:  # a failed run has no value: say so at the top of the panel
        if p.value is None and p.verdict == "fail":
            ax.text(x_of[p.release], 0.97, "run failed", transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=7, color=REGRESSION_COLOR)  # fmt: skip


def _legend(fig, colors: dict[str, str], styles: dict[float, tuple], has_base: bool, window: bool) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=m) for m, c in colors.items() if m != "base"]
    if has_base:
        handles.append(Line2D([], [], color=BASE_COLOR, marker="s", lw=1.4, label="base"))
    handles += [
        Line2D([], [], color="#555", ls=ls, marker=mk, label=f"ratio {100 * r:.0f}%")
        for r, (ls, mk) in styles.items()
    ]
    handles.append(Patch(color="#888", alpha=0.3, label="allowed by the thresholds"))
    if window:
        handles.append(Line2D([], [], color="#666", ls="--", lw=1, label="absolute window"))
    handles.append(
        Line2D([], [], marker="X", ls="", ms=10, color=REGRESSION_COLOR, mec="white", label="regression")
    )
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)


def _release_axis(ax, releases: list[str], failed: set[str]) -> None:
    """The releases along x, oldest first; a release with a regression in this panel marked in red."""
    ax.set_xticks(range(len(releases)))
    ax.set_xticklabels([f"{name}\nregression" if name in failed else name for name in releases], fontsize=8)
    for tick, name in zip(ax.get_xticklabels(), releases, strict=True):
        if name in failed:
            tick.set_color(REGRESSION_COLOR)
            tick.set_fontweight("bold")
    ax.set_xlim(-0.3, len(releases) - 0.7)
    ax.set_xlabel("release (oldest first)", fontsize=8)


def metric_history(series: Series, metric: str) -> Plot:
    """The history plot of one gated metric (see the module doc)."""
    key = f"history_{slug(series.title)}_{slug(metric)}"
    title = f"Release history: {metric} ({series.title})"
    points = series.points.get(metric, [])
    if not any(p.value is not None for p in points):
        return Plot(key, title, None, [f"No release of {series.title} holds a value of {metric} to plot."])
    models = sorted({p.key[0] for p in points})
    methods = {p.key[1] for p in points}
    colors = method_colors(methods)
    styles = _ratio_styles(p.key[2] for p in points)
    ncols = min(2, len(models))
    nrows = -(-len(models) // ncols)
    width = max(4.2, 0.9 * len(series.releases) + 2.4)
    fig = Figure(layout="constrained", figsize=(width * ncols + 1.6, 3.4 * nrows))
    failed = {p.release for p in points if p.verdict == "fail"}
    windows = {p.window for p in points if p.window is not None}
    for k, model in enumerate(models):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        model_points = [p for p in points if p.key[0] == model]
        for config in series.configs(metric):
            if config[0] != model:
                continue
            line = [p for p in points if p.key == config]
            style = (
                (BASE_COLOR, ("-", "s")) if config[1] == "base" else (colors[config[1]], styles[config[2]])
            )
            _line(ax, series, line, *style)
        for low, high in windows:
            for y in (low, high):
                ax.axhline(y, color="#666", ls="--", lw=1, zorder=2)
        _release_axis(ax, series.releases, {p.release for p in model_points if p.verdict == "fail"})
        ax.set_title(model, fontsize=10)
        ax.set_ylabel(_ylabel(metric, {p.compared for p in model_points}), fontsize=8)
        ax.grid(True, alpha=0.3)
    _legend(fig, colors, styles, "base" in methods, bool(windows))
    messages = []
    if failed:
        messages.append(
            f"Regressions of {metric} in: {', '.join(n for n in series.releases if n in failed)}."
        )
    caption = (
        "Lines: one configuration each (colour = method, "
        "style = pruning ratio, black = base); error bars: confidence intervals. Shaded behind each point, "
        "in its line's colour: the values the thresholds allowed it, from the previous release's value to "
        "the limit (the short line). Red crosses: the "
        "gate's regressions (a change whose whole interval is beyond the threshold, or a value outside the "
        "window). Pruned models' latency and energy are the paired ratios to their base; the bases' own "
        "timings are not compared between runs and are not drawn."
    )
    return Plot(key, title, png_bytes(fig), messages, caption)


def history_plots(series: Series) -> list[Plot]:
    return [metric_history(series, m) for m in series.metrics]
