"""Report content that does not depend on the output format: record selection, comparability warnings,
sustainability numbers, provenance and artifacts (the tables' cells: :mod:`reports.cells`).

Reads run records only (the JSON form of :class:`ecodiff_bench.core.record.RunRecord`: every top-level
field present); metric directions and delta kinds come from the metric catalog. Never imports torch.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecodiff_bench.core import metrics as catalog
from ecodiff_bench.core.export import flatten
from ecodiff_bench.core.record import CALL_SETTINGS
from ecodiff_bench.core.stats import interval_of
from reports.formatting import fmt_count, fmt_energy_kwh, fmt_value, sig

if TYPE_CHECKING:
    from reports.cells import Group

QUALITY_PREFERENCE = ("fid", "frechet_distance", "clip_score", "ssim_vs_base")
# Where a quality metric's sample count is: its Value's details (FrechetDistance: num_samples, CLIP score:
# n, recognisability: n_samples), else the evaluation's sample count in the record's settings.
SAMPLE_DETAIL_KEYS = ("n_samples", "num_samples", "n")
# Settings that must agree between the base and the pruned models of one model group.
COMPARABLE_SETTINGS = (*CALL_SETTINGS, "dtype", "batch_size")


# -- small helpers ------------------------------------------------------------------------------------
def device_of(record: dict) -> str:
    """The device a record was measured on, from its provenance (see ecodiff_bench.run.provenance).

    Order: provenance.device_name / gpu_name; a run device ("cuda:1", "cpu") from provenance.device or
    settings.device picks the GPU (torch.cuda_devices, else gpu.gpus[*].name) or the CPU model; without a
    run device the first GPU, else the CPU model.
    """
    prov = record.get("provenance") or {}
    settings = record.get("settings") or {}
    for key in ("device_name", "gpu_name"):
        if isinstance(prov.get(key), str) and prov[key]:
            return prov[key]
    run_dev = prov.get("device") or settings.get("device") or ""
    if isinstance(run_dev, dict):
        run_dev = run_dev.get("name") or ""
    run_dev = str(run_dev)
    if run_dev and not run_dev.startswith(("cuda", "cpu", "mps")):
        return run_dev
    cpu = prov.get("cpu") if isinstance(prov.get("cpu"), str) else None
    if run_dev.startswith("cpu"):
        return f"CPU: {cpu or 'unknown model'}"
    torch_info = prov.get("torch") if isinstance(prov.get("torch"), dict) else {}
    names = [str(n) for n in (torch_info.get("cuda_devices") or [])]
    gpu = prov.get("gpu")
    if not names and isinstance(gpu, dict):
        names = [str(g.get("name")) for g in gpu.get("gpus") or [] if isinstance(g, dict) and g.get("name")]
    elif not names and isinstance(gpu, str) and gpu:
        names = [gpu]
    if names:
        idx = 0
        if ":" in run_dev and run_dev.split(":", 1)[1].isdigit():
            idx = int(run_dev.split(":", 1)[1])
        return names[idx] if idx < len(names) else names[0]
    if cpu:
        return f"CPU: {cpu}"
    return "unknown device"


def world_size_of(record: dict) -> int:
    """How many processes measured the record together (``provenance.world_size``; 1 before it existed)."""
    size = (record.get("provenance") or {}).get("world_size")
    return size if isinstance(size, int) and size >= 1 else 1


# Figures that add up over processes, or depend on how many share the machine: flagged across world sizes.
WORLD_SENSITIVE = ("throughput_img_per_s",)


def commit_of(record: dict) -> str:
    """The git commit the record was measured with (``provenance.git.commit``)."""
    git = record["provenance"].get("git")
    commit = git.get("commit") if isinstance(git, dict) else None
    return str(commit) if commit else "unknown"


def metric(record: dict, name: str) -> dict | None:
    return record["metrics"].get(name)


def number(record: dict, name: str) -> float | None:
    """The metric's value when it is available, else None."""
    v = metric(record, name)
    if not v or v["status"] == "unavailable":
        return None
    return float(v["value"])


