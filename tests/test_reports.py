"""HTML and Markdown reports from synthetic records and artifacts (no torch)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import reports
from ecodiff_bench.core.stats import change_sign
from ecodiff_bench.core.store import Store
from reports import analysis, cells, records
from reports.summary import summaries
from reports.sustainability import sustainability
from reports.synthetic import demo_records, make_record, value

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (
    "summary",
    "results",
    "sustainability",
    "plots",
    "kept-units",
    "power",
    "training",
    "samples",
    "provenance",
)


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', html)


@pytest.fixture
def demo_store(tmp_path):
    recs = demo_records(tmp_path / "artifacts")
    recs[2]["metrics"]["fid"] = value("fid", None, note="Inception weights not downloaded")
    recs[3]["metrics"]["energy_image_j"].update(status="estimated", note="from TDP x time")
    s = Store(tmp_path / "store.sqlite")
    s.put_many(recs)
    s.close()
    return tmp_path / "store.sqlite"


def test_render_writes_html_and_markdown_with_all_sections(demo_store, tmp_path):
    out = reports.render(demo_store, tmp_path / "report")
    html = out["html"].read_text()
    md = out["markdown"].read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    for heading in (
        "## Summary",
        "## Base vs pruned",
        "## Sustainability",
        "## Plots",
        "## Kept units per layer",
        "## Power timeline",
        "## Mask training curves",
        "## Samples",
        "## Provenance",
    ):
        assert heading in md, heading
    srcs = _imgs(html)
    # paired ratios, quality/energy, heatmap, power, training + 5 sample grids
    assert len(srcs) == 10
    assert all(s.startswith("data:image/png;base64,") for s in srcs)  # self-contained
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 10
    for link in links:
        assert link.startswith("assets/")
        assert (out["markdown"].parent / link).stat().st_size > 100
    assert "Pareto front" in html
    prov = html[html.index('id="provenance"') :]
    for key, val in (
        ("device", "Test GPU"),
        ("git commit", "0123abcd"),
        ("smoke", "False"),
        ("provenance.packages.torch", "2.4"),
    ):
        assert re.search(rf"<td class='l'>{re.escape(key)}</td><td class='l'>{re.escape(val)}</td>", prov), (
            key
        )
    assert "ecodiff @20%" in html and "digits-sdxl" in md


def test_unavailable_is_na_with_reason_and_estimated_is_labelled(demo_store, tmp_path):
    out = reports.render(demo_store, tmp_path / "r")
    html, md = out["html"].read_text(), out["markdown"].read_text()
    assert 'title="Inception weights not downloaded">n/a' in html
    assert "Inception weights not downloaded" in md
    assert re.search(r"\| n/a \[\d+\] \|", md)
    assert "(est.)" in html and "from TDP x time" in html and "(est.)" in md


def test_deltas_carry_direction_and_verdict():
    recs = demo_records()
    groups = cells.build_groups(recs)
    row = next(r for r in groups[0].rows if r.label == "ecodiff @40%")
    lat = row.cells["latency"]  # from the paired ratio 0.76, interval +-3 %
    assert lat.arrow == "↓" and lat.verdict == "good" and lat.delta == "-24.0 % [-26.3, -21.7]"
    assert "interleaved pairs" in lat.title
    fid = row.cells["fid"]
    assert fid.arrow == "↑" and fid.verdict == "bad" and fid.delta.startswith("+")
    clip = row.cells["clip"]
    assert clip.arrow == "↓" and clip.verdict == "bad"
    base_row = groups[0].rows[0]
    assert base_row.label == "base" and base_row.cells["latency"].delta == ""


def test_a_change_inside_its_interval_is_no_measurable_change():
    base, pruned = make_record("m", "base", 0.0), make_record("m", "ecodiff", 0.2)
    pruned["metrics"]["latency_ratio_vs_base"] = value(
        "latency_ratio_vs_base",
        0.93,
        details={"ci_low": 0.85, "ci_high": 1.02, "confidence": 0.95, "ci_n": 9},
    )
    del pruned["metrics"]["energy_ratio_vs_base"]  # an older record: no paired energy ratio
    row = cells.build_groups([base, pruned])[0].rows[1]
    assert row.cells["latency"].delta == "no measurable change" and row.cells["latency"].verdict == "neutral"
    energy = row.cells["energy"]
    assert energy.delta.endswith("(unpaired)") and energy.verdict == "neutral"
    summary = summaries(cells.build_groups([base, pruned]))[0]
    lab, by_key = summary.rows[0]
    assert by_key["latency_ratio_vs_base"].text == "0.93× [0.85, 1.02]"
    assert by_key["latency_ratio_vs_base"].delta == "no measurable change"
    assert by_key["energy_ratio_vs_base"].text == "n/a"


@pytest.mark.parametrize(
    "interval, no_change, sign",
    [
        ((0.85, 1.02), 1.0, 0),  # a ratio whose interval contains 1: no measurable change
        ((0.90, 1.00), 1.0, 0),  # an end on 1 does not exclude it
        ((0.70, 0.99), 1.0, -1),
        ((1.01, 1.20), 1.0, 1),
        ((-0.3, 0.2), 0.0, 0),  # a difference: its interval against 0
        ((-0.4, -0.1), 0.0, -1),
        ((0.1, 0.4), 0.0, 1),
        (None, 1.0, None),  # no interval: no claim either way
    ],
)
def test_change_sign_tells_whether_an_interval_excludes_no_change(interval, no_change, sign):
    assert change_sign(interval, no_change) == sign


@pytest.mark.parametrize("high, measurable", [(1.0, False), (0.999, True)])
def test_every_part_of_the_report_reads_a_paired_interval_the_same_way(high, measurable):
    """The detail cell, the summary cell and the sustainability row agree on an interval ending at 1."""
    base, pruned = make_record("m", "base", 0.0), make_record("m", "ecodiff", 0.2)
    pruned["metrics"]["energy_ratio_vs_base"] = value(
        "energy_ratio_vs_base", 0.95, details={"ci_low": 0.9, "ci_high": high, "confidence": 0.95, "ci_n": 9}
    )
    groups = cells.build_groups([base, pruned])
    detail = groups[0].rows[1].cells["energy"]
    (_, summary_cells), *_ = summaries(groups)[0].rows
    (row,) = sustainability(groups)
    assert (detail.delta == "no measurable change") is not measurable
    assert (summary_cells["energy_ratio_vs_base"].delta == "no measurable change") is not measurable
    assert (row.saving_kwh_1k == "no measurable saving") is not measurable
    if measurable:
        assert detail.verdict == summary_cells["energy_ratio_vs_base"].verdict == "good"
        assert summary_cells["energy_ratio_vs_base"].delta == "less energy" and row.breakeven.endswith(
            "images"
        )


def test_columns_only_for_metrics_the_records_hold(tmp_path):
    recs = demo_records()
    for r in recs:
        del r["metrics"]["fid"]
    group = cells.build_groups(recs)[0]
    assert "fid" not in [c.key for c in group.columns] and "frechet" in [c.key for c in group.columns]
    html = reports.render(recs, tmp_path / "r")["html"].read_text()
    assert ">FID<" not in html and "Fréchet dist." in html
    assert "No power timeline in any of the 5 records" in html  # one line, not one per record


def test_notes_differing_only_in_figures_collapse():
    from reports.content import VARIES, Notes

    notes = Notes()
    a = notes.ref("estimate: TDP 8 W x 0.52 s of CPU time")
    b = notes.ref("estimate: TDP 8 W x 0.61 s of CPU time")
    c = notes.ref("no NVML")
    assert a == b == 1 and c == 2 and notes.items[0].endswith(VARIES) and len(notes.items) == 2


def test_training_curves_read_both_logged_shapes():
    from reports.artifact_plots import read_curve

    new = read_curve(
        [
            {"step": 0, "nmse": 0.5, "expected_sparsity": 0.05, "target": 0.04},
            {"step": 1, "nmse": 0.3, "expected_sparsity": 0.1, "target": 0.08},
        ]
    )
    assert new.mse == [0.5, 0.3] and new.mse_name == "normalized MSE" and new.target == [0.04, 0.08]
    assert new.removed == [0.05, 0.1] and new.loss is None
    old = read_curve([{"step": 0, "loss": 1.0, "mse": 0.5, "sparsity": 0.99}])
    assert old.removed == [pytest.approx(0.01)] and "open-gate" in old.removed_name and old.target is None
    with pytest.raises(ValueError, match="step"):
        read_curve([{"loss": 1.0}])


def test_sample_grids_are_upscaled_nearest_neighbour(tmp_path):
    from PIL import Image

    from reports.artifact_plots import SAMPLE_MIN_WIDTH, upscale
    from reports.synthetic import write_png

    png, w, h = upscale(write_png(tmp_path / "g.png", width=171, height=35).read_bytes())
    assert (w, h) == (171 * 4, 35 * 4) and w >= SAMPLE_MIN_WIDTH
    with Image.open(tmp_path / "g.png") as small, Image.open(__import__("io").BytesIO(png)) as big:
        assert big.getpixel((4 * 10 + 3, 4 * 7 + 2)) == small.convert("RGB").getpixel((10, 7))  # sharp pixels


def test_unavailable_value_is_never_rendered_as_zero():
    rec = make_record("m", "base", 0.0)
    rec["metrics"]["energy_image_j"] = value("energy_image_j", None, note="no NVML on this machine")
    cell = cells.make_cell(rec, "energy_image_j", None)
    assert cell.text == "n/a" and cell.note == "no NVML on this machine" and cell.value is None
    cell = cells.make_cell(rec, "not_a_metric", None)
    assert cell.text == "n/a" and "not recorded" in cell.note


def test_sustainability_breakeven_and_never():
    base = make_record("m", "base", 0.0)
    good = make_record("m", "ecodiff", 0.4)
    worse = make_record("m", "random", 0.2)
    worse["metrics"]["energy_image_j"]["value"] = 950.0
    worse["metrics"]["energy_ratio_vs_base"] = value(
        "energy_ratio_vs_base", 950 / 900, details={"ci_low": 1.03, "ci_high": 1.08}
    )
    noise = make_record("m", "taylor", 0.2)
    noise["metrics"]["energy_ratio_vs_base"] = value(
        "energy_ratio_vs_base", 0.97, details={"ci_low": 0.9, "ci_high": 1.04}
    )
    nocost = make_record("m", "magnitude", 0.2)
    nocost["metrics"]["pruning_energy_j"] = value("pruning_energy_j", None, note="pruned on CPU, no meter")
    groups = cells.build_groups([base, good, worse, nocost, noise])
    rows = {s.label: s for s in sustainability(groups)}
    e_b = base["metrics"]["energy_image_j"]["value"]
    e_p = good["metrics"]["energy_image_j"]["value"]
    cost = good["metrics"]["pruning_energy_j"]["value"]
    expected = -(-cost // (e_b - e_p))
    assert rows["ecodiff @40%"].breakeven == f"{int(expected):,} images"
    assert rows["random @20%"].breakeven.startswith("never")
    assert rows["magnitude @20%"].breakeven == "n/a"
    assert "pruned on CPU, no meter" in rows["magnitude @20%"].notes[0]
    assert rows["taylor @20%"].saving_kwh_1k == "no measurable saving"
    assert (
        rows["taylor @20%"].breakeven == "n/a"
        and "no measurable energy saving" in rows["taylor @20%"].notes[0]
    )


def test_missing_and_broken_artifacts_are_reported_not_fatal(tmp_path):
    recs = demo_records()  # no artifacts at all
    plan = tmp_path / "bad_plan.json"
    plan.write_text("{not json")
    recs[1]["artifacts"] = {
        "plan": str(plan),
        "power_timeline": str(tmp_path / "gone.json"),
        "samples": str(plan),
        "training_curve": str(plan),
    }
    out = reports.render(recs, tmp_path / "r")
    html = out["html"].read_text()
    md = out["markdown"].read_text()
    assert "no &#x27;plan&#x27; artifact recorded" in html
    assert "could not read" in html and "gone.json" in html
    assert "is not a PNG/JPEG/WebP image" in html
    assert "samples not available" in md
    assert "Plot not available" in html
    assert len(_imgs(html)) == 2  # only the two plots made from metrics


def test_smoke_runs_are_flagged_and_never_mixed_silently(tmp_path):
    full = demo_records(run_id="full-run")
    smoke = demo_records(run_id="smoke-run", smoke=True, methods=("random",), ratios=(0.5,))
    s = Store(tmp_path / "s.sqlite")
    s.put_many(full + smoke)
    s.close()
    # default: full records only, with a notice that smoke ones were left out
    html = reports.render(tmp_path / "s.sqlite", tmp_path / "a")["html"].read_text()
    assert "SMOKE RUN" not in html and "smoke record(s) left out" in html
    # a smoke run selected explicitly: banner
    html = reports.render(tmp_path / "s.sqlite", tmp_path / "b", run_id="smoke-run")["html"].read_text()
    assert "SMOKE RUN" in html
    # both on request: a comparability warning
    out = reports.render(tmp_path / "s.sqlite", tmp_path / "c", include_smoke=True)
    assert "Smoke and full records are mixed" in out["html"].read_text()
    assert "Smoke and full records are mixed" in out["markdown"].read_text()


def test_incomparable_devices_and_sample_counts_warn(tmp_path):
    base = make_record("m", "base", 0.0, device="NVIDIA H100", fid_samples=5000)
    pruned = make_record("m", "ecodiff", 0.3, device="NVIDIA A10", fid_samples=500, settings={"steps": 10})
    html = reports.render([base, pruned], tmp_path / "r")["html"].read_text()
    assert "different devices" in html and "NVIDIA A10" in html
    assert "fid was computed from different sample counts" in html
    assert "setting &#x27;steps&#x27; differs" in html


def test_failed_records_and_missing_base(tmp_path):
    ok = make_record("m", "ecodiff", 0.3)
    bad = make_record("m", "taylor", 0.3, status="failed")
    html = reports.render([ok, bad], tmp_path / "r")["html"].read_text()
    assert 'id="failed"' in html and "CUDA out of memory" in html
    assert "no base (unpruned) record" in html


def test_no_match_raises(demo_store, tmp_path):
    with pytest.raises(ValueError, match="no records match run_id=nope"):
        reports.render(demo_store, tmp_path / "r", run_id="nope")


def test_plan_heatmap_reads_kept_over_total(tmp_path):
    plan = {
        "ratio": 0.5,
        "target": "params",
        "achieved": {"params_removed_frac_of_prunable": 0.48},
        "modules": {
            "down.0.attn": {"kind": "heads", "total": 4, "kept": [0, 1]},
            "down.0.ff": {"kind": "ffn", "total": 10, "kept": list(range(10))},
        },
    }
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan))
    recs = [make_record("m", "base", 0.0), make_record("m", "ecodiff", 0.5, artifacts={"plan": "plan.json"})]
    from reports import artifact_plots as plots

    out = plots.kept_units_heatmaps(cells.build_groups(recs), [tmp_path])
    assert len(out) == 1 and out[0].png and out[0].png.startswith(b"\x89PNG") and not out[0].messages
    assert "target 50% of params, achieved 48%" in out[0].caption
    assert plots.plan_summary({"target": 0.3, "achieved": 0.25}) == "target 30% of params, achieved 25%"


def test_pareto_plot_places_pruned_models_by_their_paired_energy_ratio():
    """Separately measured energies differ by noise: a pruned point sits at base energy x paired ratio."""
    from reports import plots

    base = make_record("m", "base", 0.0)
    pruned = make_record("m", "magnitude", 0.4)
    pruned["metrics"]["energy_image_j"]["value"] = 5000.0  # a noisy separate measurement, not plotted
    (group,) = cells.build_groups([base, pruned])
    points = {r["method"]: (x, iv) for r, x, iv, _ in plots._energy_points(group, "frechet_distance")}
    base_j, ratio = base["metrics"]["energy_image_j"]["value"], 1 - 0.55 * 0.4
    assert points["base"][0] == base_j
    assert points["magnitude"][0] == pytest.approx(base_j * ratio)
    lo, hi = points["magnitude"][1]
    assert lo < base_j * ratio < hi and hi < base_j  # the ratio's own interval, scaled
    del pruned["metrics"]["energy_ratio_vs_base"]  # without a paired ratio: the energy as measured
    (group,) = cells.build_groups([base, pruned])
    assert {r["method"]: x for r, x, _, _ in plots._energy_points(group, "frechet_distance")}[
        "magnitude"
    ] == 5000.0


def test_pareto_front():
    pts = [(1.0, 10.0), (2.0, 8.0), (3.0, 9.0), (4.0, 7.0), (2.0, 12.0)]
    assert analysis.pareto_front(pts, higher_is_better=False) == [0, 1, 3]
    assert analysis.pareto_front(pts, higher_is_better=True) == [0, 4]


def test_reports_and_store_do_not_import_torch():
    code = (
        "import reports, reports.gate, reports.plots, reports.report, ecodiff_bench.core.store, "
        "ecodiff_bench.cli.results; import sys; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    "prov, settings, expected",
    [
        ({"device_name": "NVIDIA H100"}, {}, "NVIDIA H100"),
        ({"gpu": {"status": "ok", "gpus": [{"name": "A"}, {"name": "B"}]}}, {"device": "cuda:1"}, "B"),
        ({"torch": {"cuda_devices": ["H200"]}, "gpu": {"status": "ok", "gpus": [{"name": "X"}]}}, {}, "H200"),
        ({"torch": {"cuda_devices": ["H200"]}, "cpu": "AMD EPYC"}, {"device": "cpu"}, "CPU: AMD EPYC"),
        ({"gpu": {"status": "unavailable", "reason": "no NVML"}, "cpu": "Intel Xeon"}, {}, "CPU: Intel Xeon"),
        ({}, {}, "unknown device"),
    ],
)
def test_device_of_reads_the_provenance_shape(prov, settings, expected):
    rec = make_record("m", "base", 0.0)
    rec["provenance"], rec["settings"] = prov, settings
    assert records.device_of(rec) == expected


def test_pruned_rows_compare_with_the_base_of_the_same_kind_of_run():
    full_base = make_record("m", "base", 0.0, run_id="full")
    smoke_base = make_record(
        "m", "base", 0.0, run_id="smk", smoke=True, created_at="2025-02-01T00:00:00+00:00"
    )
    smoke_base["record_id"] += "s"
    full_pruned = make_record("m", "ecodiff", 0.2, run_id="full2")
    smoke_pruned = make_record("m", "random", 0.5, run_id="smk", smoke=True)
    rows = {
        r.label: r for r in cells.build_groups([full_base, smoke_base, full_pruned, smoke_pruned])[0].rows
    }
    assert rows["ecodiff @20%"].base is full_base
    assert rows["random @50%"].base is smoke_base
