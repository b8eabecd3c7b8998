"""The HTML report: one self-contained file (images as data URIs), readable without a server."""

from __future__ import annotations

import base64
import html

from reports import analysis as A
from reports import plots as P
from reports import releases as R
from reports.cells import Cell
from reports.gate import key_text
from reports.report import (
    HISTORY_INTRO,
    NO_HEATMAPS,
    NO_TRAINING,
    SMOKE_BANNER,
    Content,
    Notes,
    seed_notes,
    selection_text,
)

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
    return html.escape(str(x), quote=True)


def _data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def _cell(cell: Cell, notes: Notes) -> str:
    if cell.status in ("unavailable", "missing"):
        n = notes.ref(cell.note)
        return f'<td><span class="na" title="{_e(cell.note)}">n/a<sup>[{n}]</sup></span></td>'
    if cell.status == "reference":
        return f'<td><span class="ref" title="{_e(cell.note)}">{_e(cell.text)}</span></td>'
    title = f' title="{_e(cell.title)}"' if cell.title else ""
    out = f"<span{title}>{_e(cell.text)}</span>"
    if cell.status == "estimated":
        n = notes.ref(f"estimated: {cell.note}")
        out += f' <span class="est" title="{_e(cell.note)}">(est.)<sup>[{n}]</sup></span>'
    if cell.delta:
        out += f'<span class="delta {cell.verdict}"{title}>{_e(cell.arrow)} {_e(cell.delta)}</span>'
    return f"<td>{out}</td>"


def _plot(p: P.Plot) -> str:
    parts = [f"<h3>{_e(p.title)}</h3>"]
    if p.png is not None:
        parts.append(
            f'<figure class="plot"><img alt="{_e(p.title)}" src="{_data_uri(p.png)}">'
            + (f"<figcaption>{_e(p.caption)}</figcaption>" if p.caption else "")
            + "</figure>"
        )
    else:
        parts.append(f'<p class="missing">Plot not available: {_e(p.title)}.</p>')
    for m in p.messages:
        parts.append(f'<p class="missing">{_e(m)}</p>')
    return "\n".join(parts)


def _plot_section(anchor: str, heading: str, plots: list[P.Plot], empty: str, extra=()) -> list[str]:
    """A section of per-record plots, with ``empty`` said when there are none."""
    out = [f'<h2 id="{anchor}">{heading}</h2>', *(_plot(p) for p in plots)]
    out += [f'<p class="missing">{_e(m)}</p>' for m in extra]
    if not plots and not extra:
        out.append(f'<p class="missing">{empty}</p>')
    return out


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"


def _summary(c: Content, notes: Notes) -> list[str]:
    h = ['<section id="summary"><h2>Summary</h2>']
    h.append(
        "<p><small>Per pruned model: the share of parameters and FLOPs per step removed; latency and energy "
        "per image as the ratio pruned / base, timed in alternation in the same run, with the bootstrap "
        "confidence interval (an interval containing 1 is <em>no measurable change</em>); the quality "
        "metrics the suite asked for, with the change from the base.</small></p>"
    )
    for s in c.summaries:
        h.append(f"<h3>{_e(s.model)}</h3><p class='baseline'>Base: {_e(s.base_line)}</p>")
        if not s.rows:
            h.append('<p class="missing">No pruned record with a base to compare.</p>')
            continue
        head = ["<th class='l'>Pruned</th>"] + [f"<th title='{_e(k)}'>{_e(t)}</th>" for k, t in s.columns]
        rows = [
            f"<tr><td class='l'>{_e(lab)}</td>"
            + "".join(_cell(cells[k], notes) for k, _ in s.columns)
            + "</tr>"
            for lab, cells in s.rows
        ]
        h.append(_table(head, rows))
    if not c.summaries:
        h.append('<p class="missing">No successful records.</p>')
    h.append("</section>")
    return h


