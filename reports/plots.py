"""Report plots rendered with matplotlib's object API (Agg canvas, no pyplot state) to PNG bytes.

Each builder returns a :class:`Plot`; when its data or artifact is missing the plot has ``png=None`` and
its ``messages`` say what is missing, so the report shows the reason instead of failing.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from reports.analysis import (  # noqa: E402
    Group,
    direction,
    full_label,
    is_base,
    label,
    load_json_artifact,
    metric,
    number,
    pareto_front,
    quality_metric,
    resolve_artifact,
)

DPI = 100
_COLORS = (
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


@dataclass
class Plot:
    key: str
    title: str
    png: bytes | None
    messages: list[str] = field(default_factory=list)
    caption: str = ""


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _color_map(names) -> dict[str, str]:
    return {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(sorted(set(names)))}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


# -- quality vs energy -----------------------------------------------------------------------------------
def quality_vs_energy(records: list[dict]) -> Plot:
    ok = [r for r in records if r["status"] == "ok"]
    qname = quality_metric(ok)
    if qname is None:
        return Plot(
            "quality_vs_energy",
            "Quality vs energy",
            None,
            [
                "Not enough records with both energy_image_j and a quality metric "
                "(fid, frechet_distance, clip_score or ssim_vs_base) available."
            ],
        )
    pts = [r for r in ok if number(r, qname) is not None and number(r, "energy_image_j") is not None]
    hib = direction(qname, metric(pts[0], qname))
    colors = _color_map(r["model"] for r in pts)
    fig = Figure(layout="constrained", figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in pts:
        by_model[r["model"]].append(r)
    for model, recs in sorted(by_model.items()):
        xy = [(number(r, "energy_image_j"), number(r, qname)) for r in recs]
        front = pareto_front(xy, bool(hib))
        c = colors[model]
        for r, (x, y) in zip(recs, xy, strict=True):
            marker = "s" if is_base(r) else "o"
            est = any((metric(r, m) or {}).get("status") == "estimated" for m in (qname, "energy_image_j"))
            ax.scatter(
                [x],
                [y],
                color=c,
                marker=marker,
                s=40,
                edgecolors="black" if est else c,
                linewidths=1.5 if est else 0.5,
                zorder=3,
            )
            ax.annotate(label(r), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        fx = [xy[i][0] for i in front]
        fy = [xy[i][1] for i in front]
        ax.plot(fx, fy, color=c, linestyle="--", linewidth=1.2, zorder=2, label=f"{model} Pareto front")
        ax.scatter(fx, fy, facecolors="none", edgecolors=c, s=140, linewidths=1.2, zorder=2)
    ax.set_xlabel("energy per image [J]")
    ax.set_ylabel(f"{qname} ({'higher' if hib else 'lower'} is better)")
    ax.set_title(f"Quality vs energy: {qname}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    msgs = []
    left_out = [full_label(r) for r in ok if r not in pts]
    if left_out:
        msgs.append(f"Not plotted ({qname} or energy_image_j n/a): {', '.join(left_out)}")
    cap = (
        "Squares: base models; circles: pruned; ringed points lie on the Pareto front "
        "(no other model of the same family uses less energy at better quality)."
    )
    return Plot("quality_vs_energy", "Quality vs energy (Pareto front)", _png(fig), msgs, cap)


# -- latency and energy bars ----------------------------------------------------------------------------
def latency_energy_bars(groups: list[Group]) -> Plot:
    rows = [row for g in groups for row in g.rows]
    if not rows:
        return Plot("latency_energy", "Latency and energy", None, ["No successful records to plot."])
    labels = [f"{row.record['model']} · {row.label}" for row in rows]
    colors = _color_map(row.record["method"] for row in rows)
    fig = Figure(layout="constrained", figsize=(10, min(30.0, 0.3 * len(rows) + 1.6)))
    msgs = []
    first_ax = None
    for k, (name, title, unit_label) in enumerate(
        (("latency_image_s", "Latency per image", "s"), ("energy_image_j", "Energy per image", "J"))
    ):
        ax = fig.add_subplot(1, 2, k + 1, sharey=first_ax)
        first_ax = first_ax or ax
        missing = []
        for i, row in enumerate(rows):
            v = number(row.record, name)
            if v is None:
                missing.append(full_label(row.record))
                ax.text(0, i, " n/a", ha="left", va="center", fontsize=7)
                continue
            err = None
            sd = (metric(row.record, name) or {"details": {}})["details"].get("stdev")
            if isinstance(sd, (int, float)) and math.isfinite(sd):
                err = sd
            est = (metric(row.record, name) or {}).get("status") == "estimated"
            ax.barh(
                i,
                v,
                color=colors[row.record["method"]],
                xerr=err,
                capsize=3,
                hatch="//" if est else None,
                edgecolor="black",
                linewidth=0.4,
            )
        ax.set_yticks(range(len(rows)))
        if k == 0:
            ax.set_yticklabels(labels, fontsize=7)
        else:
            ax.tick_params(labelleft=False)
        if k == 0:
            ax.invert_yaxis()
        ax.set_xlabel(f"{title.lower()} [{unit_label}]")
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
        if missing:
            msgs.append(f"{name} n/a for: {', '.join(missing)}")
    return Plot(
        "latency_energy",
        "Latency and energy per image",
        _png(fig),
        msgs,
        "Error bars: standard deviation where recorded; hatched bars are estimates; colour = method.",
    )


# -- per-layer kept units heatmap -----------------------------------------------------------------------
def _short_names(names: list[str]) -> list[str]:
    if len(names) < 2:
        return names
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


def _pct(x) -> str:
    return f"{100 * float(x):.3g}%" if isinstance(x, (int, float)) and not isinstance(x, bool) else "?"


def plan_summary(plan: dict) -> str:
    """'target 20% of params, achieved 19.6%' from a plan.json (pruning.plan.PruningPlan.to_dict shape;
    a plain numeric 'target'/'achieved' is accepted too)."""
    target, achieved = plan.get("target"), plan.get("achieved")
    ratio = plan.get("ratio", target if isinstance(target, (int, float)) else None)
    basis = target if isinstance(target, str) else "params"
    if isinstance(achieved, dict):
        key = "units_removed_frac" if basis == "units" else "params_removed_frac_of_prunable"
        achieved = achieved.get(key)
    return f"target {_pct(ratio)} of {basis}, achieved {_pct(achieved)}"


def kept_units_heatmaps(groups: list[Group], roots) -> list[Plot]:
    plots = []
    for g in groups:
        if not g.pruned:
            continue
        cols: list[tuple[str, dict]] = []
        msgs = []
        for r in g.pruned:
            art = resolve_artifact(r, "plan", roots)
            plan, problem = load_json_artifact(art)
            if problem is None and not (isinstance(plan, dict) and isinstance(plan.get("modules"), dict)):
                problem = f"plan at {art.path} has no 'modules' mapping"
            if problem:
                msgs.append(f"{label(r, True)}: {problem}")
                continue
            cols.append((label(r, True), plan))
        key = f"kept_units_{_slug(g.model)}"
        title = f"{g.model}: kept units per module"
        if not cols:
            plots.append(Plot(key, title, None, msgs or ["no plan artifacts"]))
            continue
        kinds: dict[str, list[str]] = defaultdict(list)
        for _, plan in cols:
            for mod, spec in plan["modules"].items():
                kind = str(spec.get("kind", "units")) if isinstance(spec, dict) else "units"
                if mod not in kinds[kind]:
                    kinds[kind].append(mod)
        n_rows = max(len(v) for v in kinds.values())
        height = min(28.0, max(3.0, 0.16 * n_rows + 1.8))
        fig = Figure(layout="constrained", figsize=(max(4.5, 3.2 * len(kinds) + 0.5 * len(cols)), height))
        bad, axes = [], []
        for k, (kind, mods) in enumerate(sorted(kinds.items())):
            ax = fig.add_subplot(1, len(kinds), k + 1)
            grid = []
            for mod in mods:
                line = []
                for lab, plan in cols:
                    spec = plan["modules"].get(mod)
                    try:
                        total = int(spec["total"])
                        frac = len(spec["kept"]) / total if total > 0 else float("nan")
                    except (TypeError, KeyError, ValueError):
                        frac = float("nan")
                        if spec is not None:
                            bad.append(f"{lab}: {mod}")
                    line.append(frac)
                grid.append(line)
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks(range(len(cols)))
            ax.set_xticklabels([c[0] for c in cols], rotation=45, ha="right", fontsize=7)
            step = max(1, math.ceil(len(mods) / 60))
            ax.set_yticks(range(0, len(mods), step))
            ax.set_yticklabels(_short_names(mods)[::step], fontsize=8 if len(mods) <= 30 else 6)
            ax.set_title(f"{kind}", fontsize=9)
            axes.append(ax)
        fig.colorbar(im, ax=axes, fraction=0.05, label="kept fraction")
        if bad:
            msgs.append(f"Malformed module entries (need 'total' and 'kept'): {', '.join(bad[:5])}")
        cap = (
            "Fraction of units kept per module (rows) for each pruned model (columns); "
            "blank cells: module absent from that plan. "
            + "; ".join(f"{lab}: {plan_summary(plan)}" for lab, plan in cols)
        )
        plots.append(Plot(key, title, _png(fig), msgs, cap))
    return plots


# -- power timeline ---------------------------------------------------------------------------------
def power_timelines(groups: list[Group], roots) -> list[Plot]:
    plots = []
    for g in groups:
        fig = Figure(layout="constrained", figsize=(7, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        msgs, drawn = [], 0
        for i, row in enumerate(g.rows):
            data, problem = load_json_artifact(resolve_artifact(row.record, "power_timeline", roots))
            if problem is None:
                try:
                    t = [float(p[0]) for p in data]
                    w = [float(p[1]) for p in data]
                    if not t:
                        problem = "power timeline is empty"
                except (TypeError, ValueError, IndexError, KeyError):
                    problem = "power timeline is not a list of [t_s, watts] pairs"
            if problem:
                msgs.append(f"{row.label}: {problem}")
                continue
            ax.plot(t, w, linewidth=1.0, color=_COLORS[i % len(_COLORS)], label=row.label)
            drawn += 1
        key = f"power_{_slug(g.model)}"
        title = f"{g.model}: GPU power during generation"
        if not drawn:
            plots.append(Plot(key, title, None, msgs))
            continue
        ax.set_xlabel("time [s]")
        ax.set_ylabel("power [W]")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        plots.append(Plot(key, title, _png(fig), msgs))
    return plots


# -- mask training curves -------------------------------------------------------------------------------
def training_curves(groups: list[Group], roots) -> list[Plot]:
    plots = []
    for g in groups:
        if not g.pruned:
            continue
        fig = Figure(layout="constrained", figsize=(9, 3.5))
        ax_l = fig.add_subplot(1, 2, 1)
        ax_s = fig.add_subplot(1, 2, 2)
        msgs, drawn = [], 0
        for i, r in enumerate(g.pruned):
            lab = label(r, True)
            art = resolve_artifact(r, "training_curve", roots)
            if art.problem and r["method"] != "ecodiff" and not r["artifacts"].get("training_curve"):
                continue  # methods without mask training have no curve; nothing to report
            data, problem = load_json_artifact(art)
            if problem is None:
                try:
                    steps = [float(p["step"]) for p in data]
                    if not steps:
                        problem = "training curve is empty"
                except (TypeError, KeyError, ValueError):
                    problem = "training curve is not a list of {step, loss, mse, sparsity} objects"
            if problem:
                msgs.append(f"{lab}: {problem}")
                continue
            c = _COLORS[i % len(_COLORS)]
            for key, style in (("loss", "-"), ("mse", ":")):
                pts = [
                    (float(p["step"]), float(p[key])) for p in data if isinstance(p.get(key), (int, float))
                ]
                if pts:
                    ax_l.plot(*zip(*pts, strict=True), style, color=c, linewidth=1.0, label=f"{lab} {key}")
            pts = [
                (float(p["step"]), float(p["sparsity"]))
                for p in data
                if isinstance(p.get("sparsity"), (int, float))
            ]
            if pts:
                ax_s.plot(*zip(*pts, strict=True), color=c, linewidth=1.0, label=lab)
            drawn += 1
        key = f"training_{_slug(g.model)}"
        title = f"{g.model}: mask training"
        if not drawn:
            if msgs:
                plots.append(Plot(key, title, None, msgs))
            continue
        ax_l.set_xlabel("step")
        ax_l.set_ylabel("loss / mse")
        ax_l.set_title("loss (solid) and mse (dotted)", fontsize=9)
        ax_l.grid(True, alpha=0.3)
        ax_l.legend(fontsize=6)
        ax_s.set_xlabel("step")
        ax_s.set_ylabel("sparsity")
        ax_s.set_title("sparsity", fontsize=9)
        ax_s.grid(True, alpha=0.3)
        ax_s.legend(fontsize=6)
        plots.append(Plot(key, title, _png(fig), msgs))
    return plots


# -- sample grids -----------------------------------------------------------------------------------
@dataclass
class Sample:
    model: str
    label: str
    seed: object
    png: bytes | None
    mime: str
    suffix: str
    message: str = ""


_MIME = {
    b"\x89PNG": ("image/png", ".png"),
    b"\xff\xd8\xff": ("image/jpeg", ".jpg"),
    b"RIFF": ("image/webp", ".webp"),
}


def sample_grids(groups: list[Group], roots) -> list[Sample]:
    out = []
    for g in groups:
        for row in g.rows:
            r = row.record
            art = resolve_artifact(r, "samples", roots)
            if not art.ok:
                out.append(Sample(g.model, row.label, r["seed"], None, "", "", art.problem))
                continue
            try:
                data = art.path.read_bytes()
            except OSError as exc:
                out.append(Sample(g.model, row.label, r["seed"], None, "", "", f"could not read: {exc}"))
                continue
            kind = next((v for sig_, v in _MIME.items() if data.startswith(sig_)), None)
            if kind is None:
                out.append(
                    Sample(
                        g.model,
                        row.label,
                        r["seed"],
                        None,
                        "",
                        "",
                        f"{art.path} is not a PNG/JPEG/WebP image",
                    )
                )
                continue
            out.append(Sample(g.model, row.label, r["seed"], data, kind[0], kind[1]))
    return out
