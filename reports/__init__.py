"""Reports and the regression gate. Reads stored run records only; never imports torch.

``render(store_or_records, out_dir)`` writes ``report.html`` (self-contained) and ``report.md`` (with an
``assets/`` folder) and returns their paths. ``reports.gate`` compares releases; ``reports.releases`` is
the history of a store's tagged releases, each gated against the one before it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["render", "select_records"]


def select_records(
    source,
    *,
    suite: str | None = None,
    run_id: str | None = None,
    tag: str | None = None,
    include_smoke: bool | None = None,
):
    """Resolve ``source`` (a store path, a :class:`~ecodiff_bench.core.store.Store` or a list of record dicts) into
    a :class:`reports.analysis.Selection` plus the folders used to resolve relative artifact paths."""
    from ecodiff_bench.core.errors import StoreError
    from ecodiff_bench.core.record import normalize_record
    from reports import analysis

    roots: list[Path] = []
    if _is_store(source):
        with _opened(source) as store:
            records = store.records(suite=suite, run_id=run_id, tag=tag, include_smoke=True)
            roots.append(store.path.resolve().parent)
    else:
        records = [normalize_record(r) for r in source]
        if tag is not None:
            raise StoreError("tag= needs a store, not a list of records")
    explicit = run_id is not None or tag is not None
    selection = analysis.select(
        records, suite=suite, run_id=run_id, include_smoke=include_smoke, explicit=explicit
    )
    if tag is not None:
        selection.filters["tag"] = tag
    roots.append(Path.cwd())
    return selection, roots


def render(
    source,
    out_dir,
    *,
    suite: str | None = None,
    run_id: str | None = None,
    tag: str | None = None,
    include_smoke: bool | None = None,
    artifact_root=None,
    title: str | None = None,
    formats=("html", "md"),
    releases: bool | None = None,
) -> dict[str, Path]:
    """Render the reports for the selected records into ``out_dir``: ``formats`` among "html"
    (self-contained) and "md" (with an assets folder); returns ``{"html"|"markdown": path}``.

    ``include_smoke``: None (default) shows full records, or the smoke records when a run id / tag is
    given or nothing else matches; True shows both (the report warns); False shows full records only.
    Relative artifact paths are resolved against ``artifact_root``, then the store's folder, then the
    working directory. ``releases``: the "Release history" section (a store's tagged releases of the
    selected suites, each gated against the previous one); None (default) adds it when the store holds
    such releases, True requires them, False leaves it out. Raises ``ValueError`` when no record matches
    (or, with ``releases=True``, no release).
    """
    from reports.content import build
    from reports.report import FORMATS, write

    selection, roots = select_records(
        source, suite=suite, run_id=run_id, tag=tag, include_smoke=include_smoke
    )
    if artifact_root is not None:
        roots.insert(0, Path(artifact_root))
    if not selection.records:
        what = ", ".join(f"{k}={v}" for k, v in selection.filters.items()) or "any filter"
        raise ValueError(
            f"no records match {what}" + ("" if include_smoke is not False else " (smoke excluded)")
        )
    suites = sorted({r["suite"] for r in selection.records})
    if title is None:
        title = f"ecodiff-bench report: {', '.join(suites)}"
        if run_id:
            title += f" (run {run_id})"
        if tag:
            title += f" (release {tag})"
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected some of {', '.join(FORMATS)}, got {list(formats)}")
    history = _history(source, suites) if releases is not False else None
    if releases and history is None:
        where = "a list of records has none" if not _is_store(source) else "the store holds none"
        raise ValueError(
            f"releases: no tagged release of suite(s) {', '.join(suites)} ({where}; name one with `ecodiff-bench tag NAME --run-id RUN`)"
        )
    return write(build(selection, roots, title, history), Path(out_dir), formats)


def _is_store(source) -> bool:
    from ecodiff_bench.core.store import Store

    return isinstance(source, (str, os.PathLike, Store))


@contextmanager
def _opened(source):
    """The store ``source`` names, opened read-only (and closed after) unless it is an open one already."""
    from ecodiff_bench.core.store import Store

    if isinstance(source, Store):
        yield source
        return
    store = Store(source, readonly=True)
    try:
        yield store
    finally:
        store.close()


def _history(source, suites: list[str]):
    """The release history of ``suites`` in a store (None for a list of records or without releases)."""
    from reports.releases import store_history

    if not _is_store(source):
        return None
    with _opened(source) as store:
        history = store_history(store, suites)
    return history if history.series else None
