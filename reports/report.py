"""Writing a report's files: ``report.html`` (self-contained, :mod:`reports.html`) and ``report.md`` with
its images in an assets folder (:mod:`reports.markdown`), both from one :class:`reports.content.Content`."""

from __future__ import annotations

from pathlib import Path

from ecodiff_bench.core.files import write_text_atomic
from reports.content import Content
from reports.html import to_html
from reports.markdown import ASSETS_DIR, to_markdown

HTML_NAME = "report.html"
MD_NAME = "report.md"
FORMATS = ("html", "md")
#: Image files in the assets folder, which belongs to the report: an earlier render's are dropped.
ASSET_SUFFIXES = (".png", ".jpg", ".webp")


def write(content: Content, out_dir: Path, formats=FORMATS) -> dict[str, Path]:
    """Write ``content`` in each of ``formats`` into ``out_dir``; returns ``{"html"|"markdown": path}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "html" in formats:
        paths["html"] = write_text_atomic(out_dir / HTML_NAME, to_html(content))
    if "md" not in formats:
        return paths
    assets = out_dir / ASSETS_DIR
    if assets.is_dir():
        for old in assets.iterdir():
            if old.is_file() and old.suffix in ASSET_SUFFIXES:
                old.unlink()
    paths["markdown"] = write_text_atomic(out_dir / MD_NAME, to_markdown(content, assets))
    return paths
