"""Which records a report shows and what they have in common: the selection (smoke or full, the newest
record per configuration), the warnings about comparing them, the provenance table per run, and the
Pareto front of quality against energy.

Reads run records only (through :mod:`reports.records`); never imports torch. The tables' cells are
:mod:`reports.cells`, the sustainability figures :mod:`reports.sustainability`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from ecodiff_bench.core import metrics as catalog
from ecodiff_bench.core.export import flatten
from ecodiff_bench.core.record import CALL_SETTINGS
from reports.records import commit_of, device_of, full_label, label, number, sample_count, world_size_of

QUALITY_PREFERENCE = ("fid", "frechet_distance", "clip_score", "ssim_vs_base")
# Settings that must agree between the base and the pruned models of one model group.
COMPARABLE_SETTINGS = (*CALL_SETTINGS, "dtype", "batch_size")


# -- selection ----------------------------------------------------------------------------------------
@dataclass
class Selection:
    records: list[dict]
    notices: list[str] = field(default_factory=list)  # informational
    warnings: list[str] = field(default_factory=list)  # comparability problems
    smoke: str = "none"  # "none" | "all" | "some"
    filters: dict = field(default_factory=dict)


def dedupe_latest(records: list[dict]) -> tuple[list[dict], int]:
    """Keep the newest record per (suite, model, method, ratio, seed, smoke); also return how many went."""

    def configuration(record: dict) -> tuple:
        return (
            record["suite"],
            record["model"],
            record["method"],
            float(record["ratio"]),
            record["seed"],
            record["smoke"],
        )

    latest: dict[tuple, dict] = {}
    for record in records:
        key = configuration(record)
        if key not in latest or record["created_at"] >= latest[key]["created_at"]:
            latest[key] = record
    kept = [record for record in records if latest[configuration(record)] is record]
    return kept, len(records) - len(kept)


def _by(records: list[dict], key) -> dict:
    """``records``' full labels grouped by ``key(record)``."""
    groups: dict = defaultdict(list)
    for record in records:
        groups[key(record)].append(full_label(record))
    return groups


def _smoke_warnings(records: list[dict]) -> list[str]:
    smoke = [r for r in records if r["smoke"]]
    if not smoke or len(smoke) == len(records):
        return []
    runs = ", ".join(sorted({r["run_id"] for r in smoke}))
    return [
        f"Smoke and full records are mixed: {len(smoke)} smoke record(s) ({runs}) next to "
        f"{len(records) - len(smoke)} full one(s). Smoke numbers come from shortened settings and are not "
        "comparable."
    ]


def _split_warnings(ok: list[dict], of, name, sentence: str) -> list[str]:
    """``sentence`` (with ``{parts}``: how many records each value has) when the records differ in ``of``."""
    groups = _by(ok, of)
    if len(groups) < 2:
        return []
    parts = "; ".join(f"{name(value)}: {len(labels)} record(s)" for value, labels in sorted(groups.items()))
    return [sentence.format(parts=parts)]


DEVICES_DIFFER = (
    "Records were measured on different devices ({parts}). Latency, energy and memory differences between "
    "them reflect the hardware, not only the pruning."
)
PROCESSES_DIFFER = (
    "Records were measured by different numbers of processes ({parts}). Throughput adds up over the "
    "processes, so it is not comparable between them; quality metrics at equal sample counts are."
)


def _processes(n: int) -> str:
    return f"{n} process{'es' if n > 1 else ''}"


def _sample_count_warnings(ok: list[dict]) -> list[str]:
    out = []
    for name in catalog.SAMPLE_SENSITIVE:
        counts = _by(
            [r for r in ok if number(r, name) is not None], lambda r, name=name: sample_count(r, name)
        )
        if len(counts) < 2:
            continue
        parts = "; ".join(
            f"{'unknown' if n is None else n} samples: {', '.join(labels[:4])}{' …' if len(labels) > 4 else ''}"
            for n, labels in sorted(counts.items(), key=lambda item: (item[0] is None, item[0] or 0))
        )
        out.append(
            f"{name} was computed from different sample counts ({parts}); these values are biased "
            "differently and are not directly comparable."
        )
    return out


def _setting_warnings(ok: list[dict]) -> list[str]:
    """A setting that differs between the records of one model (its bases and pruned variants)."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for record in ok:
        by_model[record["model"]].append(record)
    out = []
    for model, records in sorted(by_model.items()):
        for key in COMPARABLE_SETTINGS:
            having = [r for r in records if key in r["settings"]]
            if len({json.dumps(r["settings"][key], sort_keys=True) for r in having}) > 1:
                detail = ", ".join(f"{label(r)}={r['settings'][key]}" for r in having)
                out.append(f"{model}: setting '{key}' differs between records ({detail}).")
    return out


def comparability_warnings(records: list[dict]) -> list[str]:
    """Reasons the selected records should not be compared blindly (each one is shown in the report)."""
    ok = [r for r in records if r["status"] == "ok"]
    return (
        _smoke_warnings(records)
        + _split_warnings(ok, device_of, str, DEVICES_DIFFER)
        + _split_warnings(ok, world_size_of, _processes, PROCESSES_DIFFER)
        + _sample_count_warnings(ok)
        + _setting_warnings(ok)
    )


def _apply_smoke_policy(
    records: list[dict], include_smoke: bool | None, explicit: bool
) -> tuple[list[dict], list[str]]:
    """The records :func:`select`'s smoke policy shows, and a notice of the smoke ones it left out."""
    full = [r for r in records if not r["smoke"]]
    if include_smoke:
        return records, []
    if include_smoke is False:
        return full, []
    if explicit or not full:
        return records, []
    if len(full) == len(records):
        return full, []
    left_out = len(records) - len(full)
    return full, [f"{left_out} smoke record(s) left out (pass include_smoke / --include-smoke to show them)."]


