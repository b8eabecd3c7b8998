"""Flat views of run records and files (csv, json, jsonl, parquet), in two layouts:

- wide: one row per record; per metric its value, unit, status, note, and where measured its percentiles
  (p50/p90/p99) and confidence interval; then settings, provenance and artifacts;
- long (tidy): one row per (record, metric) with the same statistics as columns (``status`` is the
  record's, ``value_status`` the value's: measured, estimated or unavailable).

Both carry the energy in AI Energy Score's unit, Wh per 1,000 images (``energy_wh_per_1000_images``,
derived from ``energy_image_j``; GPU-only as ``gpu_energy_wh_per_1000_images``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ecodiff_bench.core.files import atomic_path
from ecodiff_bench.core.record import RECORD_COLUMNS

EXPORT_FORMATS = ("csv", "json", "jsonl", "parquet")
LAYOUTS = ("wide", "long")
#: Statistics a value may carry in its details, exported beside it.
STATS = ("p50", "p90", "p99", "stdev", "ci_low", "ci_high", "confidence")
#: Derived metrics: name -> (source metric, factor): Wh per 1,000 images from J per image.
WH_PER_1000 = {
    "energy_wh_per_1000_images": "energy_image_j",
    "gpu_energy_wh_per_1000_images": "gpu_energy_image_j",
}
_J_TO_WH_PER_1000 = 1000 / 3600


def _derived(metrics: dict) -> dict[str, dict]:
    """Wh per 1,000 images for each available energy per image (its interval scaled alike)."""
    out = {}
    for name, source in WH_PER_1000.items():
        vd = metrics.get(source)
        if not vd or vd["status"] == "unavailable":
            continue
        details = {k: v * _J_TO_WH_PER_1000 for k, v in vd["details"].items() if k in ("ci_low", "ci_high")}
        if "confidence" in vd["details"]:
            details["confidence"] = vd["details"]["confidence"]
        out[name] = {
            **vd,
            "name": name,
            "value": vd["value"] * _J_TO_WH_PER_1000,
            "unit": "Wh/1000 images",
            "note": f"{source} x 1000 / 3600",
            "details": details,
        }
    return out


def _metrics_with_derived(record: dict) -> dict[str, dict]:
    return {**record["metrics"], **_derived(record["metrics"])}


def _stats(vd: dict) -> dict[str, Any]:
    d = vd.get("details") or {}
    return {k: d[k] for k in STATS if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool)}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) -> dotted keys (``gpu.gpus.0.name``); other lists become JSON text."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    elif prefix:
        out[prefix] = json.dumps(obj, sort_keys=True) if isinstance(obj, (list, tuple, dict)) else obj
    return out


def flatten_record(record: dict) -> dict[str, Any]:
    """One flat row: record columns, then ``<metric>``, ``<metric>__unit``, ``<metric>__status``,
    ``<metric>__note`` and (where recorded) ``<metric>__p50`` ... ``<metric>__ci_high`` per metric, then
    ``settings.*``, ``provenance.*`` and ``artifact.*`` columns."""
    row: dict[str, Any] = {k: record[k] for k in RECORD_COLUMNS}
    for name, vd in sorted(_metrics_with_derived(record).items()):
        row[name] = vd["value"]
        row[f"{name}__unit"] = vd["unit"]
        row[f"{name}__status"] = vd["status"]
        row[f"{name}__note"] = vd["note"] or None
        for stat, v in _stats(vd).items():
            row[f"{name}__{stat}"] = v
    for section, prefix in (
        ("settings", "settings"),
        ("provenance", "provenance"),
        ("artifacts", "artifact"),
    ):
        for k, v in flatten(record[section]).items():
            row[f"{prefix}.{k}"] = v
    return row


def long_rows(record: dict) -> list[dict[str, Any]]:
    """The tidy rows of one record: one per metric, its statistics as columns."""
    head = {k: record[k] for k in RECORD_COLUMNS if k != "error"}
    rows = []
    for name, vd in sorted(_metrics_with_derived(record).items()):
        stats = _stats(vd)
        rows.append(
            {
                **head,
                "metric": name,
                "value": vd["value"],
                "unit": vd["unit"],
                "value_status": vd["status"],
                "higher_is_better": vd["higher_is_better"],
                "note": vd["note"] or None,
                **{k: stats.get(k) for k in STATS},
            }
        )
    return rows


def records_frame(records: list[dict], layout: str = "wide"):
    """A pandas DataFrame: one flat row per record (``wide``) or per record and metric (``long``)."""
    import pandas as pd

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "long":
        columns = [k for k in RECORD_COLUMNS if k != "error"]
        columns += ["metric", "value", "unit", "value_status", "higher_is_better", "note", *STATS]
        return pd.DataFrame([row for r in records for row in long_rows(r)], columns=columns)
    rows = [flatten_record(r) for r in records]
    columns: list[str] = list(RECORD_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    frame = pd.DataFrame(rows, columns=columns)
    # Mixed scalar types in one column (e.g. a setting that is 512 in one run and "512x512" in another)
    # cannot go to parquet; keep such columns as text.
    for col in frame.columns:
        kinds = {
            type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        if len(kinds) > 1 and not kinds <= {int, float}:
            frame[col] = [None if v is None else str(v) for v in frame[col]]
    return frame


def export_records(
    records: list[dict], path: str | os.PathLike, fmt: str | None = None, layout: str = "wide"
) -> Path:
    """Write stored records to ``path``: csv/json/parquet hold one flat row per record (``wide``, see
    :func:`flatten_record`) or per record and metric (``long``, see :func:`long_rows`); jsonl the full
    records, one per line. ``fmt`` defaults to the suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    with atomic_path(path) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, sort_keys=True, allow_nan=False) + "\n")
        elif fmt == "json":
            rows = (
                [row for r in records for row in long_rows(r)]
                if layout == "long"
                else [flatten_record(r) for r in records]
            )
            tmp.write_text(json.dumps(rows, indent=1, allow_nan=False), encoding="utf-8")
        elif fmt == "csv":
            records_frame(records, layout).to_csv(tmp, index=False)
        else:
            records_frame(records, layout).to_parquet(tmp, index=False)
    return path
