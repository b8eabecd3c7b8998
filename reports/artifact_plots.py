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
    """Module names without the dotted prefix they all share ("blocks.0.attn1", "blocks.1.ff" become
    "0.attn1", "1.ff")."""
    if len(names) < 2:
        return names
    parts = [name.split(".") for name in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


def _percent(share) -> str:
    return (
        f"{100 * float(share):.3g}%"
        if isinstance(share, (int, float)) and not isinstance(share, bool)
        else "?"
    )


def plan_summary(plan: dict) -> str:
    """'target 20% of params, achieved 19.6%' from a plan.json (pruning.plans.PruningPlan.to_dict shape;
    a plain numeric 'target'/'achieved' is accepted too)."""
    target, achieved = plan.get("target"), plan.get("achieved")
    ratio = plan.get("ratio", target if isinstance(target, (int, float)) else None)
    basis = target if isinstance(target, str) else "params"
    if isinstance(achieved, dict):
        key = "units_removed_frac" if basis == "units" else "params_removed_frac_of_prunable"
        achieved = achieved.get(key)
    return f"target {_percent(ratio)} of {basis}, achieved {_percent(achieved)}"


def _plans(group: Group, roots) -> tuple[list[tuple[str, dict]], list[str]]:
    """(label, plan) of each pruned record whose plan.json can be read, and why the others cannot."""
    plans, problems = [], []
    for record in group.pruned:
        artifact = resolve_artifact(record, "plan", roots)
        plan, problem = load_json_artifact(artifact)
        if problem is None and not (isinstance(plan, dict) and isinstance(plan.get("modules"), dict)):
            problem = f"plan at {artifact.path} has no 'modules' mapping"
        if problem:
            problems.append(f"{label(record, True)}: {problem}")
        else:
            plans.append((label(record, True), plan))
    return plans, problems


def _modules_by_kind(plans: list[tuple[str, dict]]) -> dict[str, list[str]]:
    """Every module the plans name, by the kind of unit it prunes (heads, ffn, ...), in first-seen order."""
    kinds: dict[str, list[str]] = defaultdict(list)
    for _, plan in plans:
        for module, spec in plan["modules"].items():
            kind = str(spec.get("kind", "units")) if isinstance(spec, dict) else "units"
            if module not in kinds[kind]:
                kinds[kind].append(module)
    return kinds


def _kept_fraction(spec) -> float:
    """The share of a module's units a plan keeps; raises for an entry without 'total' and 'kept'."""
    total = int(spec["total"])
    return len(spec["kept"]) / total if total > 0 else float("nan")


def _kept_grid(modules: list[str], plans: list[tuple[str, dict]], malformed: list[str]) -> list[list[float]]:
    """The kept fraction of each module (rows) in each plan (columns): NaN (blank) where a plan lacks the
    module or its entry is malformed (named in ``malformed``)."""
    grid = []
    for module in modules:
        line = []
        for plan_label, plan in plans:
            spec = plan["modules"].get(module)
            try:
                line.append(_kept_fraction(spec))
            except (TypeError, KeyError, ValueError):
                line.append(float("nan"))
                if spec is not None:
                    malformed.append(f"{plan_label}: {module}")
        grid.append(line)
    return grid


def _heatmap_figure(plans: list[tuple[str, dict]], malformed: list[str]) -> Figure:
    """One panel per kind of unit: modules down, pruned models across, coloured by the kept fraction."""
    kinds = _modules_by_kind(plans)
    height = min(28.0, max(3.0, 0.16 * max(len(modules) for modules in kinds.values()) + 1.8))
    # each panel as wide as its module names (about 0.07 in per character) plus its columns
    name_chars = [max(len(n) for n in _short_names(modules)) for modules in kinds.values()]
    width = sum(0.07 * chars + max(2.0, 0.45 * len(plans) + 0.6) for chars in name_chars) + 1.2
    fig = Figure(layout="constrained", figsize=(max(4.5, width), height))
    axes = []
    for k, (kind, modules) in enumerate(sorted(kinds.items())):
        ax = fig.add_subplot(1, len(kinds), k + 1)
        grid = _kept_grid(modules, plans, malformed)
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(len(plans)))
        ax.set_xticklabels([plan_label for plan_label, _ in plans], rotation=45, ha="right", fontsize=7)
        step = max(1, math.ceil(len(modules) / 60))
        ax.set_yticks(range(0, len(modules), step))
        ax.set_yticklabels(_short_names(modules)[::step], fontsize=8 if len(modules) <= 30 else 6)
        ax.set_title(f"{kind}", fontsize=9)
        axes.append(ax)
    fig.colorbar(image, ax=axes, fraction=0.05, label="kept fraction")
    return fig


