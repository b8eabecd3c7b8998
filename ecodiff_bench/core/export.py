"""Flat views of run records: dotted keys, one row per record, and files (csv, json, jsonl, parquet)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ecodiff_bench.core.files import atomic_path
from ecodiff_bench.core.record import RECORD_COLUMNS

EXPORT_FORMATS = ("csv", "json", "jsonl", "parquet")


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
    ``<metric>__note`` per metric, then ``settings.*``, ``provenance.*`` and ``artifact.*`` columns."""
    row: dict[str, Any] = {k: record[k] for k in RECORD_COLUMNS}
    for name, vd in sorted(record["metrics"].items()):
        row[name] = vd["value"]
        row[f"{name}__unit"] = vd["unit"]
        row[f"{name}__status"] = vd["status"]
        row[f"{name}__note"] = vd["note"] or None
    for section, prefix in (
        ("settings", "settings"),
        ("provenance", "provenance"),
        ("artifacts", "artifact"),
    ):
        for k, v in flatten(record[section]).items():
            row[f"{prefix}.{k}"] = v
    return row


def records_frame(records: list[dict]):
    """A pandas DataFrame with one flat row per record (imports pandas lazily)."""
    import pandas as pd

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


def export_records(records: list[dict], path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write stored records to ``path``: csv/json/parquet hold one flat row per record (see
    :func:`flatten_record`), jsonl the full records, one per line. ``fmt`` defaults to the suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    with atomic_path(path) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, sort_keys=True, allow_nan=False) + "\n")
        elif fmt == "json":
            rows = [flatten_record(r) for r in records]
            tmp.write_text(json.dumps(rows, indent=1, allow_nan=False), encoding="utf-8")
        elif fmt == "csv":
            records_frame(records).to_csv(tmp, index=False)
        else:
            records_frame(records).to_parquet(tmp, index=False)
    return path
