"""The report's content, independent of its format, and writing it: HTML (self-contained, images as data
URIs; :mod:`reports.html`) and Markdown (images in an assets folder; :mod:`reports.markdown`).

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

from ecodiff_bench.core.files import write_text_atomic
from reports import analysis as A
from reports import artifact_plots as AP
from reports import plots as P
from reports.cells import Group, build_groups
from reports.releases import History
from reports.summary import Summary, summaries

HTML_NAME = "report.html"
MD_NAME = "report.md"
ASSETS_DIR = "assets"
FORMATS = ("html", "md")

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


@dataclass
class Content:
    title: str
    generated: str
    sel: A.Selection
    groups: list[Group]
    summaries: list[Summary]
    sustain: list[A.Sustain]
    prov: A.ProvenanceTable
    quality_plot: P.Plot
    ratios_plot: P.Plot
    heatmaps: list[P.Plot]
    power: list[P.Plot]
    power_missing: list[str]
    training: list[P.Plot]
    samples: list[AP.Sample]
    failed: list[dict]
    history: History | None = None
    history_plots: dict[str, list[P.Plot]] = field(default_factory=dict)  # series title -> one per metric

    @property
    def plots(self) -> list[P.Plot]:
        return [self.quality_plot, self.ratios_plot]


def build(sel: A.Selection, roots: list[Path], title: str, history: History | None = None) -> Content:
    from reports.release_plots import history_plots

    groups = build_groups(sel.records)
    ok = [r for r in sel.records if r["status"] == "ok"]
    if not groups and ok == []:
        sel.warnings.append("No successful records: nothing to tabulate or plot.")
    for g in groups:
        if not g.bases:
            sel.warnings.append(f"{g.model}: no base (unpruned) record selected; deltas and savings are n/a.")
        if not g.pruned:
            sel.notices.append(f"{g.model}: no pruned record selected.")
    power, power_missing = AP.power_timelines(groups, roots)
    return Content(
        title=title,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        sel=sel,
        groups=groups,
        summaries=summaries(groups),
        sustain=A.sustainability(groups),
        prov=A.provenance(sel.records),
        quality_plot=P.quality_vs_energy(groups),
        ratios_plot=P.paired_ratios(groups),
        heatmaps=AP.kept_units_heatmaps(groups, roots),
        power=power,
        power_missing=power_missing,
        training=AP.training_curves(groups, roots),
        samples=AP.sample_grids(groups, roots),
        failed=[r for r in sel.records if r["status"] != "ok"],
        history=history,
        history_plots={s.title: history_plots(s) for s in history.series} if history else {},
    )


def seed_notes(c: Content) -> list[str]:
    out = []
    for g in c.groups:
        seeds = {s.seed for s in c.samples if s.model == g.model and s.png is not None}
        if len(seeds) > 1:
            out.append(
                f"{g.model}: sample grids come from different seeds ({', '.join(map(str, sorted(seeds, key=str)))}); "
                "images are not pairwise comparable."
            )
    return out


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")


class Notes:
    """Numbered footnotes for n/a reasons and estimate remarks, shared across the report.

    Notes that differ only in their figures (the same estimate for each record, with that record's CPU
    seconds) collapse into one, marked as varying.
    """

    def __init__(self):
        self.items: list[str] = []
        self._keys: list[str] = []

    def ref(self, text: str) -> int:
        key = _NUMBER.sub("#", text)
        if key not in self._keys:
            self._keys.append(key)
            self.items.append(text)
        i = self._keys.index(key)
        if self.items[i] != text and not self.items[i].endswith(VARIES):
            self.items[i] += VARIES
        return i + 1


VARIES = " (figures vary between records)"


def selection_text(c: Content) -> str:
    f = c.sel.filters
    parts = [f"{k}={v}" for k, v in f.items()] or ["all runs (latest record per configuration)"]
    n = len(c.sel.records)
    smoke = sum(1 for r in c.sel.records if r["smoke"])
    return f"Selection: {', '.join(parts)}; {n} record(s), {smoke} smoke."


def write(c: Content, out_dir: Path, formats=FORMATS) -> dict[str, Path]:
    from reports.html import to_html
    from reports.markdown import to_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "html" in formats:
        paths["html"] = write_text_atomic(out_dir / HTML_NAME, to_html(c))
    if "md" not in formats:
        return paths
    assets = out_dir / ASSETS_DIR
    if assets.is_dir():  # the assets folder belongs to the report: drop images of an earlier render
        for old in assets.iterdir():
            if old.is_file() and old.suffix in (".png", ".jpg", ".webp"):
                old.unlink()
    paths["markdown"] = write_text_atomic(out_dir / MD_NAME, to_markdown(c, assets))
    return paths
