"""The Markdown report: the same content as the HTML one, images written to an assets folder."""

from __future__ import annotations

from pathlib import Path

from reports import analysis as A
from reports import plots as P
from reports import releases as R
from reports.cells import Cell
from reports.html import SUSTAIN_HEADS, sustain_cells
from reports.report import (
    ASSETS_DIR,
    HISTORY_INTRO,
    NO_HEATMAPS,
    NO_TRAINING,
    SMOKE_BANNER,
    Content,
    Notes,
    seed_notes,
    selection_text,
)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(x) for x in r) + " |" for r in rows]
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


def _plot(p: P.Plot, assets: Path, rel: str) -> list[str]:
    out = [f"### {p.title}", ""]
    if p.png is not None:
        (assets / f"{p.key}.png").write_bytes(p.png)
        out.append(f"![{p.title}]({rel}/{p.key}.png)")
        if p.caption:
            out += ["", f"*{p.caption}*"]
    else:
        out.append(f"*Plot not available: {p.title}.*")
    out += [f"- *{m}*" for m in p.messages]
    out.append("")
    return out


def _plot_section(heading, plots, empty, assets: Path, rel: str, extra=()) -> list[str]:
    out = [f"## {heading}", ""]
    for p in plots:
        out += _plot(p, assets, rel)
    out += [f"*{m}*" for m in extra] + ([""] if extra else [])
    if not plots and not extra and empty:
        out += [f"*{empty}*", ""]
    return out


def _summary(c: Content, notes: Notes) -> list[str]:
    m = [
        "## Summary",
        "",
        "Latency and energy: pruned / base, timed in alternation in the same run, with the bootstrap "
        "confidence interval; an interval containing 1 is *no measurable change*.",
        "",
    ]
    for s in c.summaries:
        m += [f"### {s.model}", "", f"Base: {s.base_line}", ""]
        if not s.rows:
            m += ["*No pruned record with a base to compare.*", ""]
            continue
        rows = [[lab] + [_cell(cells[k], notes) for k, _ in s.columns] for lab, cells in s.rows]
        m += [_table(["Pruned"] + [h for _, h in s.columns], rows), ""]
    return m


def _details(c: Content, notes: Notes) -> list[str]:
    m = [
        "## Base vs pruned (details)",
        "",
        "Latency and energy changes from the paired ratios (interval in brackets); others vs the base "
        "(absolute for quality metrics); ✅ better, ❌ worse. `n/a [k]`: see note k.",
        "",
    ]
    for g in c.groups:
        header = ["Model"] + [f"{col.header} ({g.metric_for[col.key]})" for col in g.columns]
        rows = []
        for row in g.rows:
            tag = " [smoke]" if row.record["smoke"] and c.sel.smoke == "some" else ""
            name = f"**{row.label}**" if A.is_base(row.record) else row.label
            rows.append([name + tag] + [_cell(row.cells[col.key], notes) for col in g.columns])
        m += [f"### {g.model}", "", _table(header, rows), ""]
    if not c.groups:
        m += ["*No successful records.*", ""]
    return m


def _history(c: Content, assets: Path, rel: str) -> list[str]:
    m = ["## Release history", "", HISTORY_INTRO + R.LEGEND, ""]
    for series in c.history.series:
        m += [f"### Suite {series.title}", "", _table(R.RELEASE_HEADER, R.release_rows(series)), ""]
        lines = R.regression_lines(series)
        m += [f"- ❌ {x}" for x in lines] or [R.NO_REGRESSIONS]
        m.append("")
        for metric, plot in zip(series.metrics, c.history_plots[series.title], strict=True):
            m += _plot(plot, assets, rel)
            rows = R.metric_rows(series, metric)
            m += [f"*{R.metric_heading(series, metric)}*", "", _table(["config", *series.releases], rows), ""]
    return m


def to_markdown(c: Content, assets: Path, rel: str = ASSETS_DIR) -> str:
    notes = Notes()
    assets.mkdir(parents=True, exist_ok=True)
    m: list[str] = [f"# {c.title}", "", f"_Generated {c.generated}. {selection_text(c)}_", ""]
    if c.sel.smoke == "all":
        m += [f"> **{SMOKE_BANNER}**", ""]
    elif c.sel.smoke == "some":
        m += ["> **This report shows smoke records next to full ones (marked [smoke]).**", ""]
    warnings = c.sel.warnings + seed_notes(c)
    if warnings:
        m += ["> **Comparability warnings**", ">"] + [f"> - {w}" for w in warnings] + [""]
    if c.sel.notices:
        m += [f"- {n}" for n in c.sel.notices] + [""]
    m += _summary(c, notes)
    m += ["## Plots", ""]
    m += _plot(c.ratios_plot, assets, rel) + _plot(c.quality_plot, assets, rel)
    if c.history is not None:
        m += _history(c, assets, rel)
    m += _details(c, notes)
    m += [
        "## Sustainability",
        "",
        "Energy and carbon per 1,000 images, the saving from the paired energy "
        "ratio, the one-off energy (pruning, plus recovery for a recovered variant), and after how many images "
        "it has paid for itself.",
        "",
    ]
    if c.sustain:
        rows = [
            sustain_cells(s) + [s.breakeven + (f" [{notes.ref('; '.join(s.notes))}]" if s.notes else "")]
            for s in c.sustain
        ]
        m += [_table(SUSTAIN_HEADS, rows), ""]
    else:
        m += ["*No pruned records with a base to compare: no savings to show.*", ""]
    m += _plot_section("Kept units per layer", c.heatmaps, NO_HEATMAPS, assets, rel)
    m += _plot_section("Power timeline", c.power, None, assets, rel, c.power_missing)
    m += _plot_section("Mask training curves", c.training, NO_TRAINING, assets, rel)
    m += ["## Samples (identical prompts and seeds)", ""]
    for g in c.groups:
        m += [f"### {g.model}", ""]
        for i, s in enumerate(x for x in c.samples if x.model == g.model):
            cap = f"{s.label} — seed {s.seed}"
            if s.png is not None:
                name = f"samples_{P._slug(g.model)}_{i}{s.suffix}"
                (assets / name).write_bytes(s.png)
                m += [f"**{cap}**", "", f"![{cap}]({rel}/{name})", ""]
            else:
                m += [f"*{cap}: samples not available ({s.message})*", ""]
    if c.failed:
        rows = [[A.full_label(r), r["run_id"], r["error"] or ""] for r in c.failed]
        m += ["## Failed records", "", _table(["Model", "Run", "Error"], rows), ""]
    m += ["## Provenance", "", "Rows marked ⚠ differ between or within runs.", ""]
    m += [_table(["Key"] + c.prov.runs, [[("⚠ " if d else "") + k] + v for k, v, d in c.prov.rows]), ""]
    if notes.items:
        m += ["## Notes", ""] + [f"{i}. {n}" for i, n in enumerate(notes.items, 1)] + [""]
    return "\n".join(m)
