"""Integrity of saved pruned models: sha256 of every weight file, and metadata paths that stay inside.

A saved model records the sha256 of each weight file it wrote; loading recomputes them and refuses a file
that changed, one that is missing, and a weight file nobody recorded (a directory altered after saving).
This guards against corruption and accidental edits (flipped bits, a truncated copy, a stale shard); it is
not a signature, since whoever can change a weight file can change its recorded hash too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

WEIGHT_SUFFIX = ".safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_memo: dict[
    tuple[str, int, int], str
] = {}  # (path, size, mtime_ns) -> digest; a file is hashed once per process


class IntegrityError(ValueError):
    """A saved model's files do not match what was recorded when it was saved."""


def sha256_file(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def weight_files(root: Path, *, recursive: bool) -> list[Path]:
    pattern = f"**/*{WEIGHT_SUFFIX}" if recursive else f"*{WEIGHT_SUFFIX}"
    return sorted(p for p in root.glob(pattern) if p.is_file())


def record_hashes(root: Path, files: list[Path]) -> dict[str, str]:
    """``{path relative to root (posix): sha256}`` for ``files``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def inside(root: Path, value: object, *, field: str, source: Path) -> Path:
    """``root / value`` for a metadata path that is relative and stays inside ``root``; else a clear error.

    Checked on the text, not on resolved links: the Hugging Face cache keeps files as links into a blob
    folder outside the snapshot, and those are legitimate.
    """
    text = value if isinstance(value, str) else None
    parts = PurePosixPath(text).parts if text else ()
    if not parts or "\\" in text or text.startswith(("/", "~")) or ":" in parts[0] or ".." in parts:
        raise IntegrityError(
            f"{source}: {field} = {value!r} is not a path inside the model directory {root} "
            "(metadata paths must be relative, without '..')"
        )
    return root.joinpath(*parts)


def verify_hashes(root: Path, recorded: object, present: list[Path], *, source: Path) -> None:
    """Refuse ``root`` unless every recorded file exists with its hash and every file in ``present`` is recorded."""
    if not isinstance(recorded, dict) or not recorded:
        raise IntegrityError(f"{source}: no sha256 recorded for the weight files; re-save the model")
    for name, expected in recorded.items():
        path = inside(root, name, field=f"sha256 entry {name!r}", source=source)
        if not path.is_file():
            raise IntegrityError(f"{path}: weight file is missing (recorded in {source})")
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{path}: sha256 mismatch (recorded {str(expected)[:16]}..., the file has {actual[:16]}...): the "
                "file changed after it was saved; restore it or re-save the model"
            )
    known = {inside(root, name, field="sha256 entry", source=source) for name in recorded}
    stray = [p for p in present if p not in known]
    if stray:
        raise IntegrityError(
            f"{stray[0]}: weight file not recorded in {source} (the directory changed after saving); remove it "
            "or re-save the model"
        )


def is_hub_id(reference: str) -> bool:
    """``org/name`` that does not exist as a local path (a local ``results/model`` is not a hub id)."""
    return bool(_HUB_ID.match(reference)) and not Path(reference).expanduser().exists()
