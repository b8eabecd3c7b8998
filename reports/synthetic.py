"""Synthetic run records and artifacts for tests, demos and documentation (no torch, no GPU).

``make_record`` builds one record in the run-record shape (:mod:`ecodiff_bench.core.record`); ``make_artifacts`` writes small PNG/JSON
artifacts of every kind the reports read; ``demo_records`` builds a small base + pruned set;
``release_records`` one release of a series whose values drift a little from release to release.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from pathlib import Path

from ecodiff_bench.core.metrics import METRICS


def value(
    name: str,
    v: float | None,
    *,
    status: str | None = None,
    note: str = "",
    details: dict | None = None,
    unit: str | None = None,
) -> dict:
    """A Value.to_dict()-shaped dict (unit and direction from the metric catalog)."""
    known = METRICS.get(name) if name in METRICS else None
    default_unit, higher_is_better = (known.unit, known.higher_is_better) if known else ("", None)
    if status is None:
        status = "unavailable" if v is None else "measured"
    if status == "unavailable" and not note:
        note = "not measured in this synthetic record"
    return {
        "name": name,
        "value": None if status == "unavailable" else float(v),
        "unit": unit or default_unit,
        "status": status,
        "higher_is_better": higher_is_better,
        "note": note,
        "details": dict(details or {}),
    }


def _interval_details(center: float, relative_half_width: float) -> dict:
    """Interval details of a value known to within +-``relative_half_width`` (the shape
    ecodiff_bench.core.stats writes)."""
    low, high = center * (1 - relative_half_width), center * (1 + relative_half_width)
    return {"ci_low": low, "ci_high": high, "confidence": 0.95, "ci_n": 12}


def _png_bytes(width: int, height: int, rgb_fn) -> bytes:
    """A minimal RGB PNG written with zlib only (keeps this module free of PIL)."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            raw.extend(bytes(rgb_fn(x, y)))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def write_png(path: Path, width: int = 64, height: int = 32, seed: int = 0) -> Path:
    def rgb(x, y):
        return ((x * 4 + seed * 40) % 256, (y * 8) % 256, ((x + y) * 3 + seed * 90) % 256)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(width, height, rgb))
    return path


def make_plan(ratio: float, n_blocks: int = 4, heads: int = 8, ffn: int = 32) -> dict:
    modules = {}
    for b in range(n_blocks):
        keep_frac = max(0.0, min(1.0, 1.0 - ratio * (0.5 + b / max(1, n_blocks - 1))))
        n_heads = round(heads * keep_frac)
        n_ffn = round(ffn * keep_frac)
        modules[f"blocks.{b}.attn1"] = {"kind": "heads", "total": heads, "kept": list(range(n_heads))}
        modules[f"blocks.{b}.ff"] = {"kind": "ffn", "total": ffn, "kept": list(range(0, ffn))[:n_ffn]}
    # the shape of pruning.plans.PruningPlan.to_dict() (only the keys the reports read, plus a few)
    for spec in modules.values():
        spec.update(params_per_unit=64, params_shared=8)
    return {
        "version": 1,
        "method": "ecodiff",
        "ratio": ratio,
        "target": "params",
        "ranking": "global",
        "achieved": {"params_removed_frac_of_prunable": ratio * 0.98, "units_removed_frac": ratio},
        "modules": modules,
    }


def make_artifacts(out_dir: Path, label: str, *, ratio: float, seed: int = 0, pruned: bool = True) -> dict:
    """Write artifact files for one record under ``out_dir/label`` (a pruned one also gets a plan and a
    training curve); returns the ``artifacts`` dict."""
    folder = Path(out_dir) / label
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {"samples": str(write_png(folder / "samples.png", seed=seed + int(ratio * 10)))}
    watts = 250.0 * (1.0 - 0.4 * ratio)
    timeline = [[round(i * 0.1, 3), round(watts + 20 * ((i % 7) - 3) / 3, 2)] for i in range(40)]
    (folder / "power.json").write_text(json.dumps(timeline))
    artifacts["power_timeline"] = str(folder / "power.json")
    if not pruned:
        return artifacts
    (folder / "plan.json").write_text(json.dumps(make_plan(ratio)))
    artifacts["plan"] = str(folder / "plan.json")
    curve = [
        {
            "step": step,
            "loss": 1.0 / (1 + step) + ratio,
            "mse": 0.5 / (1 + step),
            "sparsity": min(ratio, ratio * step / 20),
        }
        for step in range(0, 40, 2)
    ]
    (folder / "curve.json").write_text(json.dumps(curve))
    artifacts["training_curve"] = str(folder / "curve.json")
    return artifacts