def direction(name: str, vd: dict | None) -> bool | None:
    """Whether higher is better for ``name``: the catalog's word (a stored value's for foreign metrics)."""
    return catalog.direction(name, vd["higher_is_better"] if vd else None)


def is_base(record: dict) -> bool:
    return record["method"] == "base"


def label(record: dict, with_seed: bool = False) -> str:
    text = "base" if is_base(record) else f"{record['method']} @{100 * float(record['ratio']):.4g}%"
    if with_seed and record["seed"] is not None:
        text += f" (seed {record['seed']})"
    return text


def full_label(record: dict) -> str:
    return f"{record['model']} · {label(record, with_seed=True)}"


def sample_count(record: dict, name: str) -> int | None:
    vd = metric(record, name)
    if not vd or vd["status"] == "unavailable":
        return None
    for key in SAMPLE_DETAIL_KEYS:
        if isinstance(vd["details"].get(key), (int, float)):
            return int(vd["details"][key])
    samples = record["settings"].get("samples")
    return int(samples) if isinstance(samples, (int, float)) else None


# -- artifacts ----------------------------------------------------------------------------------------
@dataclass
class Artifact:
    record: dict
    kind: str
    path: Path | None
    problem: str | None  # why it cannot be used (None when path exists)

    @property
    def ok(self) -> bool:
        return self.problem is None


def resolve_artifact(record: dict, kind: str, roots: list[Path]) -> Artifact:
    """Find a record's artifact file: absolute paths as given; relative ones under each root in turn."""
    raw = record["artifacts"].get(kind)
    if not raw:
        return Artifact(record, kind, None, f"no '{kind}' artifact recorded")
    p = Path(raw)
    candidates = [p] if p.is_absolute() else [r / p for r in roots] + [p]
    for c in candidates:
        if c.is_file():
            return Artifact(record, kind, c, None)
    return Artifact(record, kind, None, f"'{kind}' artifact not found at {raw}")


