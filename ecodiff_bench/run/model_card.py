"""The measured figures of a pruned model, as rows for its model card (written by ``pruning.write_card``).

The runner calls :func:`write_measured_card` once a pruned model is measured; the card then shows each
figure next to the unpruned model's from the same suite, with its status (measured / estimated /
unavailable and why). Latency's ratio is the paired one, timed interleaved with the base in one window.
"""

from __future__ import annotations

from pathlib import Path

import pruning
from ecodiff_bench.core.record import RunRecord
from ecodiff_bench.core.stats import interval_of

#: metric -> the metric holding its paired pruned/base ratio, if the runner measures one
CARD_METRICS: dict[str, str | None] = {
    "params": None,
    "flops_per_step": None,
    "disk_bytes": None,
    "latency_image_s": "latency_ratio_vs_base",
    "energy_image_j": "energy_ratio_vs_base",
    "gco2e_per_1000_images": "energy_ratio_vs_base",
    "model_peak_bytes": None,
    "cuda_peak_allocated_bytes": None,
    "peak_rss_bytes": None,
    "fid": None,
    "frechet_distance": None,
    "clip_score": None,
    "recognisability": None,
    "ssim_vs_base": None,
    "psnr_vs_base": None,
}


def card_rows(metrics: dict[str, dict], base_metrics: dict[str, dict]) -> list[dict]:
    """Rows for ``pruning.write_card`` from two records' metrics (``Value.to_dict`` shapes)."""
    rows = []
    for name, paired in CARD_METRICS.items():
        m = metrics.get(name)
        if m is None:
            continue
        base = base_metrics.get(name) or {}
        base_value = base.get("value") if base.get("status") != "unavailable" else None
        ratio = metrics.get(paired) if paired else None
        note = m.get("note", "")
        if ratio and ratio["status"] != "unavailable":  # show the base figure of the same paired window
            base_value = ratio.get("details", {}).get(f"base_{name}", base_value)
            note = _interval_note(ratio) or note
        rows.append(
            {
                "name": name,
                "value": m["value"],
                "unit": m["unit"],
                "status": m["status"],
                "note": note,
                "base": base_value,
                "ratio": ratio["value"] if ratio and ratio["status"] != "unavailable" else None,
            }
        )
    return rows


def _interval_note(ratio: dict) -> str:
    """'paired ratio 0.93, 95% interval [0.85, 1.02]: no measurable change' (empty without an interval)."""
    iv = interval_of(ratio.get("details"))
    if iv is None:
        return ""
    verdict = "no measurable change" if iv[0] <= 1.0 <= iv[1] else ("lower" if iv[1] < 1 else "higher")
    conf = 100 * ratio["details"].get("confidence", 0.95)
    return f"paired ratio {ratio['value']:.3g}, {conf:g}% interval [{iv[0]:.3g}, {iv[1]:.3g}]: {verdict}"


def write_measured_card(model_dir: Path, record: RunRecord, base_record: RunRecord | dict | None) -> Path:
    """Rewrite the card of ``model_dir`` with ``record``'s figures against its base record's."""
    rec = record.to_dict()
    base = RunRecord.parse(base_record).to_dict() if base_record else None
    settings = rec["settings"]
    size = f"{settings.get('width', '?')}x{settings.get('height', '?')}"
    details = {
        "suite": rec["suite"] + (" (smoke run: shrunken, not for comparison)" if rec["smoke"] else ""),
        "run": rec["run_id"],
        "device / dtype": f"{settings.get('device')} / {settings.get('dtype')}",
        "sampling": f"{settings.get('steps')} steps, guidance {settings.get('guidance', 0)}, "
        f"{size} px, batch {settings.get('batch_size')}",
        "quality": f"{settings.get('samples')} evaluation images, "
        "the same prompts and seeds as the unpruned model",
        "ratios": "this model / unpruned; latency's and energy's are paired (both timed interleaved in "
        "the same run), with their confidence intervals in the notes",
    }
    base_metrics = base["metrics"] if base and base["status"] == "ok" else {}
    return pruning.write_card(
        model_dir,
        measured=card_rows(rec["metrics"], base_metrics),
        details=details,
        base_name=rec["model"],
    )
