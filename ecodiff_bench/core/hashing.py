"""Content hashes and their short forms: one place for how many hex digits name what.

A record id, a score key, a plan key and a recovery key are sha256 digests of canonical JSON
(:func:`sha256_of`). Folders and tables use a prefix of them; the lengths are fixed here because
changing one orphans everything already written under the old names (a rerun would no longer find its
cached scores, base images or artifacts).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: A record id in tables and messages (``RunSpec.short``, ``history --records``).
SHOWN_DIGITS = 12
#: A pruned model's folder, after its model, method and ratio: ``digits-sdxl-taylor-20-1a2b3c4d``.
MODEL_DIGITS = 8
#: A record's own folders: its artifacts, and the cached evaluation images of a base model.
RECORD_DIGITS = 16
#: Caches shared by several records: method scores (per score key) and recoveries (per recovery key).
CACHE_DIGITS = 24


def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no whitespace: equal content, equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_of(obj: Any) -> str:
    """sha256 (hex) of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def short(digest: str, digits: int = SHOWN_DIGITS) -> str:
    """The first ``digits`` hex digits of ``digest``."""
    return digest[:digits]