def _details(c: Content, notes: Notes) -> list[str]:
    h = ['<h2 id="results">Base vs pruned (details)</h2>']
    h.append(
        "<p><small>Latency and energy changes come from the paired ratios (interval in brackets); other "
        "changes are relative to the base of the same model (absolute for quality metrics). "
        "<span class='good'>green</span> = better, <span class='bad'>red</span> = worse, by each metric's "
        "direction. Hover a value for its interval, n/a for the reason.</small></p>"
    )
    for g in c.groups:
        head = ["<th class='l'>Model</th>"] + [
            f'<th title="{_e(g.metric_for[col.key])}">{_e(col.header)}<br><small>{_e(g.metric_for[col.key])}</small></th>'
            for col in g.columns
        ]
        rows = []
        for row in g.rows:
            tag = " [smoke]" if row.record["smoke"] and c.sel.smoke == "some" else ""
            cls = ' class="base"' if A.is_base(row.record) else ""
            cells = "".join(_cell(row.cells[col.key], notes) for col in g.columns)
            rows.append(f"<tr{cls}><td class='l'>{_e(row.label + tag)}</td>{cells}</tr>")
        h.append(f"<h3>{_e(g.model)}</h3>" + _table(head, rows))
    if not c.groups:
        h.append('<p class="missing">No successful records.</p>')
    return h


