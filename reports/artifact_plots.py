"""Report figures made from the records' artifacts: kept units per layer (plan.json), GPU power
timelines, mask-training curves and the sample grids (upscaled so a person can read them)."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass

from matplotlib.figure import Figure

from reports.cells import Group, Row
from reports.plots import COLORS, Plot, png_bytes, slug
from reports.records import label, load_json_artifact, resolve_artifact

SAMPLE_MIN_WIDTH = 640  # px: sample grids are upscaled (nearest neighbour) to at least this width


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
    """'target 20% of params, achieved 19.6%' from a plan.json (pruning.plans.PruningPlan.to_dict shape;
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
        key = f"kept_units_{slug(g.model)}"
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
        # each panel as wide as its module names (about 0.07 in per character) plus its columns
        label_chars = [max(len(n) for n in _short_names(mods)) for mods in kinds.values()]
        width = sum(0.07 * c + max(2.0, 0.45 * len(cols) + 0.6) for c in label_chars) + 1.2
        fig = Figure(layout="constrained", figsize=(max(4.5, width), height))
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
        plots.append(Plot(key, title, png_bytes(fig), msgs, cap))
    return plots


# -- power timeline ---------------------------------------------------------------------------------
def power_timelines(groups: list[Group], roots) -> tuple[list[Plot], list[str]]:
    """One plot per model with a recorded power timeline, and what is missing: said once per model, or once
    in all when no record has one."""
    plots, missing = [], []
    for g in groups:
        fig = Figure(layout="constrained", figsize=(7, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        msgs, drawn, absent = [], 0, 0
        for i, row in enumerate(g.rows):
            if not row.record["artifacts"].get("power_timeline"):
                absent += 1
                continue
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
            ax.plot(t, w, ".", ms=3, color=COLORS[i % len(COLORS)], label=row.label)
            drawn += 1
        if absent:
            missing.append(
                f"{g.model}: {absent} of {len(g.rows)} record(s) have no power timeline "
                "(it is sampled from NVML; these runs saw no NVIDIA GPU)"
            )
        if not drawn:
            if msgs:
                plots.append(Plot(f"power_{slug(g.model)}", f"{g.model}: GPU power", None, msgs))
            continue
        ax.set_xlabel("time since the first timed call [s]")
        ax.set_ylabel("GPU power, all GPUs [W]")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        cap = "Samples taken while each model's own timed blocks ran (gaps: its base was running)."
        plots.append(
            Plot(
                f"power_{slug(g.model)}", f"{g.model}: GPU power during generation", png_bytes(fig), msgs, cap
            )
        )
    if missing and not plots:  # every record lacks one, for the same reason: said once
        n = sum(len(g.rows) for g in groups)
        missing = [
            f"No power timeline in any of the {n} records: it is sampled from NVML, and these runs saw no "
            "NVIDIA GPU."
        ]
    return plots, missing


# -- mask training curves -------------------------------------------------------------------------------
@dataclass
class Curve:
    steps: list[float]
    loss: list[float] | None
    mse: list[float] | None
    mse_name: str
    removed: list[float] | None  # expected share of prunable parameters removed
    removed_name: str
    target: list[float] | None


def _series(data: list[dict], key: str) -> list[float] | None:
    vals = [p.get(key) for p in data]
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return [float(v) for v in vals]
    return None


def read_curve(data) -> Curve:
    """A training curve in either recorded shape: the controller's (``nmse``, ``expected_sparsity``,
    ``target``) or the older one (``loss``, ``mse``, ``sparsity`` = expected share of OPEN gates)."""
    if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
        raise ValueError("training curve is not a non-empty list of per-step objects")
    steps = _series(data, "step")
    if steps is None:
        raise ValueError("training curve rows have no numeric 'step'")
    mse, mse_name = _series(data, "nmse"), "normalized MSE"
    if mse is None:
        mse, mse_name = _series(data, "mse"), "MSE"
    removed, removed_name = _series(data, "expected_sparsity"), "expected removed share"
    if removed is None and (open_share := _series(data, "sparsity")) is not None:
        removed, removed_name = [1 - x for x in open_share], "1 - mean open-gate share (older log)"
    return Curve(steps, _series(data, "loss"), mse, mse_name, removed, removed_name, _series(data, "target"))


def training_curves(groups: list[Group], roots) -> list[Plot]:
    plots = []
    for g in groups:
        curves: dict[str, tuple[list[str], Curve, float]] = {}  # identical logs are drawn once
        msgs = []
        for r in g.pruned:
            lab = label(r, True)
            art = resolve_artifact(r, "training_curve", roots)
            if not r["artifacts"].get("training_curve"):
                continue  # methods without mask training have no curve
            data, problem = load_json_artifact(art)
            if problem is None:
                try:
                    curve = read_curve(data)
                except ValueError as exc:
                    problem = str(exc)
            if problem:
                msgs.append(f"{lab}: {problem}")
                continue
            key = repr(data)
            if key in curves:
                curves[key][0].append(lab)
            else:
                curves[key] = ([lab], curve, float(r["ratio"]))
        key, title = f"training_{slug(g.model)}", f"{g.model}: mask training"
        if not curves:
            if msgs:
                plots.append(Plot(key, title, None, msgs))
            continue
        plots.append(Plot(key, title, _training_figure(list(curves.values())), msgs, _TRAINING_CAPTION))
    return plots


_TRAINING_CAPTION = (
    "Left: the training objective and its reconstruction term (final latent vs the unpruned model's) per "
    "optimizer step. Right: the expected share of prunable parameters the masks would remove, with the "
    "controller's (ramped) target dashed and the pruning ratio dotted. Runs with identical logs (one mask "
    "training shared by several ratios) are drawn once."
)


def _training_figure(curves: list[tuple[list[str], Curve, float]]) -> bytes:
    fig = Figure(layout="constrained", figsize=(11, 3.8))
    ax_l, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    log_ok = True
    for i, (labels, c, ratio) in enumerate(curves):
        color, name = COLORS[i % len(COLORS)], ", ".join(labels)
        if c.loss is not None:
            ax_l.plot(c.steps, c.loss, "-", color=color, lw=1.3, label=f"{name}: loss")
            log_ok &= min(c.loss) > 0
        if c.mse is not None:
            ax_l.plot(c.steps, c.mse, "--", color=color, lw=1.0, label=f"{name}: {c.mse_name}")
            log_ok &= min(c.mse) > 0
        if c.removed is not None:
            ax_s.plot(c.steps, c.removed, "-", color=color, lw=1.5, label=f"{name}: {c.removed_name}")
        if c.target is not None:
            ax_s.plot(c.steps, c.target, "--", color=color, lw=1.0, label=f"{name}: target")
        ax_s.axhline(ratio, color=color, ls=":", lw=0.8)
    if log_ok:
        ax_l.set_yscale("log")
    ax_l.set_xlabel("optimizer step")
    ax_l.set_ylabel("loss, MSE (lower is better ↓)")
    ax_l.set_title("objective", fontsize=9)
    ax_s.set_xlabel("optimizer step")
    ax_s.set_ylabel("share of prunable parameters removed")
    ax_s.set_title("expected sparsity vs target (dotted: pruning ratio)", fontsize=9)
    for ax in (ax_l, ax_s):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return png_bytes(fig)


# -- sample grids -----------------------------------------------------------------------------------
@dataclass
class Sample:
    """One record's sample grid, upscaled to a PNG (``png`` None: ``message`` says why there is none)."""

    model: str
    label: str
    seed: object
    png: bytes | None
    message: str = ""
    width: int = 0
    height: int = 0


#: The first bytes of the image formats a sample grid may be stored in: PNG, JPEG, WebP.
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF")


def upscale(data: bytes, min_width: int = SAMPLE_MIN_WIDTH) -> tuple[bytes, int, int]:
    """A small image enlarged by a whole factor, nearest neighbour (pixels stay sharp), as PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        factor = max(1, math.ceil(min_width / max(1, image.width)))
        size = (image.width * factor, image.height * factor)
        big = image.convert("RGB").resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), big.width, big.height


def _sample_grid(model: str, row: Row, roots) -> Sample:
    record = row.record

    def missing(why: str) -> Sample:
        return Sample(model, row.label, record["seed"], None, why)

    artifact = resolve_artifact(record, "samples", roots)
    if not artifact.ok:
        return missing(artifact.problem)
    try:
        data = artifact.path.read_bytes()
    except OSError as exc:
        return missing(f"could not read: {exc}")
    if not data.startswith(IMAGE_SIGNATURES):
        return missing(f"{artifact.path} is not a PNG/JPEG/WebP image")
    try:
        png, width, height = upscale(data)
    except OSError as exc:
        return missing(f"could not decode: {exc}")
    return Sample(model, row.label, record["seed"], png, "", width, height)


def sample_grids(groups: list[Group], roots) -> list[Sample]:
    """Every record's sample grid, model by model, in the tables' row order."""
    return [_sample_grid(group.model, row, roots) for group in groups for row in group.rows]
