"""The report's content, independent of its format: what :mod:`reports.html` and :mod:`reports.markdown`
both write, the texts they share and the numbered notes.

Order: the summary per model (what was removed, the paired speed and energy ratios with their
intervals, the quality kept), then the plots, the release history (when the store holds tagged releases
of the report's suites: :mod:`reports.releases`), the detailed base-vs-pruned tables, sustainability,
the per-layer and training figures, the samples, failures, provenance and the notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reports.analysis import ProvenanceTable, Selection, provenance
from reports.artifact_plots import Sample, kept_units_heatmaps, power_timelines, sample_grids, training_curves
from reports.cells import Group, build_groups
from reports.plots import Plot, paired_ratios, quality_vs_energy
from reports.release_plots import history_plots
from reports.releases import History
from reports.summary import Summary, summaries
from reports.sustainability import SustainabilityRow, sustainability

# What the per-record plot sections say when they have no plots
NO_HEATMAPS = "No pruned records: no pruning plans to show."
NO_TRAINING = "No training curves recorded (only ecodiff trains masks)."
HISTORY_INTRO = (
    "Tagged releases of this report's suites, oldest first (`ecodiff-bench releases` prints the same). "
)
SMOKE_BANNER = (
    "SMOKE RUN: these records come from a smoke configuration (few steps/samples). "
    "The numbers check that the pipeline works; they are not benchmark results."
)
SUSTAINABILITY_HEADER = [
    "Model",
    "Pruned",
    "Energy/image base → pruned",
    "Energy per 1k images base → pruned",
    "gCO2e per 1k base → pruned",
    "Saving per 1k images",
    "gCO2e saved per 1k",
    "One-off cost (pruning + recovery)",
    "One-off gCO2e",
    "Pays back after",
]


@dataclass
class Content:
    title: str
    generated: str
    selection: Selection
    groups: list[Group]
    summaries: list[Summary]
    sustainability: list[SustainabilityRow]
    provenance: ProvenanceTable
    quality_plot: Plot
    ratios_plot: Plot
    heatmaps: list[Plot]
    power: list[Plot]
    power_missing: list[str]
    training: list[Plot]
    samples: list[Sample]
    failed: list[dict]
    history: History | None = None
    history_plots: dict[str, list[Plot]] = field(default_factory=dict)  # series title -> one per metric


def build(selection: Selection, roots: list[Path], title: str, history: History | None = None) -> Content:
    """Everything the report shows about ``selection`` (artifact paths resolved against ``roots``)."""
    groups = build_groups(selection.records)
    ok = [r for r in selection.records if r["status"] == "ok"]
    if not groups and ok == []:
        selection.warnings.append("No successful records: nothing to tabulate or plot.")
    for group in groups:
        if not group.bases:
            selection.warnings.append(
                f"{group.model}: no base (unpruned) record selected; deltas and savings are n/a."
            )
        if not group.pruned:
            selection.notices.append(f"{group.model}: no pruned record selected.")
    power, power_missing = power_timelines(groups, roots)
    return Content(
        title=title,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        selection=selection,
        groups=groups,
        summaries=summaries(groups),
        sustainability=sustainability(groups),
        provenance=provenance(selection.records),
        quality_plot=quality_vs_energy(groups),
        ratios_plot=paired_ratios(groups),
        heatmaps=kept_units_heatmaps(groups, roots),
        power=power,
        power_missing=power_missing,
        training=training_curves(groups, roots),
        samples=sample_grids(groups, roots),
        failed=[r for r in selection.records if r["status"] != "ok"],
        history=history,
        history_plots={s.title: history_plots(s) for s in history.series} if history else {},
    )


def seed_notes(content: Content) -> list[str]:
    """A warning per model whose sample grids come from different seeds."""
    out = []
    for group in content.groups:
        seeds = {s.seed for s in content.samples if s.model == group.model and s.png is not None}
        if len(seeds) > 1:
            out.append(
                f"{group.model}: sample grids come from different seeds ({', '.join(map(str, sorted(seeds, key=str)))}); "
                "images are not pairwise comparable."
            )
    return out


def selection_text(content: Content) -> str:
    parts = [f"{k}={v}" for k, v in content.selection.filters.items()] or [
        "all runs (latest record per configuration)"
    ]
    records = content.selection.records
    smoke = sum(1 for r in records if r["smoke"])
    return f"Selection: {', '.join(parts)}; {len(records)} record(s), {smoke} smoke."


def sustainability_cells(row: SustainabilityRow) -> list[str]:
    """The row's cells under :data:`SUSTAINABILITY_HEADER`, but the last ("Pays back after"), which each
    writer marks with its notes."""
    return [
        row.model,
        row.label,
        f"{row.base_energy} → {row.pruned_energy}",
        f"{row.base_kwh_1k} → {row.pruned_kwh_1k}",
        f"{row.base_co2_1k} → {row.pruned_co2_1k}",
        row.saving_kwh_1k,
        row.saving_co2_1k,
        row.pruning_cost,
        row.pruning_co2,
    ]


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
VARIES = " (figures vary between records)"


class Notes:
    """Numbered footnotes for n/a reasons and estimate remarks, shared across the report.

    Notes that differ only in their figures (the same estimate for each record, with that record's CPU
    seconds) collapse into one, marked as varying.
    """

    def __init__(self):
        self.items: list[str] = []
        self._keys: list[str] = []

    def ref(self, text: str) -> int:
        """The number of ``text``'s note (a new one, or the note it shares its wording with)."""
        key = _NUMBER.sub("#", text)
        if key not in self._keys:
            self._keys.append(key)
            self.items.append(text)
        index = self._keys.index(key)
        if self.items[index] != text and not self.items[index].endswith(VARIES):
            self.items[index] += VARIES
        return index + 1
