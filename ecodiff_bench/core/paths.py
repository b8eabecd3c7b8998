"""Paths that users give: checked where they enter, before any work is done.

* :func:`check_writable_dir`: an output folder must be, or be creatable as, a folder we can write to
  (it is created, and a probe file is written and removed);
* :func:`check_writable_file`: an output file's folder likewise, and the file itself no folder;
* :func:`within`: a path built from user-given names stays inside its root (checked on the text, so a
  name with ``..``, a separator or an absolute path is refused even where a link would hide it).

They raise :class:`ValueError` with a message that names the path and what is wrong; the caller adds
the field or option it came from.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _blocker(path: Path) -> Path | None:
    """The nearest existing part of ``path`` (itself or a parent) that is not a folder, if any."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed and prove that files can be written in it."""
    path = Path(path).expanduser()
    blocker = _blocker(path)
    if blocker == path:
        raise ValueError(f"{path} exists and is not a folder")
    if blocker is not None:
        raise ValueError(f"{path} cannot be created: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the folder {path}: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".ecodiff-write-probe-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write in the folder {path}: {e.strerror or e}") from None
    return path


def check_writable_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` can be written as a file: not a folder, its folder writable (created if needed)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{path} exists and cannot be overwritten (no write permission)")
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


def within(root: str | os.PathLike, *parts: str, what: str = "path") -> Path:
    """``root / parts...``, refused unless every part is a plain name (no separator, no ``..``)."""
    root = Path(root)
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise ValueError(f"{what} {part!r} would leave {root}; it must be a plain name")
    out = root.joinpath(*parts)
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(out)]) != os.path.abspath(root):
        raise ValueError(f"{what} {out} would leave {root}")
    return out