def load_json_artifact(art: Artifact) -> tuple[Any, str | None]:
    if not art.ok:
        return None, art.problem
    try:
        return json.loads(art.path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"could not read {art.path}: {exc}"


# -- selection ----------------------------------------------------------------------------------------
@dataclass
class Selection:
    records: list[dict]
    notices: list[str] = field(default_factory=list)  # informational
    warnings: list[str] = field(default_factory=list)  # comparability problems
    smoke: str = "none"  # "none" | "all" | "some"
    filters: dict = field(default_factory=dict)


def dedupe_latest(records: list[dict]) -> tuple[list[dict], int]:
    """Keep the newest record per (suite, model, method, ratio, seed, smoke)."""

    def key(r: dict) -> tuple:
        return r["suite"], r["model"], r["method"], float(r["ratio"]), r["seed"], r["smoke"]

    latest: dict[tuple, dict] = {}
    for r in records:
        if key(r) not in latest or r["created_at"] >= latest[key(r)]["created_at"]:
            latest[key(r)] = r
    kept = [r for r in records if latest[key(r)] is r]
    return kept, len(records) - len(kept)


def comparability_warnings(records: list[dict]) -> list[str]:
    """Reasons the selected records should not be compared blindly (each one is shown in the report)."""
    out: list[str] = []
    ok = [r for r in records if r["status"] == "ok"]
    smoke = [r for r in records if r["smoke"]]
    if smoke and len(smoke) != len(records):
        out.append(
            f"Smoke and full records are mixed: {len(smoke)} smoke record(s) "
            f"({', '.join(sorted({r['run_id'] for r in smoke}))}) next to {len(records) - len(smoke)} full one(s). "
            "Smoke numbers come from shortened settings and are not comparable."
        )
    devices: dict[str, list[str]] = defaultdict(list)
    for r in ok:
        devices[device_of(r)].append(full_label(r))
    if len(devices) > 1:
        parts = "; ".join(f"{d}: {len(v)} record(s)" for d, v in sorted(devices.items()))
        out.append(
            f"Records were measured on different devices ({parts}). Latency, energy and memory "
            "differences between them reflect the hardware, not only the pruning."
        )
    sizes: dict[int, list[str]] = defaultdict(list)
    for r in ok:
        sizes[world_size_of(r)].append(full_label(r))
    if len(sizes) > 1:
        parts = "; ".join(
            f"{n} process{'es' if n > 1 else ''}: {len(v)} record(s)" for n, v in sorted(sizes.items())
        )
        out.append(
            f"Records were measured by different numbers of processes ({parts}). Throughput adds up "
            "over the processes, so it is not comparable between them; quality metrics at equal sample "
            "counts are."
        )
    for name in catalog.SAMPLE_SENSITIVE:
        counts: dict[int | None, list[str]] = defaultdict(list)
        for r in ok:
            if number(r, name) is not None:
                counts[sample_count(r, name)].append(full_label(r))
        if len(counts) > 1:
            parts = "; ".join(
                f"{'unknown' if n is None else n} samples: {', '.join(v[:4])}{' …' if len(v) > 4 else ''}"
                for n, v in sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            )
            out.append(
                f"{name} was computed from different sample counts ({parts}); these values are biased "
                "differently and are not directly comparable."
            )
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_model[r["model"]].append(r)
    for model, recs in sorted(by_model.items()):
        for key in COMPARABLE_SETTINGS:
            having = [r for r in recs if key in r["settings"]]
            if len({json.dumps(r["settings"][key], sort_keys=True) for r in having}) > 1:
                detail = ", ".join(f"{label(r)}={r['settings'][key]}" for r in having)
                out.append(f"{model}: setting '{key}' differs between records ({detail}).")
    return out


def select(
    records: list[dict],
    *,
    suite: str | None = None,
    run_id: str | None = None,
    tag_ids: set | None = None,
    include_smoke: bool | None = None,
    explicit: bool = False,
) -> Selection:
    """Filter records and decide on smoke: ``include_smoke`` None means full records, unless the selection
    is explicit (a run id or a tag) or only smoke records match; the report then says it shows smoke runs."""
    filters = {k: v for k, v in (("suite", suite), ("run_id", run_id)) if v is not None}
    recs = [
        r
        for r in records
        if (suite is None or r["suite"] == suite)
        and (run_id is None or r["run_id"] == run_id)
        and (tag_ids is None or r["record_id"] in tag_ids)
    ]
    notices: list[str] = []
    if include_smoke is None:
        full = [r for r in recs if not r["smoke"]]
        if explicit or not full:
            chosen = recs
        else:
            chosen = full
            if len(full) != len(recs):
                notices.append(
                    f"{len(recs) - len(full)} smoke record(s) left out (pass include_smoke / "
                    "--include-smoke to show them)."
                )
    elif include_smoke:
        chosen = recs
    else:
        chosen = [r for r in recs if not r["smoke"]]
    if not explicit:
        chosen, hidden = dedupe_latest(chosen)
        if hidden:
            notices.append(
                f"{hidden} older record(s) of the same model/method/ratio/seed hidden; "
                "select a run id to see a specific run."
            )
    n_smoke = sum(1 for r in chosen if r["smoke"])
    smoke = "none" if n_smoke == 0 else ("all" if n_smoke == len(chosen) else "some")
    failed = [r for r in chosen if r["status"] != "ok"]
    if failed:
        notices.append(f"{len(failed)} failed record(s); see 'Failed records'.")
    suites = sorted({r["suite"] for r in chosen})
    if len(suites) > 1:
        notices.append(f"Records from several suites: {', '.join(map(str, suites))}.")
    return Selection(chosen, notices, comparability_warnings(chosen), smoke, filters)


# -- sustainability -------------------------------------------------------------------------------------
@dataclass
class Sustain:
    model: str
    label: str
    record: dict
    base_energy: str
    pruned_energy: str
    base_kwh_1k: str
    pruned_kwh_1k: str
    base_co2_1k: str
    pruned_co2_1k: str
    saving_kwh_1k: str
    saving_co2_1k: str
    pruning_cost: str
    pruning_co2: str
    breakeven: str
    breakeven_images: float | None  # None: never / unknown
    notes: list[str] = field(default_factory=list)


def _saving_per_image(record: dict, base: dict | None) -> tuple[float | None, str, str]:
    """(energy saved per image in J, or None; how it was found; why there is none).

    From the paired energy ratio r of the same run: saving = e_pruned x (1/r - 1); none when r's interval
    contains 1 (no measurable saving). Records without a paired ratio fall back to the difference of the
    separately measured energies, said so.
    """
    e_p = number(record, "energy_image_j")
    vd = metric(record, "energy_ratio_vs_base")
    if e_p is not None and vd and vd["status"] != "unavailable" and vd["value"] > 0:
        r, iv = float(vd["value"]), interval_of(vd["details"])
        if iv is not None and iv[0] <= 1.0 <= iv[1]:
            return (
                None,
                "paired",
                f"no measurable energy saving (energy ratio {r:.3g}, interval {iv[0]:.3g}..{iv[1]:.3g})",
            )
        return e_p * (1 / r - 1), "paired", ""
    e_b = number(base, "energy_image_j") if base else None
    if e_p is None or e_b is None:
        return None, "", ""
    return e_b - e_p, "unpaired", ""


def sustainability(groups: list[Group]) -> list[Sustain]:
    out = []
    for g in groups:
        for row in g.rows:
            r = row.record
            if is_base(r):
                continue
            base = row.base
            notes: list[str] = []
            e_p = number(r, "energy_image_j")
            e_b = number(base, "energy_image_j") if base else None
            c_p = number(r, "gco2e_per_1000_images")
            c_b = number(base, "gco2e_per_1000_images") if base else None
            cost = number(r, "pruning_energy_j")
            recovery = number(r, "recovery_energy_j")  # a recovered variant: its one-off cost is both
            recovered = metric(r, "recovery_energy_j") is not None

            def why(rec, name):
                vd = metric(rec, name) if rec else None
                if rec is None:
                    return "no base record"
                return vd["note"] if vd else f"{name} not recorded"

            if e_p is None:
                notes.append(f"pruned energy/image n/a: {why(r, 'energy_image_j')}")
            if e_b is None:
                notes.append(f"base energy/image n/a: {why(base, 'energy_image_j')}")
            if cost is None:
                notes.append(f"pruning energy n/a: {why(r, 'pruning_energy_j')}")
            if recovered and recovery is None:
                notes.append(f"recovery energy n/a: {why(r, 'recovery_energy_j')}")
            parts = cost
            cost = None if cost is None or (recovered and recovery is None) else cost + (recovery or 0.0)
            saving, how, none_why = _saving_per_image(r, base)
            if none_why:
                notes.append(none_why)
            elif how == "unpaired":
                notes.append("saving from separately measured energies (no paired ratio recorded)")
            # Carbon intensity of this run (g/J), to express the pruning cost in gCO2e (an estimate).
            intensity = (c_p / (1000 * e_p)) if (c_p is not None and e_p) else None
            if saving is None or cost is None:
                breakeven, n_be = "n/a", None
            elif saving <= 0:
                breakeven, n_be = "never (no energy saving per image)", None
            else:
                n_be = cost / saving
                breakeven = f"{fmt_count(math.ceil(n_be))} images"

            def j(v):
                return "n/a" if v is None else fmt_value(v, "J")

            out.append(
                Sustain(
                    model=g.model,
                    label=row.label,
                    record=r,
                    base_energy=j(e_b),
                    pruned_energy=j(e_p),
                    base_kwh_1k="n/a" if e_b is None else fmt_energy_kwh(1000 * e_b),
                    pruned_kwh_1k="n/a" if e_p is None else fmt_energy_kwh(1000 * e_p),
                    base_co2_1k="n/a" if c_b is None else f"{sig(c_b)} g",
                    pruned_co2_1k="n/a" if c_p is None else f"{sig(c_p)} g",
                    saving_kwh_1k=("no measurable saving" if none_why else "n/a")
                    if saving is None
                    else fmt_energy_kwh(1000 * saving),
                    saving_co2_1k="n/a"
                    if (saving is None or intensity is None)
                    else f"{sig(1000 * saving * intensity)} g",
                    pruning_cost=_one_off_text(cost, parts, recovery if recovered else None),
                    pruning_co2="n/a"
                    if (cost is None or intensity is None)
                    else f"≈{sig(cost * intensity)} g (est.)",
                    breakeven=breakeven,
                    breakeven_images=n_be,
                    notes=notes,
                )
            )
    return out


def _one_off_text(total: float | None, pruning: float | None, recovery: float | None) -> str:
    """The one-off energy: pruning's, plus a recovered variant's distillation (both named)."""
    if total is None:
        return "n/a"
    text = f"{fmt_value(total, 'J')} ({fmt_energy_kwh(total)})"
    if recovery is not None and pruning is not None:
        text += f": pruning {fmt_value(pruning, 'J')} + recovery {fmt_value(recovery, 'J')}"
    return text


# -- provenance -----------------------------------------------------------------------------------------
@dataclass
class ProvenanceTable:
    runs: list[str]
    rows: list[tuple[str, list[str], bool]]  # key, value per run, differs across runs


def provenance(records: list[dict]) -> ProvenanceTable:
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_run[r["run_id"]].append(r)
    runs = sorted(by_run, key=lambda k: min(r["created_at"] for r in by_run[k]))
    per_run: dict[str, dict[str, str]] = {}
    for run in runs:
        values: dict[str, list[str]] = defaultdict(list)
        for r in by_run[run]:
            flat = {
                "suite": r["suite"],
                "suite_hash": r["suite_hash"],
                "smoke": r["smoke"],
                "device": device_of(r),
                "processes": world_size_of(r),
                "git commit": commit_of(r),
                "created_at": r["created_at"],
            }
            flat.update({f"provenance.{k}": v for k, v in flatten(r["provenance"]).items()})
            flat.update({f"settings.{k}": v for k, v in flatten(r["settings"]).items()})
            for k, v in flat.items():
                s = "" if v is None else str(v)
                if s not in values[k]:
                    values[k].append(s)
        summary = {}
        for k, vs in values.items():
            if k == "created_at":
                summary[k] = vs[0] if len(vs) == 1 else f"{min(vs)} … {max(vs)}"
            else:
                summary[k] = " | ".join(vs)
        per_run[run] = summary
    keys: list[str] = []
    for run in runs:
        for k in per_run[run]:
            if k not in keys:
                keys.append(k)
    priority = ["suite", "suite_hash", "smoke", "device", "processes", "git commit", "created_at"]
    keys = [k for k in priority if k in keys] + sorted(k for k in keys if k not in priority)
    rows = []
    for k in keys:
        vals = [per_run[run].get(k, "—") for run in runs]
        differs = len(set(vals)) > 1 or any(" | " in v for v in vals if k != "created_at")
        rows.append((k, vals, differs and k != "created_at"))
    return ProvenanceTable(runs, rows)


# -- pareto ----------------------------------------------------------------------------------------------
def quality_metric(records: list[dict]) -> str | None:
    for name in QUALITY_PREFERENCE:
        if (
            sum(1 for r in records if number(r, name) is not None and number(r, "energy_image_j") is not None)
            >= 2
        ):
            return name
    return None


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the non-dominated points (energy: lower is better; quality per direction), by energy."""
    front = []
    for i, (e, q) in enumerate(points):
        dominated = False
        for j, (e2, q2) in enumerate(points):
            if i == j:
                continue
            q_better_eq = q2 >= q if higher_is_better else q2 <= q
            q_better = q2 > q if higher_is_better else q2 < q
            if e2 <= e and q_better_eq and (e2 < e or q_better):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