def kept_units_heatmaps(groups: list[Group], roots) -> list[Plot]:
    """Per model with pruned records: the share of units each plan keeps in every module."""
    plots = []
    for group in groups:
        if not group.pruned:
            continue
        plans, messages = _plans(group, roots)
        key, title = f"kept_units_{slug(group.model)}", f"{group.model}: kept units per module"
        if not plans:
            plots.append(Plot(key, title, None, messages or ["no plan artifacts"]))
            continue
        malformed: list[str] = []
        png = png_bytes(_heatmap_figure(plans, malformed))
        if malformed:
            messages.append(f"Malformed module entries (need 'total' and 'kept'): {', '.join(malformed[:5])}")
        caption = (
            "Fraction of units kept per module (rows) for each pruned model (columns); "
            "blank cells: module absent from that plan. "
            + "; ".join(f"{plan_label}: {plan_summary(plan)}" for plan_label, plan in plans)
        )
        plots.append(Plot(key, title, png, messages, caption))
    return plots


# -- power timeline ---------------------------------------------------------------------------------
def _read_timeline(record: dict, roots) -> tuple[list[float], list[float], str | None]:
    """(seconds, watts, None) of a record's power timeline, or ([], [], why it cannot be drawn)."""
    data, problem = load_json_artifact(resolve_artifact(record, "power_timeline", roots))
    if problem is not None:
        return [], [], problem
    try:
        seconds = [float(sample[0]) for sample in data]
        watts = [float(sample[1]) for sample in data]
    except (TypeError, ValueError, IndexError, KeyError):
        return [], [], "power timeline is not a list of [t_s, watts] pairs"
    if not seconds:
        return [], [], "power timeline is empty"
    return seconds, watts, None