def select(
    records: list[dict],
    *,
    suite: str | None = None,
    run_id: str | None = None,
    include_smoke: bool | None = None,
    explicit: bool = False,
) -> Selection:
    """Filter records and decide on smoke: ``include_smoke`` None means full records, unless the selection
    is explicit (a run id or a tag) or only smoke records match; the report then says it shows smoke runs."""
    filters = {k: v for k, v in (("suite", suite), ("run_id", run_id)) if v is not None}
    matching = [
        r
        for r in records
        if (suite is None or r["suite"] == suite) and (run_id is None or r["run_id"] == run_id)
    ]
    chosen, notices = _apply_smoke_policy(matching, include_smoke, explicit)
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


# -- provenance -----------------------------------------------------------------------------------------
#: The provenance table's first rows, in this order; the flattened provenance and settings follow by name.
PROVENANCE_FIRST = ("suite", "suite_hash", "smoke", "device", "processes", "git commit", "created_at")


@dataclass
class ProvenanceTable:
    runs: list[str]
    rows: list[tuple[str, list[str], bool]]  # key, value per run, differs across runs


def _provenance_fields(record: dict) -> dict:
    """One record's provenance, flattened: the headline fields, then ``provenance.*`` and ``settings.*``."""
    fields = {
        "suite": record["suite"],
        "suite_hash": record["suite_hash"],
        "smoke": record["smoke"],
        "device": device_of(record),
        "processes": world_size_of(record),
        "git commit": commit_of(record),
        "created_at": record["created_at"],
    }
    fields.update({f"provenance.{k}": v for k, v in flatten(record["provenance"]).items()})
    fields.update({f"settings.{k}": v for k, v in flatten(record["settings"]).items()})
    return fields


def _run_column(records: list[dict]) -> dict[str, str]:
    """One run's column: each field's distinct values joined by " | " (creation times as a span)."""
    values: dict[str, list[str]] = defaultdict(list)
    for record in records:
        for key, value in _provenance_fields(record).items():
            text = "" if value is None else str(value)
            if text not in values[key]:
                values[key].append(text)
    column = {}
    for key, texts in values.items():
        if key == "created_at":
            column[key] = texts[0] if len(texts) == 1 else f"{min(texts)} … {max(texts)}"
        else:
            column[key] = " | ".join(texts)
    return column


def provenance(records: list[dict]) -> ProvenanceTable:
    """Per run (oldest first), its environment and settings; a row is marked when its values differ
    between runs or within one."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_run[record["run_id"]].append(record)
    runs = sorted(by_run, key=lambda run: min(r["created_at"] for r in by_run[run]))
    columns = {run: _run_column(by_run[run]) for run in runs}
    keys = list(dict.fromkeys(key for run in runs for key in columns[run]))
    keys = [k for k in PROVENANCE_FIRST if k in keys] + sorted(k for k in keys if k not in PROVENANCE_FIRST)
    rows = []
    for key in keys:
        values = [columns[run].get(key, "—") for run in runs]
        differs = len(set(values)) > 1 or any(" | " in v for v in values if key != "created_at")
        rows.append((key, values, differs and key != "created_at"))
    return ProvenanceTable(runs, rows)


# -- pareto ----------------------------------------------------------------------------------------------
def quality_metric(records: list[dict]) -> str | None:
    """The first quality metric of :data:`QUALITY_PREFERENCE` that two records hold beside their energy."""
    for name in QUALITY_PREFERENCE:
        both = [r for r in records if number(r, name) is not None and number(r, "energy_image_j") is not None]
        if len(both) >= 2:
            return name
    return None


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the non-dominated (energy, quality) points (energy: lower is better; quality by its
    direction), ordered by energy."""

    def at_least_as_good(quality: float, other: float) -> bool:
        return quality >= other if higher_is_better else quality <= other

    def dominates(j: int, i: int) -> bool:
        (energy_j, quality_j), (energy_i, quality_i) = points[j], points[i]
        strictly = energy_j < energy_i or quality_j != quality_i
        return energy_j <= energy_i and at_least_as_good(quality_j, quality_i) and strictly

    front = [i for i in range(len(points)) if not any(dominates(j, i) for j in range(len(points)) if j != i)]
    return sorted(front, key=lambda i: points[i][0])
