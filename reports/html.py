"""The HTML report: one self-contained file (images as data URIs), readable without a server."""

from __future__ import annotations

import base64
import html

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
from reports.gate_result import key_text
from reports.plots import Plot
from reports.records import full_label, is_base

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
td{white-space:nowrap} td.l{white-space:normal}
th{background:#f3f3f3} td.l,th.l{text-align:left}
tr.base td{background:#fafafa;font-weight:600}
.good{color:#137333} .bad{color:#b3261e} .neutral{color:#666}
.delta{display:block;font-size:11px}
.na{color:#888;border-bottom:1px dotted #888;cursor:help}
.ref{color:#888}
.est{font-size:10px;color:#8a6d00;border-bottom:1px dotted #8a6d00;cursor:help}
.banner{background:#fff4ce;border:1px solid #e0b300;padding:10px 14px;margin:12px 0;font-weight:600}
.warn{background:#fdecea;border:1px solid #e57373;padding:8px 14px;margin:12px 0}
.notice{background:#eef4fb;border:1px solid #90b4dd;padding:8px 14px;margin:12px 0}
.missing{color:#8a6d00;font-style:italic}
.baseline{font-size:12px;color:#444;margin:2px 0 6px}
figure{margin:12px 0} figcaption{font-size:12px;color:#555;max-width:900px}
img{max-width:100%} img.grid{image-rendering:pixelated}
.samples{display:flex;flex-direction:column;gap:6px}
tr.differs td{background:#fff4ce}
tr.regress td{background:#fdecea} td.fail{color:#b3261e;font-weight:600} td.nc{color:#888}
small{color:#666}
"""


def _e(x) -> str:
    """``x`` as HTML text (quotes escaped too, for attributes)."""
    return html.escape(str(x), quote=True)


def _data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def _cell(cell: Cell, notes: Notes) -> str:
    if cell.status in ("unavailable", "missing"):
        number = notes.ref(cell.note)
        return f'<td><span class="na" title="{_e(cell.note)}">n/a<sup>[{number}]</sup></span></td>'
    if cell.status == "reference":
        return f'<td><span class="ref" title="{_e(cell.note)}">{_e(cell.text)}</span></td>'
    title = f' title="{_e(cell.title)}"' if cell.title else ""
    out = f"<span{title}>{_e(cell.text)}</span>"
    if cell.status == "estimated":
        number = notes.ref(f"estimated: {cell.note}")
        out += f' <span class="est" title="{_e(cell.note)}">(est.)<sup>[{number}]</sup></span>'
    if cell.delta:
        out += f'<span class="delta {cell.verdict}"{title}>{_e(cell.arrow)} {_e(cell.delta)}</span>'
    return f"<td>{out}</td>"


def _plot(plot: Plot) -> str:
    parts = [f"<h3>{_e(plot.title)}</h3>"]
    if plot.png is not None:
        parts.append(
            f'<figure class="plot"><img alt="{_e(plot.title)}" src="{_data_uri(plot.png)}">'
            + (f"<figcaption>{_e(plot.caption)}</figcaption>" if plot.caption else "")
            + "</figure>"
        )
    else:
        parts.append(f'<p class="missing">Plot not available: {_e(plot.title)}.</p>')
    for message in plot.messages:
        parts.append(f'<p class="missing">{_e(message)}</p>')
    return "\n".join(parts)


def _plot_section(anchor: str, heading: str, plots: list[Plot], empty: str, extra=()) -> list[str]:
    """A section of per-record plots, with ``empty`` said when there are none."""
    out = [f'<h2 id="{anchor}">{heading}</h2>', *(_plot(p) for p in plots)]
    out += [f'<p class="missing">{_e(message)}</p>' for message in extra]
    if not plots and not extra:
        out.append(f'<p class="missing">{empty}</p>')
    return out


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"


def _left_cells(texts) -> str:
    return "".join(f"<td class='l'>{_e(x)}</td>" for x in texts)


def _left_heads(texts) -> list[str]:
    return [f"<th class='l'>{_e(x)}</th>" for x in texts]


def _header(content: Content) -> list[str]:
    """The page's head, title, selection, smoke banner, comparability warnings and notices."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(content.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(content.title)}</h1>",
        f"<p><small>Generated {_e(content.generated)}. {_e(selection_text(content))}</small></p>",
    ]
    if content.selection.smoke == "all":
        parts.append(f'<div class="banner">{_e(SMOKE_BANNER)}</div>')
    elif content.selection.smoke == "some":
        parts.append(
            '<div class="banner">This report shows smoke records next to full ones (marked [smoke]).</div>'
        )
    warnings = content.selection.warnings + seed_notes(content)
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        parts.append(f'<div class="warn"><strong>Comparability warnings</strong><ul>{items}</ul></div>')
    if content.selection.notices:
        items = "".join(f"<li>{_e(n)}</li>" for n in content.selection.notices)
        parts.append(f'<div class="notice"><ul>{items}</ul></div>')
    return parts


def _summary(content: Content, notes: Notes) -> list[str]:
    parts = ['<section id="summary"><h2>Summary</h2>']
    parts.append(
        "<p><small>Per pruned model: the share of parameters and FLOPs per step removed; latency and energy "
        "per image as the ratio pruned / base, timed in alternation in the same run, with the bootstrap "
        "confidence interval (an interval containing 1 is <em>no measurable change</em>); the quality "
        "metrics the suite asked for, with the change from the base.</small></p>"
    )
    for summary in content.summaries:
        parts.append(f"<h3>{_e(summary.model)}</h3><p class='baseline'>Base: {_e(summary.base_line)}</p>")
        if not summary.rows:
            parts.append('<p class="missing">No pruned record with a base to compare.</p>')
            continue
        head = ["<th class='l'>Pruned</th>"] + [
            f"<th title='{_e(key)}'>{_e(header)}</th>" for key, header in summary.columns
        ]
        rows = [
            f"<tr><td class='l'>{_e(row_label)}</td>"
            + "".join(_cell(cells[key], notes) for key, _ in summary.columns)
            + "</tr>"
            for row_label, cells in summary.rows
        ]
        parts.append(_table(head, rows))
    if not content.summaries:
        parts.append('<p class="missing">No successful records.</p>')
    parts.append("</section>")
    return parts


def _details(content: Content, notes: Notes) -> list[str]:
    parts = ['<h2 id="results">Base vs pruned (details)</h2>']
    parts.append(
        "<p><small>Latency and energy changes come from the paired ratios (interval in brackets); other "
        "changes are relative to the base of the same model (absolute for quality metrics). "
        "<span class='good'>green</span> = better, <span class='bad'>red</span> = worse, by each metric's "
        "direction. Hover a value for its interval, n/a for the reason.</small></p>"
    )
    for group in content.groups:
        head = ["<th class='l'>Model</th>"] + [
            f'<th title="{_e(group.metric_for[column.key])}">{_e(column.header)}<br><small>{_e(group.metric_for[column.key])}</small></th>'
            for column in group.columns
        ]
        rows = []
        for row in group.rows:
            smoke = " [smoke]" if row.record["smoke"] and content.selection.smoke == "some" else ""
            row_class = ' class="base"' if is_base(row.record) else ""
            cells = "".join(_cell(row.cells[column.key], notes) for column in group.columns)
            rows.append(f"<tr{row_class}><td class='l'>{_e(row.label + smoke)}</td>{cells}</tr>")
        parts.append(f"<h3>{_e(group.model)}</h3>" + _table(head, rows))
    if not content.groups:
        parts.append('<p class="missing">No successful records.</p>')
    return parts


def _sustainability(content: Content, notes: Notes) -> list[str]:
    parts = ['<h2 id="sustainability">Sustainability</h2>']
    parts.append(
        "<p><small>Energy and carbon per 1,000 images; the saving from the paired energy ratio (none "
        "when its interval contains 1); the one-off energy: the pruning's own (<code>pruning_energy_j</code>) plus, for a recovered "
        "variant, its distillation (<code>recovery_energy_j</code>); "
        "and after how many generated images the pruned model has paid that cost back.</small></p>"
    )
    if not content.sustainability:
        return parts + [
            '<p class="missing">No pruned records with a base to compare: no savings to show.</p>'
        ]
    rows = []
    for row in content.sustainability:
        breakeven = _e(row.breakeven)
        if row.notes:
            number = notes.ref("; ".join(row.notes))
            breakeven = (
                f'<span class="na" title="{_e("; ".join(row.notes))}">{breakeven}<sup>[{number}]</sup></span>'
            )
        rows.append(f"<tr>{_left_cells(sustainability_cells(row))}<td class='l'>{breakeven}</td></tr>")
    return parts + [_table(_left_heads(SUSTAINABILITY_HEADER), rows)]


def _history_table(series: releases.Series, metric: str) -> str:
    head = ["<th class='l'>Config</th>"] + [f"<th>{_e(name)}</th>" for name in series.releases]
    rows = []
    for key in series.configs(metric):
        cells = []
        points = [series.cell(metric, key, name) for name in series.releases]
        for point in points:
            cell_class = {"fail": " class='fail'", "not_compared": " class='nc'"}.get(
                point.verdict if point else "", ""
            )
            tip = f" title='{_e('; '.join(point.reasons))}'" if point and point.reasons else ""
            cells.append(f"<td{cell_class}{tip}>{_e(releases.cell_text(point))}</td>")
        regress = any(point and point.verdict == "fail" for point in points)
        rows.append(
            f"<tr{' class=regress' if regress else ''}><td class='l'>{_e(key_text(key))}</td>{''.join(cells)}</tr>"
        )
    return _table(head, rows)


def _history(content: Content) -> list[str]:
    parts = ['<section id="release-history"><h2>Release history</h2>']
    parts.append(f"<p><small>{_e(HISTORY_INTRO + releases.LEGEND)}</small></p>")
    for series in content.history.series:
        parts.append(f"<h3>Suite {_e(series.title)}</h3>")
        rows = [
            ("<tr class='regress'>" if step.verdict == "fail" else "<tr>") + _left_cells(row) + "</tr>"
            for step, row in zip(series.steps, releases.release_rows(series), strict=True)
        ]
        parts.append(_table(_left_heads(releases.RELEASE_HEADER), rows))
        lines = releases.regression_lines(series)
        if lines:
            parts.append('<ul class="regressions">' + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>")
        else:
            parts.append(f"<p>{_e(releases.NO_REGRESSIONS)}</p>")
        for metric, plot in zip(series.metrics, content.history_plots[series.title], strict=True):
            parts.append(_plot(plot))
            parts.append(f"<p><small>{_e(releases.metric_heading(series, metric))}</small></p>")
            parts.append(_history_table(series, metric))
    parts.append("</section>")
    return parts


def _samples(content: Content) -> list[str]:
    parts = ['<h2 id="samples">Samples (identical prompts and seeds)</h2>']
    for group in content.groups:
        parts.append(f"<h3>{_e(group.model)}</h3><div class='samples'>")
        for sample in (s for s in content.samples if s.model == group.model):
            caption = f"{sample.label} — seed {sample.seed}"
            if sample.png is not None:
                parts.append(
                    f'<figure class="sample"><img class="grid" alt="{_e(caption)}" width="{sample.width}" '
                    f'height="{sample.height}" src="{_data_uri(sample.png)}"><figcaption>{_e(caption)}</figcaption></figure>'
                )
            else:
                parts.append(
                    f'<p class="missing">{_e(caption)}: samples not available ({_e(sample.message)})</p>'
                )
        parts.append("</div>")
    return parts


def _failed(content: Content) -> list[str]:
    if not content.failed:
        return []
    rows = [f"<tr>{_left_cells((full_label(r), r['run_id'], r['error'] or ''))}</tr>" for r in content.failed]
    return ['<h2 id="failed">Failed records</h2>', _table(_left_heads(("Model", "Run", "Error")), rows)]


def _provenance(content: Content) -> list[str]:
    parts = ['<h2 id="provenance">Provenance</h2>']
    parts.append(
        "<p><small>Per run: environment and settings as recorded. Highlighted rows differ between or "
        "within runs.</small></p>"
    )
    rows = [
        ("<tr class='differs'>" if differs else "<tr>") + _left_cells([key, *values]) + "</tr>"
        for key, values, differs in content.provenance.rows
    ]
    return parts + [_table(_left_heads(["Key", *content.provenance.runs]), rows)]


def to_html(content: Content) -> str:
    """The report as one self-contained HTML page."""
    notes = Notes()
    parts = _header(content) + _summary(content, notes)
    parts.append('<h2 id="plots">Plots</h2>')
    parts += [_plot(p) for p in (content.ratios_plot, content.quality_plot)]
    if content.history is not None:
        parts += _history(content)
    parts += _details(content, notes) + _sustainability(content, notes)
    parts += _plot_section("kept-units", "Kept units per layer", content.heatmaps, NO_HEATMAPS)
    parts += _plot_section("power", "Power timeline", content.power, "No records.", content.power_missing)
    parts += _plot_section("training", "Mask training curves", content.training, NO_TRAINING)
    parts += _samples(content) + _failed(content) + _provenance(content)
    if notes.items:
        parts.append(
            '<h2 id="notes">Notes</h2><ol>' + "".join(f"<li>{_e(n)}</li>" for n in notes.items) + "</ol>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
