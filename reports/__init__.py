"""Reports and the regression gate. Reads stored run records only; never imports torch.

``render(store_or_records, out_dir)`` writes ``report.html`` (self-contained) and ``report.md`` (with an
``assets/`` folder) and returns their paths. ``reports.gate`` compares releases; ``reports.releases`` is
the history of a store's tagged releases, each gated against the one before it.
"""

from __future__ import annotations

import os
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
    from ecodiff_bench.core.store import Store
    from reports import analysis

    roots: list[Path] = []
    tag_ids = None
    if isinstance(source, (str, os.PathLike, Store)):
        store = source if isinstance(source, Store) else Store(source, readonly=True)
        try:
            records = store.records(suite=suite, run_id=run_id, tag=tag, include_smoke=True)
            roots.append(store.path.resolve().parent)
        finally:
            if store is not source:
                store.close()
    else:
        records = [normalize_record(r) for r in source]
        if tag is not None:
            raise StoreError("tag= needs a store, not a list of records")
    explicit = run_id is not None or tag is not None
    sel = analysis.select(
        records, suite=suite, run_id=run_id, tag_ids=tag_ids, include_smoke=include_smoke, explicit=explicit
    )
    if tag is not None:
        sel.filters["tag"] = tag
    roots.append(Path.cwd())
    return sel, roots


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
    from reports import report

    sel, roots = select_records(source, suite=suite, run_id=run_id, tag=tag, include_smoke=include_smoke)
    if artifact_root is not None:
        roots.insert(0, Path(artifact_root))
    if not sel.records:
        what = ", ".join(f"{k}={v}" for k, v in sel.filters.items()) or "any filter"
        raise ValueError(
            f"no records match {what}" + ("" if include_smoke is not False else " (smoke excluded)")
        )
    if title is None:
        suites = sorted({r["suite"] for r in sel.records})
        title = f"ecodiff-bench report: {', '.join(suites)}"
        if run_id:
            title += f" (run {run_id})"
        if tag:
            title += f" (release {tag})"
    unknown = [f for f in formats if f not in report.FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected some of {', '.join(report.FORMATS)}, got {list(formats)}")
    history = _history(source, sorted({r["suite"] for r in sel.records})) if releases is not False else None
    if releases and history is None:
        where = "a list of records has none" if not _is_store(source) else "the store holds none"
        raise ValueError(
            f"releases: no tagged release of suite(s) {', '.join(sorted({r['suite'] for r in sel.records}))} ({where}; name one with `ecodiff-bench tag NAME --run-id RUN`)"
        )
    content = report.build(sel, roots, title, history)
    return report.write(content, Path(out_dir), formats)


def _is_store(source) -> bool:
    from ecodiff_bench.core.store import Store

    return isinstance(source, (str, os.PathLike, Store))


def _history(source, suites: list[str]):
    """The release history of ``suites`` in a store (None for a list of records or without releases)."""
    from ecodiff_bench.core.store import Store
    from reports.releases import store_history

    if not _is_store(source):
        return None
    store = source if isinstance(source, Store) else Store(source, readonly=True)
    try:
        history = store_history(store, suites)
    finally:
        if store is not source:
            store.close()
    return history if history.series else None