def _power_timeline(group: Group, roots) -> tuple[Plot | None, int]:
    """The group's power plot (None when it has nothing to show) and how many records have no timeline."""
    fig = Figure(layout="constrained", figsize=(7, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    messages, drawn, absent = [], 0, 0
    for i, row in enumerate(group.rows):
        if not row.record["artifacts"].get("power_timeline"):
            absent += 1
            continue
        seconds, watts, problem = _read_timeline(row.record, roots)
        if problem:
            messages.append(f"{row.label}: {problem}")
            continue
        ax.plot(seconds, watts, ".", ms=3, color=COLORS[i % len(COLORS)], label=row.label)
        drawn += 1
    key = f"power_{slug(group.model)}"
    if not drawn:
        return (Plot(key, f"{group.model}: GPU power", None, messages) if messages else None), absent
    ax.set_xlabel("time since the first timed call [s]")
    ax.set_ylabel("GPU power, all GPUs [W]")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    caption = "Samples taken while each model's own timed blocks ran (gaps: its base was running)."
    return Plot(key, f"{group.model}: GPU power during generation", png_bytes(fig), messages, caption), absent


def power_timelines(groups: list[Group], roots) -> tuple[list[Plot], list[str]]:
    """One plot per model with a recorded power timeline, and what is missing: said once per model, or once
    in all when no record has one."""
    plots, missing = [], []
    for group in groups:
        plot, absent = _power_timeline(group, roots)
        if absent:
            missing.append(
                f"{group.model}: {absent} of {len(group.rows)} record(s) have no power timeline "
                "(it is sampled from NVML; these runs saw no NVIDIA GPU)"
            )
        if plot is not None:
            plots.append(plot)
    if missing and not plots:  # every record lacks one, for the same reason: said once
        n_records = sum(len(group.rows) for group in groups)
        missing = [
            f"No power timeline in any of the {n_records} records: it is sampled from NVML, and these runs saw "
            "no NVIDIA GPU."
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
    """``key``'s value in every row, when every row has a finite number there."""
    values = [row.get(key) for row in data]
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return [float(v) for v in values]
    return None


def read_curve(data) -> Curve:
    """A training curve in either recorded shape: the controller's (``nmse``, ``expected_sparsity``,
    ``target``) or the older one (``loss``, ``mse``, ``sparsity`` = expected share of OPEN gates)."""
    if not isinstance(data, list) or not data or not all(isinstance(row, dict) for row in data):
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


@dataclass
class LoggedTraining:
    """One mask training's curve and the pruned records that share it (one training, several ratios)."""

    labels: list[str]
    curve: Curve
    ratio: float  # the first record's pruning ratio, drawn as a dotted line


def _logged_trainings(group: Group, roots) -> tuple[list[LoggedTraining], list[str]]:
    """The group's distinct training logs (identical logs are drawn once), and why others cannot be read."""
    trainings: dict[str, LoggedTraining] = {}
    problems = []
    for record in group.pruned:
        if not record["artifacts"].get("training_curve"):
            continue  # methods without mask training have no curve
        record_label = label(record, True)
        data, problem = load_json_artifact(resolve_artifact(record, "training_curve", roots))
        if problem is None:
            try:
                curve = read_curve(data)
            except ValueError as exc:
                problem = str(exc)
        if problem:
            problems.append(f"{record_label}: {problem}")
            continue
        key = repr(data)
        if key in trainings:
            trainings[key].labels.append(record_label)
        else:
            trainings[key] = LoggedTraining([record_label], curve, float(record["ratio"]))
    return list(trainings.values()), problems


def training_curves(groups: list[Group], roots) -> list[Plot]:
    """Per model whose pruned records logged a mask training: its objective and expected sparsity."""
    plots = []
    for group in groups:
        trainings, problems = _logged_trainings(group, roots)
        key, title = f"training_{slug(group.model)}", f"{group.model}: mask training"
        if trainings:
            plots.append(Plot(key, title, _training_figure(trainings), problems, _TRAINING_CAPTION))
        elif problems:
            plots.append(Plot(key, title, None, problems))
    return plots


_TRAINING_CAPTION = (
    "Left: the training objective and its reconstruction term (final latent vs the unpruned model's) per "
    "optimizer step. Right: the expected share of prunable parameters the masks would remove, with the "
    "controller's (ramped) target dashed and the pruning ratio dotted. Runs with identical logs (one mask "
    "training shared by several ratios) are drawn once."
)


def _training_figure(trainings: list[LoggedTraining]) -> bytes:
    fig = Figure(layout="constrained", figsize=(11, 3.8))
    ax_loss, ax_sparsity = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    all_positive = True  # the loss axis is logarithmic when it can be
    for i, training in enumerate(trainings):
        curve, color, name = training.curve, COLORS[i % len(COLORS)], ", ".join(training.labels)
        if curve.loss is not None:
            ax_loss.plot(curve.steps, curve.loss, "-", color=color, lw=1.3, label=f"{name}: loss")
            all_positive &= min(curve.loss) > 0
        if curve.mse is not None:
            ax_loss.plot(curve.steps, curve.mse, "--", color=color, lw=1.0, label=f"{name}: {curve.mse_name}")
            all_positive &= min(curve.mse) > 0
        if curve.removed is not None:
            ax_sparsity.plot(
                curve.steps, curve.removed, "-", color=color, lw=1.5, label=f"{name}: {curve.removed_name}"
            )
        if curve.target is not None:
            ax_sparsity.plot(curve.steps, curve.target, "--", color=color, lw=1.0, label=f"{name}: target")
        ax_sparsity.axhline(training.ratio, color=color, ls=":", lw=0.8)
    if all_positive:
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss, MSE (lower is better ↓)")
    ax_loss.set_title("objective", fontsize=9)
    ax_sparsity.set_xlabel("optimizer step")
    ax_sparsity.set_ylabel("share of prunable parameters removed")
    ax_sparsity.set_title("expected sparsity vs target (dotted: pruning ratio)", fontsize=9)
    for ax in (ax_loss, ax_sparsity):
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
