"""The Markdown report: the same content as the HTML one, images written to an assets folder."""

from __future__ import annotations

from pathlib import Path

from reports import releases
from reports.cells import Cell
from reports.content import (
    HISTORY_INTRO,
    NO_HEATMAPS,
    NO_TRAINING,
    SMOKE_BANNER,
    SUSTAINABILITY_HEADER,
    Content,
    Notes,
    seed_notes,
    selection_text,
    sustainability_cells,
)
from reports.plots import Plot, slug
from reports.records import full_label, is_base

ASSETS_DIR = "assets"


def _escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_escape(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(cell: Cell, notes: Notes) -> str:
    if cell.status in ("unavailable", "missing"):
        return f"n/a [{notes.ref(cell.note)}]"
    out = cell.text
    if cell.status == "estimated":
        out += f" (est.) [{notes.ref('estimated: ' + cell.note)}]"
    if cell.delta:
        mark = {"good": "✅", "bad": "❌"}.get(cell.verdict, "")
        out += f" ({cell.arrow} {cell.delta}{' ' + mark if mark else ''})"
    return out


def _plot(plot: Plot, assets: Path, rel: str) -> list[str]:
    lines = [f"### {plot.title}", ""]
    if plot.png is not None:
        (assets / f"{plot.key}.png").write_bytes(plot.png)
        lines.append(f"![{plot.title}]({rel}/{plot.key}.png)")
        if plot.caption:
            lines += ["", f"*{plot.caption}*"]
    else:
        lines.append(f"*Plot not available: {plot.title}.*")
    lines += [f"- *{message}*" for message in plot.messages]
    lines.append("")
    return lines


def _plot_section(heading, plots, empty, assets: Path, rel: str, extra=()) -> list[str]:
    lines = [f"## {heading}", ""]
    for plot in plots:
        lines += _plot(plot, assets, rel)
    lines += [f"*{message}*" for message in extra] + ([""] if extra else [])
    if not plots and not extra and empty:
        lines += [f"*{empty}*", ""]
    return lines


def _header(content: Content) -> list[str]:
    """The title, the selection, the smoke banner, the comparability warnings and the notices."""
    lines = [f"# {content.title}", "", f"_Generated {content.generated}. {selection_text(content)}_", ""]
    if content.selection.smoke == "all":
        lines += [f"> **{SMOKE_BANNER}**", ""]
    elif content.selection.smoke == "some":
        lines += ["> **This report shows smoke records next to full ones (marked [smoke]).**", ""]
    warnings = content.selection.warnings + seed_notes(content)
    if warnings:
        lines += ["> **Comparability warnings**", ">"] + [f"> - {w}" for w in warnings] + [""]
    if content.selection.notices:
        lines += [f"- {notice}" for notice in content.selection.notices] + [""]
    return lines


def _summary(content: Content, notes: Notes) -> list[str]:
    lines = [
        "## Summary",
        "",
        "Latency and energy: pruned / base, timed in alternation in the same run, with the bootstrap "
        "confidence interval; an interval containing 1 is *no measurable change*.",
        "",
    ]
    for summary in content.summaries:
        lines += [f"### {summary.model}", "", f"Base: {summary.base_line}", ""]
        if not summary.rows:
            lines += ["*No pruned record with a base to compare.*", ""]
            continue
        rows = [
            [row_label] + [_cell(cells[key], notes) for key, _ in summary.columns]
            for row_label, cells in summary.rows
        ]
        lines += [_table(["Pruned"] + [header for _, header in summary.columns], rows), ""]
    return lines


def _details(content: Content, notes: Notes) -> list[str]:
    lines = [
        "## Base vs pruned (details)",
        "",
        "Latency and energy changes from the paired ratios (interval in brackets); others vs the base "
        "(absolute for quality metrics); ✅ better, ❌ worse. `n/a [k]`: see note k.",
        "",
    ]
    for group in content.groups:
        header = ["Model"] + [f"{column.header} ({group.metric_for[column.key]})" for column in group.columns]
        rows = []
        for row in group.rows:
            smoke = " [smoke]" if row.record["smoke"] and content.selection.smoke == "some" else ""
            name = f"**{row.label}**" if is_base(row.record) else row.label
            rows.append([name + smoke] + [_cell(row.cells[column.key], notes) for column in group.columns])
        lines += [f"### {group.model}", "", _table(header, rows), ""]
    if not content.groups:
        lines += ["*No successful records.*", ""]
    return lines


def _history(content: Content, assets: Path, rel: str) -> list[str]:
    lines = ["## Release history", "", HISTORY_INTRO + releases.LEGEND, ""]
    for series in content.history.series:
        release_table = _table(releases.RELEASE_HEADER, releases.release_rows(series))
        lines += [f"### Suite {series.title}", "", release_table, ""]
        lines += [f"- ❌ {line}" for line in releases.regression_lines(series)] or [releases.NO_REGRESSIONS]
        lines.append("")
        for metric, plot in zip(series.metrics, content.history_plots[series.title], strict=True):
            lines += _plot(plot, assets, rel)
            rows = releases.metric_rows(series, metric)
            lines += [
                f"*{releases.metric_heading(series, metric)}*",
                "",
                _table(["config", *series.releases], rows),
                "",
            ]
    return lines


def _sustainability(content: Content, notes: Notes) -> list[str]:
    lines = [
        "## Sustainability",
        "",
        "Energy and carbon per 1,000 images, the saving from the paired energy "
        "ratio, the one-off energy (pruning, plus recovery for a recovered variant), and after how many images "
        "it has paid for itself.",
        "",
    ]
    if not content.sustainability:
        return lines + ["*No pruned records with a base to compare: no savings to show.*", ""]
    rows = [
        sustainability_cells(row)
        + [row.breakeven + (f" [{notes.ref('; '.join(row.notes))}]" if row.notes else "")]
        for row in content.sustainability
    ]
    return lines + [_table(SUSTAINABILITY_HEADER, rows), ""]


def _samples(content: Content, assets: Path, rel: str) -> list[str]:
    lines = ["## Samples (identical prompts and seeds)", ""]
    for group in content.groups:
        lines += [f"### {group.model}", ""]
        for i, sample in enumerate(s for s in content.samples if s.model == group.model):
            caption = f"{sample.label} — seed {sample.seed}"
            if sample.png is not None:
                name = f"samples_{slug(group.model)}_{i}.png"
                (assets / name).write_bytes(sample.png)
                lines += [f"**{caption}**", "", f"![{caption}]({rel}/{name})", ""]
            else:
                lines += [f"*{caption}: samples not available ({sample.message})*", ""]
    return lines


def _failed_and_provenance(content: Content) -> list[str]:
    lines = []
    if content.failed:
        rows = [[full_label(r), r["run_id"], r["error"] or ""] for r in content.failed]
        lines += ["## Failed records", "", _table(["Model", "Run", "Error"], rows), ""]
    lines += ["## Provenance", "", "Rows marked ⚠ differ between or within runs.", ""]
    rows = [[("⚠ " if differs else "") + key] + values for key, values, differs in content.provenance.rows]
    return lines + [_table(["Key"] + content.provenance.runs, rows), ""]


def to_markdown(content: Content, assets: Path, rel: str = ASSETS_DIR) -> str:
    """The report as Markdown; its images are written into ``assets``, linked as ``rel/NAME``."""
    notes = Notes()
    assets.mkdir(parents=True, exist_ok=True)
    lines = _header(content) + _summary(content, notes)
    lines += ["## Plots", ""]
    lines += _plot(content.ratios_plot, assets, rel) + _plot(content.quality_plot, assets, rel)
    if content.history is not None:
        lines += _history(content, assets, rel)
    lines += _details(content, notes) + _sustainability(content, notes)
    lines += _plot_section("Kept units per layer", content.heatmaps, NO_HEATMAPS, assets, rel)
    lines += _plot_section("Power timeline", content.power, None, assets, rel, content.power_missing)
    lines += _plot_section("Mask training curves", content.training, NO_TRAINING, assets, rel)
    lines += _samples(content, assets, rel) + _failed_and_provenance(content)
    if notes.items:
        lines += ["## Notes", ""] + [f"{i}. {note}" for i, note in enumerate(notes.items, 1)] + [""]
    return "\n".join(lines)