SUSTAIN_HEADS = [
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


def sustain_cells(s: A.Sustain) -> list[str]:
    return [
        s.model,
        s.label,
        f"{s.base_energy} → {s.pruned_energy}",
        f"{s.base_kwh_1k} → {s.pruned_kwh_1k}",
        f"{s.base_co2_1k} → {s.pruned_co2_1k}",
        s.saving_kwh_1k,
        s.saving_co2_1k,
        s.pruning_cost,
        s.pruning_co2,
    ]


def _sustainability(c: Content, notes: Notes) -> list[str]:
    h = ['<h2 id="sustainability">Sustainability</h2>']
    h.append(
        "<p><small>Energy and carbon per 1,000 images; the saving from the paired energy ratio (none "
        "when its interval contains 1); the one-off energy: the pruning's own (<code>pruning_energy_j</code>) plus, for a recovered "
        "variant, its distillation (<code>recovery_energy_j</code>); "
        "and after how many generated images the pruned model has paid that cost back.</small></p>"
    )
    if not c.sustain:
        return h + ['<p class="missing">No pruned records with a base to compare: no savings to show.</p>']
    rows = []
    for s in c.sustain:
        row = "".join(f"<td class='l'>{_e(x)}</td>" for x in sustain_cells(s))
        be = _e(s.breakeven)
        if s.notes:
            n = notes.ref("; ".join(s.notes))
            be = f'<span class="na" title="{_e("; ".join(s.notes))}">{be}<sup>[{n}]</sup></span>'
        rows.append(f"<tr>{row}<td class='l'>{be}</td></tr>")
    return h + [_table([f"<th class='l'>{_e(x)}</th>" for x in SUSTAIN_HEADS], rows)]


def _history_table(series: R.Series, metric: str) -> str:
    head = ["<th class='l'>Config</th>"] + [f"<th>{_e(r)}</th>" for r in series.releases]
    rows = []
    for key in series.configs(metric):
        cells = []
        points = [series.cell(metric, key, name) for name in series.releases]
        for p in points:
            cls = {"fail": " class='fail'", "not_compared": " class='nc'"}.get(p.verdict if p else "", "")
            tip = f" title='{_e('; '.join(p.reasons))}'" if p and p.reasons else ""
            cells.append(f"<td{cls}{tip}>{_e(R.cell_text(p))}</td>")
        regress = any(p and p.verdict == "fail" for p in points)
        rows.append(
            f"<tr{' class=regress' if regress else ''}><td class='l'>{_e(key_text(key))}</td>{''.join(cells)}</tr>"
        )
    return _table(head, rows)


def _history(c: Content) -> list[str]:
    h = ['<section id="release-history"><h2>Release history</h2>']
    h.append(f"<p><small>{_e(HISTORY_INTRO + R.LEGEND)}</small></p>")
    for series in c.history.series:
        h.append(f"<h3>Suite {_e(series.title)}</h3>")
        rows = [
            ("<tr class='regress'>" if step.verdict == "fail" else "<tr>")
            + "".join(f"<td class='l'>{_e(x)}</td>" for x in row)
            + "</tr>"
            for step, row in zip(series.steps, R.release_rows(series), strict=True)
        ]
        h.append(_table([f"<th class='l'>{_e(x)}</th>" for x in R.RELEASE_HEADER], rows))
        lines = R.regression_lines(series)
        if lines:
            h.append('<ul class="regressions">' + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>")
        else:
            h.append(f"<p>{_e(R.NO_REGRESSIONS)}</p>")
        for metric, plot in zip(series.metrics, c.history_plots[series.title], strict=True):
            h.append(_plot(plot))
            h.append(f"<p><small>{_e(R.metric_heading(series, metric))}</small></p>")
            h.append(_history_table(series, metric))
    h.append("</section>")
    return h


def _samples(c: Content) -> list[str]:
    h = ['<h2 id="samples">Samples (identical prompts and seeds)</h2>']
    for g in c.groups:
        h.append(f"<h3>{_e(g.model)}</h3><div class='samples'>")
        for s in (s for s in c.samples if s.model == g.model):
            cap = f"{s.label} — seed {s.seed}"
            if s.png is not None:
                h.append(
                    f'<figure class="sample"><img class="grid" alt="{_e(cap)}" width="{s.width}" '
                    f'height="{s.height}" src="{_data_uri(s.png, s.mime)}"><figcaption>{_e(cap)}</figcaption></figure>'
                )
            else:
                h.append(f'<p class="missing">{_e(cap)}: samples not available ({_e(s.message)})</p>')
        h.append("</div>")
    return h


def _provenance(c: Content) -> list[str]:
    h = ['<h2 id="provenance">Provenance</h2>']
    h.append(
        "<p><small>Per run: environment and settings as recorded. Highlighted rows differ between or "
        "within runs.</small></p>"
    )
    rows = [
        ("<tr class='differs'>" if differs else "<tr>")
        + f"<td class='l'>{_e(key)}</td>"
        + "".join(f"<td class='l'>{_e(v)}</td>" for v in vals)
        + "</tr>"
        for key, vals, differs in c.prov.rows
    ]
    head = ["<th class='l'>Key</th>"] + [f"<th class='l'>{_e(r)}</th>" for r in c.prov.runs]
    return h + [_table(head, rows)]


def to_html(c: Content) -> str:
    notes = Notes()
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(c.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(c.title)}</h1>",
        f"<p><small>Generated {_e(c.generated)}. {_e(selection_text(c))}</small></p>",
    ]
    if c.sel.smoke == "all":
        h.append(f'<div class="banner">{_e(SMOKE_BANNER)}</div>')
    elif c.sel.smoke == "some":
        h.append(
            '<div class="banner">This report shows smoke records next to full ones (marked [smoke]).</div>'
        )
    warnings = c.sel.warnings + seed_notes(c)
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        h.append(f'<div class="warn"><strong>Comparability warnings</strong><ul>{items}</ul></div>')
    if c.sel.notices:
        h.append(
            '<div class="notice"><ul>' + "".join(f"<li>{_e(n)}</li>" for n in c.sel.notices) + "</ul></div>"
        )
    h += _summary(c, notes)
    h.append('<h2 id="plots">Plots</h2>')
    h += [_plot(p) for p in (c.ratios_plot, c.quality_plot)]
    if c.history is not None:
        h += _history(c)
    h += _details(c, notes)
    h += _sustainability(c, notes)
    h += _plot_section("kept-units", "Kept units per layer", c.heatmaps, NO_HEATMAPS)
    h += _plot_section("power", "Power timeline", c.power, "No records.", c.power_missing)
    h += _plot_section("training", "Mask training curves", c.training, NO_TRAINING)
    h += _samples(c)
    if c.failed:
        h.append('<h2 id="failed">Failed records</h2>')
        rows = [
            f"<tr><td class='l'>{_e(A.full_label(r))}</td><td class='l'>{_e(r['run_id'])}</td>"
            f"<td class='l'>{_e(r['error'] or '')}</td></tr>"
            for r in c.failed
        ]
        h.append(_table(["<th class='l'>Model</th><th class='l'>Run</th><th class='l'>Error</th>"], rows))
    h += _provenance(c)
    if notes.items:
        h.append(
            '<h2 id="notes">Notes</h2><ol>' + "".join(f"<li>{_e(n)}</li>" for n in notes.items) + "</ol>"
        )
    h.append("</body></html>")
    return "\n".join(h)