def scaling_metrics(method: str, ratio: float, fid_samples: int = 1000) -> dict:
    """The metrics of a synthetic record, following simple scaling laws in ``ratio``: resources shrink,
    quality degrades; a pruned record also gets its paired ratios to the base and its pruning cost."""
    scaled = {
        "params": 2.6e9 * (1 - 0.8 * ratio),
        "flops_per_step": 6.0e12 * (1 - 0.75 * ratio),
        "latency_image_s": 3.0 * (1 - 0.6 * ratio),
        "cuda_peak_allocated_bytes": 9.0e9 * (1 - 0.5 * ratio),
        "energy_image_j": 900.0 * (1 - 0.55 * ratio),
        "gco2e_per_1000_images": 90.0 * (1 - 0.55 * ratio),
        "fid": 20.0 + 30 * ratio**2,
        "frechet_distance": 5.0 + 8 * ratio,
        "clip_score": 31.0 - 4 * ratio,
        "ssim_vs_base": 1.0 - 0.9 * ratio if ratio else 1.0,
    }
    metrics = {name: value(name, v) for name, v in scaled.items()}
    metrics["fid"]["details"] = {"n_samples": fid_samples}
    latency = scaled["latency_image_s"]
    metrics["latency_image_s"]["details"] = {
        "p50": latency,
        "p90": latency * 1.02,
        "p99": latency * 1.04,
        "stdev": 0.05,
        "n": 10,
        **_interval_details(latency, 0.02),
    }
    metrics["energy_image_j"]["details"] = {**_interval_details(scaled["energy_image_j"], 0.03)}
    if method != "base":
        ratios = {"latency_ratio_vs_base": 1 - 0.6 * ratio, "energy_ratio_vs_base": 1 - 0.55 * ratio}
        for name, paired in ratios.items():
            metrics[name] = value(name, paired, details={**_interval_details(paired, 0.03), "rounds": 12})
        kept = 1.0 - ratio
        metrics["pruning_energy_j"] = value("pruning_energy_j", 2.0e5 * (0.5 + kept))
        metrics["pruning_time_s"] = value("pruning_time_s", 600.0)
    return metrics


def _provenance(device: str) -> dict:
    """The shape of ecodiff_bench.run.provenance.collect_provenance(), on one GPU named ``device``."""
    return {
        "git": {"commit": "0123abcd", "dirty": False},
        "python": "3.11",
        "cpu": "Test CPU",
        "packages": {"torch": "2.4", "diffusers": "0.30"},
        "torch": {"cuda_available": True, "cuda_devices": [device]},
        "gpu": {
            "status": "ok",
            "driver": "550.00",
            "gpus": [{"index": 0, "name": device, "power_limit_w": 700.0}],
        },
    }


def make_record(
    model: str = "digits-sdxl",
    method: str = "base",
    ratio: float = 0.0,
    *,
    run_id: str = "run-1",
    suite: str = "digits",
    seed: int = 0,
    smoke: bool = False,
    status: str = "ok",
    metrics: dict | None = None,
    artifacts: dict | None = None,
    device: str = "Test GPU",
    created_at: str = "2025-01-01T00:00:00+00:00",
    settings: dict | None = None,
    overrides: dict | None = None,
    fid_samples: int = 1000,
) -> dict:
    """One synthetic record; metrics follow simple scaling laws in ``ratio`` unless given."""
    spec = f"{suite}|{model}|{method}|{ratio}|{seed}|{smoke}"
    record = {
        "record_id": hashlib.sha256(spec.encode()).hexdigest()[:16],
        "run_id": run_id,
        "suite": suite,
        "suite_hash": "abc123",
        "created_at": created_at,
        "model": model,
        "family": "sdxl",
        "method": method,
        "ratio": float(ratio),
        "seed": seed,
        "smoke": smoke,
        "status": status,
        "error": None if status == "ok" else "synthetic failure: CUDA out of memory",
        "metrics": scaling_metrics(method, ratio, fid_samples) if metrics is None else metrics,
        "provenance": _provenance(device),
        "settings": {
            "steps": 20,
            "guidance": 5.0,
            "height": 512,
            "width": 512,
            "resolution": 512,
            "samples": fid_samples,
            **(settings or {}),
        },
        "artifacts": dict(artifacts or {}),
    }
    record.update(overrides or {})
    return record


