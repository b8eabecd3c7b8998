"""HTML (self-contained, images as data URIs) and Markdown (images in an assets folder) reports."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ecodiff_bench.core.files import write_text_atomic
from reports import analysis as A
from reports import plots as P

HTML_NAME = "report.html"
MD_NAME = "report.md"
ASSETS_DIR = "assets"
FORMATS = ("html", "md")


# What the per-record plot sections say when they have no plots
NO_HEATMAPS = "No pruned records: no pruning plans to show."
NO_TRAINING = "No training curves recorded (only ecodiff trains masks)."


@dataclass
class Content:
    title: str
    generated: str
    sel: A.Selection
    groups: list[A.Group]
    sustain: list[A.Sustain]
    prov: A.ProvenanceTable
    quality_plot: P.Plot
    bars_plot: P.Plot
    heatmaps: list[P.Plot]
    power: list[P.Plot]
    training: list[P.Plot]
    samples: list[P.Sample]
    failed: list[dict]


def build(sel: A.Selection, roots: list[Path], title: str) -> Content:
    groups = A.build_groups(sel.records)
    ok = [r for r in sel.records if r["status"] == "ok"]
    if not groups and ok == []:
        sel.warnings.append("No successful records: nothing to tabulate or plot.")
    for g in groups:
        if not g.bases:
            sel.warnings.append(f"{g.model}: no base (unpruned) record selected; deltas and savings are n/a.")
        if not g.pruned:
            sel.notices.append(f"{g.model}: no pruned record selected.")
    return Content(
        title=title,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sel=sel,
        groups=groups,
        sustain=A.sustainability(groups),
        prov=A.provenance(sel.records),
        quality_plot=P.quality_vs_energy(ok),
        bars_plot=P.latency_energy_bars(groups),
        heatmaps=P.kept_units_heatmaps(groups, roots),
        power=P.power_timelines(groups, roots),
        training=P.training_curves(groups, roots),
        samples=P.sample_grids(groups, roots),
        failed=[r for r in sel.records if r["status"] != "ok"],
    )


def _seed_note(c: Content) -> list[str]:
    out = []
    for g in c.groups:
        seeds = {s.seed for s in c.samples if s.model == g.model and s.png is not None}
        if len(seeds) > 1:
            out.append(
                f"{g.model}: sample grids come from different seeds ({', '.join(map(str, sorted(seeds, key=str)))}); "
                "images are not pairwise comparable."
            )
    return out


class Notes:
    """Numbered footnotes for n/a reasons and estimate remarks, shared across the report."""

    def __init__(self):
        self.items: list[str] = []

    def ref(self, text: str) -> int:
        if text not in self.items:
            self.items.append(text)
        return self.items.index(text) + 1


def _selection_text(c: Content) -> str:
    f = c.sel.filters
    parts = [f"{k}={v}" for k, v in f.items()] or ["all runs (latest record per configuration)"]
    n = len(c.sel.records)
    smoke = sum(1 for r in c.sel.records if r["smoke"])
    return f"Selection: {', '.join(parts)}; {n} record(s), {smoke} smoke."


SMOKE_BANNER = (
    "SMOKE RUN: these records come from a smoke configuration (few steps/samples). "
    "The numbers check that the pipeline works; they are not benchmark results."
)


# ============================================================================= HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
td{white-space:nowrap} td.l{white-space:normal}
th{background:#f3f3f3} td.l,th.l{text-align:left}
tr.base td{background:#fafafa;font-weight:600}
.good{color:#137333} .bad{color:#b3261e} .neutral{color:#666}
.delta{display:block;font-size:11px}
.na{color:#888;border-bottom:1px dotted #888;cursor:help}
.est{font-size:10px;color:#8a6d00;border-bottom:1px dotted #8a6d00;cursor:help}
.banner{background:#fff4ce;border:1px solid #e0b300;padding:10px 14px;margin:12px 0;font-weight:600}
.warn{background:#fdecea;border:1px solid #e57373;padding:8px 14px;margin:12px 0}
.notice{background:#eef4fb;border:1px solid #90b4dd;padding:8px 14px;margin:12px 0}
.missing{color:#8a6d00;font-style:italic}
figure{margin:12px 0} figcaption{font-size:12px;color:#555}
img{max-width:100%} .samples{display:flex;flex-wrap:wrap;gap:16px}
.samples figure{max-width:360px} tr.differs td{background:#fff4ce}
small{color:#666}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def _html_cell(cell: A.Cell, notes: Notes) -> str:
    if cell.status in ("unavailable", "missing"):
        n = notes.ref(cell.note)
        return f'<td><span class="na" title="{_e(cell.note)}">n/a<sup>[{n}]</sup></span></td>'
    out = _e(cell.text)
    if cell.status == "estimated":
        n = notes.ref(f"estimated: {cell.note}")
        out += f' <span class="est" title="{_e(cell.note)}">(est.)<sup>[{n}]</sup></span>'
    if cell.delta:
        out += (
            f'<span class="delta {cell.verdict}" title="change vs base; {cell.verdict}">'
            f"{_e(cell.arrow)} {_e(cell.delta)}</span>"
        )
    return f"<td>{out}</td>"


def _html_plot(p: P.Plot) -> str:
    parts = [f"<h3>{_e(p.title)}</h3>"]
    if p.png is not None:
        parts.append(
            f'<figure><img alt="{_e(p.title)}" src="{_data_uri(p.png)}">'
            + (f"<figcaption>{_e(p.caption)}</figcaption>" if p.caption else "")
            + "</figure>"
        )
    else:
        parts.append(f'<p class="missing">Plot not available: {_e(p.title)}.</p>')
    for m in p.messages:
        parts.append(f'<p class="missing">{_e(m)}</p>')
    return "\n".join(parts)


def _html_plot_section(anchor: str, heading: str, plots: list[P.Plot], empty: str) -> list[str]:
    """A section of per-record plots, with ``empty`` said when there are none."""
    out = [f'<h2 id="{anchor}">{heading}</h2>', *(_html_plot(p) for p in plots)]
    if not plots:
        out.append(f'<p class="missing">{empty}</p>')
    return out


def to_html(c: Content) -> str:
    notes = Notes()
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(c.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(c.title)}</h1>",
        f"<p><small>Generated {_e(c.generated)}. {_e(_selection_text(c))}</small></p>",
    ]
    if c.sel.smoke == "all":
        h.append(f'<div class="banner">{_e(SMOKE_BANNER)}</div>')
    elif c.sel.smoke == "some":
        h.append(
            f'<div class="banner">{_e("This report shows smoke records next to full ones (marked [smoke]).")}</div>'
        )
    warnings = c.sel.warnings + _seed_note(c)
    if warnings:
        h.append(
            '<div class="warn"><strong>Comparability warnings</strong><ul>'
            + "".join(f"<li>{_e(w)}</li>" for w in warnings)
            + "</ul></div>"
        )
    if c.sel.notices:
        h.append(
            '<div class="notice"><ul>' + "".join(f"<li>{_e(n)}</li>" for n in c.sel.notices) + "</ul></div>"
        )

    # --- results table
    h.append('<h2 id="results">Base vs pruned</h2>')
    h.append(
        "<p><small>Deltas are relative to the base model of the same family (absolute for quality "
        "metrics). <span class='good'>green</span> = better, <span class='bad'>red</span> = worse, "
        "according to each metric's direction. Hover n/a for the reason.</small></p>"
    )
    for g in c.groups:
        h.append(f"<h3>{_e(g.model)}</h3><table><thead><tr><th class='l'>Model</th>")
        for key, header, _ in A.COLUMNS:
            h.append(
                f'<th title="{_e(g.metric_for[key])}">{_e(header)}<br><small>{_e(g.metric_for[key])}</small></th>'
            )
        h.append("</tr></thead><tbody>")
        for row in g.rows:
            tag = " [smoke]" if row.record["smoke"] and c.sel.smoke == "some" else ""
            cls = ' class="base"' if A.is_base(row.record) else ""
            h.append(f"<tr{cls}><td class='l'>{_e(row.label + tag)}</td>")
            h.extend(_html_cell(row.cells[key], notes) for key, _, _ in A.COLUMNS)
            h.append("</tr>")
        h.append("</tbody></table>")
    if not c.groups:
        h.append('<p class="missing">No successful records.</p>')

    # --- sustainability
    h.append('<h2 id="sustainability">Sustainability</h2>')
    h.append(
        "<p><small>Energy and carbon per 1,000 images; the energy the pruning itself cost "
        "(<code>pruning_energy_j</code>); and after how many generated images the pruned model has "
        "paid that cost back (pruning energy / energy saved per image).</small></p>"
    )
    if c.sustain:
        heads = [
            "Model",
            "Pruned",
            "Energy/image base → pruned",
            "Energy per 1k images base → pruned",
            "gCO2e per 1k base → pruned",
            "Saving per 1k images",
            "gCO2e saved per 1k",
            "Pruning cost",
            "Pruning gCO2e",
            "Pays back after",
        ]
        h.append(
            "<table><thead><tr>"
            + "".join(f"<th class='l'>{_e(x)}</th>" for x in heads)
            + "</tr></thead><tbody>"
        )
        for s in c.sustain:
            cells = [
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
            row = "".join(f"<td class='l'>{_e(x)}</td>" for x in cells)
            be = _e(s.breakeven)
            if s.notes:
                n = notes.ref("; ".join(s.notes))
                be = f'<span class="na" title="{_e("; ".join(s.notes))}">{be}<sup>[{n}]</sup></span>'
            h.append(f"<tr>{row}<td class='l'>{be}</td></tr>")
        h.append("</tbody></table>")
    else:
        h.append('<p class="missing">No pruned records with a base to compare: no savings to show.</p>')

    # --- plots
    h.append('<h2 id="plots">Plots</h2>')
    h.append(_html_plot(c.quality_plot))
    h.append(_html_plot(c.bars_plot))
    h += _html_plot_section("kept-units", "Kept units per layer", c.heatmaps, NO_HEATMAPS)
    h += _html_plot_section("power", "Power timeline", c.power, "No records.")
    h += _html_plot_section("training", "Mask training curves", c.training, NO_TRAINING)

    # --- samples
    h.append('<h2 id="samples">Samples (identical seeds)</h2>')
    for g in c.groups:
        h.append(f"<h3>{_e(g.model)}</h3><div class='samples'>")
        for s in (s for s in c.samples if s.model == g.model):
            cap = f"{s.label} — seed {s.seed}"
            if s.png is not None:
                h.append(
                    f'<figure><img alt="{_e(cap)}" src="{_data_uri(s.png, s.mime)}">'
                    f"<figcaption>{_e(cap)}</figcaption></figure>"
                )
            else:
                h.append(
                    f'<figure><p class="missing">{_e(cap)}: samples not available ({_e(s.message)})</p></figure>'
                )
        h.append("</div>")

    # --- failed
    if c.failed:
        h.append(
            '<h2 id="failed">Failed records</h2><table><thead><tr><th class="l">Model</th>'
            '<th class="l">Run</th><th class="l">Error</th></tr></thead><tbody>'
        )
        for r in c.failed:
            h.append(
                f"<tr><td class='l'>{_e(A.full_label(r))}</td><td class='l'>{_e(r['run_id'])}</td>"
                f"<td class='l'>{_e(r['error'] or '')}</td></tr>"
            )
        h.append("</tbody></table>")

    # --- provenance
    h.append('<h2 id="provenance">Provenance</h2>')
    h.append(
        "<p><small>Per run: environment and settings as recorded. Highlighted rows differ between or "
        "within runs.</small></p>"
    )
    h.append(
        "<table><thead><tr><th class='l'>Key</th>"
        + "".join(f"<th class='l'>{_e(r)}</th>" for r in c.prov.runs)
        + "</tr></thead><tbody>"
    )
    for key, vals, differs in c.prov.rows:
        cls = ' class="differs"' if differs else ""
        h.append(
            f"<tr{cls}><td class='l'>{_e(key)}</td>"
            + "".join(f"<td class='l'>{_e(v)}</td>" for v in vals)
            + "</tr>"
        )
    h.append("</tbody></table>")

    # --- notes
    if notes.items:
        h.append(
            '<h2 id="notes">Notes</h2><ol>' + "".join(f"<li>{_e(n)}</li>" for n in notes.items) + "</ol>"
        )
    h.append("</body></html>")
    return "\n".join(h)


# ============================================================================= Markdown
def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_cell(cell: A.Cell, notes: Notes) -> str:
    if cell.status in ("unavailable", "missing"):
        return f"n/a [{notes.ref(cell.note)}]"
    out = cell.text
    if cell.status == "estimated":
        out += f" (est.) [{notes.ref('estimated: ' + cell.note)}]"
    if cell.delta:
        mark = {"good": "✅", "bad": "❌"}.get(cell.verdict, "")
        out += f" ({cell.arrow} {cell.delta}{' ' + mark if mark else ''})"
    return out


def _md_plot(p: P.Plot, assets: Path, rel: str) -> list[str]:
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


def _md_plot_section(
    heading: str, plots: list[P.Plot], empty: str | None, assets: Path, rel: str
) -> list[str]:
    """A section of per-record plots, with ``empty`` (if any) said when there are none."""
    out = [f"## {heading}", ""]
    for p in plots:
        out += _md_plot(p, assets, rel)
    if not plots and empty:
        out += [f"*{empty}*", ""]
    return out


def to_markdown(c: Content, assets: Path, rel: str = ASSETS_DIR) -> str:
    notes = Notes()
    assets.mkdir(parents=True, exist_ok=True)
    m: list[str] = [f"# {c.title}", "", f"_Generated {c.generated}. {_selection_text(c)}_", ""]
    if c.sel.smoke == "all":
        m += [f"> **{SMOKE_BANNER}**", ""]
    elif c.sel.smoke == "some":
        m += ["> **This report shows smoke records next to full ones (marked [smoke]).**", ""]
    warnings = c.sel.warnings + _seed_note(c)
    if warnings:
        m += ["> **Comparability warnings**", ">"] + [f"> - {w}" for w in warnings] + [""]
    if c.sel.notices:
        m += [f"- {n}" for n in c.sel.notices] + [""]

    m += [
        "## Base vs pruned",
        "",
        "Deltas vs the base model of the same family (absolute for quality metrics); ✅ better, ❌ worse. "
        "`n/a [k]`: see note k.",
        "",
    ]
    for g in c.groups:
        header = ["Model"] + [f"{h} ({g.metric_for[k]})" for k, h, _ in A.COLUMNS]
        rows = []
        for row in g.rows:
            tag = " [smoke]" if row.record["smoke"] and c.sel.smoke == "some" else ""
            name = f"**{row.label}**" if A.is_base(row.record) else row.label
            rows.append([name + tag] + [_md_cell(row.cells[k], notes) for k, _, _ in A.COLUMNS])
        m += [f"### {g.model}", "", _md_table(header, rows), ""]
    if not c.groups:
        m += ["*No successful records.*", ""]

    m += [
        "## Sustainability",
        "",
        "Energy and carbon per 1,000 images, the energy the pruning cost (`pruning_energy_j`), and the number "
        "of images after which pruning has paid for itself (pruning energy / energy saved per image).",
        "",
    ]
    if c.sustain:
        header = [
            "Model",
            "Pruned",
            "Energy/image base → pruned",
            "Energy per 1k base → pruned",
            "gCO2e per 1k base → pruned",
            "Saving per 1k",
            "gCO2e saved per 1k",
            "Pruning cost",
            "Pruning gCO2e",
            "Pays back after",
        ]
        rows = []
        for s in c.sustain:
            be = s.breakeven + (f" [{notes.ref('; '.join(s.notes))}]" if s.notes else "")
            rows.append(
                [
                    s.model,
                    s.label,
                    f"{s.base_energy} → {s.pruned_energy}",
                    f"{s.base_kwh_1k} → {s.pruned_kwh_1k}",
                    f"{s.base_co2_1k} → {s.pruned_co2_1k}",
                    s.saving_kwh_1k,
                    s.saving_co2_1k,
                    s.pruning_cost,
                    s.pruning_co2,
                    be,
                ]
            )
        m += [_md_table(header, rows), ""]
    else:
        m += ["*No pruned records with a base to compare: no savings to show.*", ""]

    m += ["## Plots", ""]
    m += _md_plot(c.quality_plot, assets, rel)
    m += _md_plot(c.bars_plot, assets, rel)
    m += _md_plot_section("Kept units per layer", c.heatmaps, NO_HEATMAPS, assets, rel)
    m += _md_plot_section("Power timeline", c.power, None, assets, rel)
    m += _md_plot_section("Mask training curves", c.training, NO_TRAINING, assets, rel)

    m += ["## Samples (identical seeds)", ""]
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
        m += [
            "## Failed records",
            "",
            _md_table(
                ["Model", "Run", "Error"],
                [[A.full_label(r), r["run_id"], r["error"] or ""] for r in c.failed],
            ),
            "",
        ]

    m += ["## Provenance", "", "Rows marked ⚠ differ between or within runs.", ""]
    m += [_md_table(["Key"] + c.prov.runs, [[("⚠ " if d else "") + k] + v for k, v, d in c.prov.rows]), ""]
    if notes.items:
        m += ["## Notes", ""] + [f"{i}. {n}" for i, n in enumerate(notes.items, 1)] + [""]
    return "\n".join(m)


def write(c: Content, out_dir: Path, formats=FORMATS) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "html" in formats:
        paths["html"] = write_text_atomic(out_dir / HTML_NAME, to_html(c))
    if "md" not in formats:
        return paths
    md_path = out_dir / MD_NAME
    assets = out_dir / ASSETS_DIR
    if assets.is_dir():  # the assets folder belongs to the report: drop images of an earlier render
        for old in assets.iterdir():
            if old.is_file() and old.suffix in (".png", ".jpg", ".webp"):
                old.unlink()
    paths["markdown"] = write_text_atomic(md_path, to_markdown(c, assets))
    return paths