def demo_records(
    artifact_dir: Path | None = None,
    *,
    run_id: str = "run-1",
    smoke: bool = False,
    models: tuple[str, ...] = ("digits-sdxl",),
    methods: tuple[str, ...] = ("ecodiff", "magnitude"),
    ratios: tuple[float, ...] = (0.2, 0.4),
) -> list[dict]:
    """A base and pruned records per model; with ``artifact_dir``, each record gets artifact files."""
    out = []
    for model in models:
        specs = [("base", 0.0)] + [(m, r) for m in methods for r in ratios]
        for i, (method, ratio) in enumerate(specs):
            arts = None
            if artifact_dir is not None:
                arts = make_artifacts(
                    Path(artifact_dir), f"{model}-{method}-{ratio}", ratio=ratio, pruned=method != "base"
                )
            out.append(
                make_record(
                    model,
                    method,
                    ratio,
                    run_id=run_id,
                    smoke=smoke,
                    artifacts=arts,
                    created_at=f"2025-01-01T00:00:{i:02d}+00:00",
                )
            )
    return out


#: The metrics that drift between synthetic releases (by up to +-2 %: inside the digits suite's thresholds).
DRIFTING = (
    "frechet_distance",
    "recognisability",
    "clip_score",
    "latency_ratio_vs_base",
    "energy_ratio_vs_base",
)


def scale_metric(stored: dict, factor: float) -> None:
    """Multiply a stored value and its interval by ``factor``."""
    stored["value"] *= factor
    for bound in ("ci_low", "ci_high"):
        if bound in stored["details"]:
            stored["details"][bound] *= factor


def release_records(
    run_id: str,
    *,
    index: int = 0,
    thresholds: dict | None = None,
    changes: dict | None = None,
    suite: str = "digits",
    models: tuple[str, ...] = ("digits-sdxl", "digits-flux"),
    methods: tuple[str, ...] = ("ecodiff", "magnitude"),
    ratios: tuple[float, ...] = (0.2, 0.4),
) -> list[dict]:
    """The records of run ``run_id``, the ``index``-th release of a series: :func:`make_record`'s values
    (plus recognisability) drifting by up to +-2 % (seeded by ``index``), then ``changes``
    ``{(model, method, ratio): {metric: factor}}`` planted on top. ``thresholds`` go into provenance, as
    the runner records the suite's ``regression.thresholds``."""
    rng = random.Random(index)
    out = []
    for model in models:
        specs = [("base", 0.0)] + [(m, r) for m in methods for r in ratios]
        for i, (method, ratio) in enumerate(specs):
            rec = make_record(
                model,
                method,
                ratio,
                run_id=run_id,
                suite=suite,
                created_at=f"2025-02-{index + 1:02d}T00:00:{i:02d}+00:00",
            )
            rec["record_id"] += f"-{run_id}"
            rec["metrics"]["recognisability"] = value("recognisability", 0.98 - 0.25 * ratio**2)
            for name in DRIFTING:
                if name in rec["metrics"]:
                    scale_metric(rec["metrics"][name], 1 + rng.uniform(-0.02, 0.02))
            for name, factor in (changes or {}).get((model, method, ratio), {}).items():
                scale_metric(rec["metrics"][name], factor)
            rec["provenance"]["git"]["commit"] = hashlib.sha1(run_id.encode()).hexdigest()
            if thresholds is not None:
                rec["provenance"]["thresholds"] = thresholds
            out.append(rec)
    return out
