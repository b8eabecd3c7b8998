"""Results store: one JSON run record per measured model, in SQLite (WAL mode).

Every write is a single transaction, so a process killed mid-run (even SIGKILL) leaves each record either
fully stored or absent. Readers and writers in different processes can work at the same time.

Records are validated as :class:`~ecodiff_bench.core.record.RunRecord` on the way in and returned in
their JSON form (plain dicts, every field present). Queries exclude smoke records unless asked,
so smoke and full results are never mixed by accident. Sets of records can be named (``tag``) to make a
release that the regression gate compares.

Torch-free on purpose: ``reports`` and the CLI's result commands import this module.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ecodiff_bench.core import storefile
from ecodiff_bench.core.errors import StoreDamagedError, StoreError
from ecodiff_bench.core.export import export_records
from ecodiff_bench.core.record import RECORD_STATUSES, RunRecord, utc_now

DEFAULT_STORE_ENV = "ECODIFF_BENCH_STORE"
DEFAULT_STORE_PATH = Path("results") / "store.sqlite"


def default_store_path() -> Path:
    """``$ECODIFF_BENCH_STORE`` if set, else ``results/store.sqlite`` (relative to the working directory)."""
    env = os.environ.get(DEFAULT_STORE_ENV)
    return Path(env) if env else DEFAULT_STORE_PATH


class Store:
    """SQLite results store.

    ``Store(path)`` opens (or creates, with its folders) a store for writing; ``create=False`` refuses a
    missing file; ``readonly=True`` opens an existing store without ever writing to it. A file that is not
    an ecodiff-bench store, or a damaged one, raises :class:`StoreError` and is left untouched.
    """

    def __init__(
        self, path: str | os.PathLike, *, create: bool = True, readonly: bool = False, timeout_s: float = 60.0
    ):
        self.path = Path(path)
        self.readonly = readonly
        self._conn, version = storefile.open_store_file(
            self.path, readonly=readonly, create=create, timeout_s=timeout_s
        )
        storefile.create_tag_view(self._conn, version)

    def run_lock(self, suite: str, *, wait: bool = False, say=print) -> storefile.RunLock:
        """The lock a run holds on this store (see :class:`~ecodiff_bench.core.storefile.RunLock`)."""
        return storefile.RunLock(self.path, suite=suite, wait=wait, say=say)

    # -- plumbing -----------------------------------------------------------------------------------
    def _q(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        """Run a read query; SQLite failures become a StoreError naming the file and the way out."""
        try:
            return self._conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as e:
            raise storefile.database_error(self.path, e) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed entirely, or rolled back entirely."""
        if self.readonly:
            raise StoreError(f"results store {self.path} was opened read-only")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise storefile.database_error(self.path, e) from None

    def _decode(self, record_id: str, data: Any) -> dict:
        """One stored row as a validated record, or a StoreError naming the record."""
        try:
            return _parse(data)
        except (TypeError, ValueError) as e:  # JSONDecodeError and RecordError are ValueErrors
            raise StoreDamagedError(
                f"results store {self.path}: record {record_id} is damaged ({e}); {storefile.recovery_hint(self.path)}"
            ) from None

    def close(self) -> None:
        """Close; first fold the WAL into the main file when no one else is using it (never waits).

        A failed checkpoint loses nothing: the WAL file keeps the data and the next open reads it.
        """
        if not self.readonly:
            with suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def journal_mode(self) -> str:
        return self._q("PRAGMA journal_mode")[0][0]

    # -- records ------------------------------------------------------------------------------------
    def put(self, record: RunRecord | dict) -> dict:
        """Insert or replace (by ``record_id``) one record, atomically. Returns the stored (normalized) record.

        A release keeps its own copy of each record it tagged, so replacing a tagged record (a failed spec
        measured again) writes the new record and leaves the release as it was.
        """
        rec = RunRecord.parse(record).to_dict()
        data = json.dumps(rec, sort_keys=True, allow_nan=False)
        with self._write() as conn:
            conn.execute(
                """INSERT INTO records (record_id, run_id, suite, model, method, smoke, status, created_at,
                                        written_at, data)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(record_id) DO UPDATE SET
                     run_id=excluded.run_id, suite=excluded.suite, model=excluded.model,
                     method=excluded.method, smoke=excluded.smoke, status=excluded.status,
                     created_at=excluded.created_at, written_at=excluded.written_at, data=excluded.data""",
                (
                    rec["record_id"],
                    rec["run_id"],
                    rec["suite"],
                    rec["model"],
                    rec["method"],
                    int(rec["smoke"]),
                    rec["status"],
                    str(rec["created_at"]),
                    utc_now(),
                    data,
                ),
            )
        return rec

    def put_many(self, records: Iterable[RunRecord | dict]) -> list[dict]:
        """Store several records; each is its own transaction (a crash keeps the ones already written)."""
        return [self.put(r) for r in records]

    def get(self, record_id: str) -> dict | None:
        rows = self._q("SELECT data FROM records WHERE record_id = ?", (record_id,))
        return self._decode(record_id, rows[0][0]) if rows else None

    def has_ok(self, record_id: str) -> bool:
        """True when a record with this id is stored with status ``ok`` (a rerun may skip it)."""
        return bool(self._q("SELECT 1 FROM records WHERE record_id = ? AND status = 'ok'", (record_id,)))

    def __len__(self) -> int:
        return self._q("SELECT COUNT(*) FROM records")[0][0]

    def records(
        self,
        suite: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        include_smoke: bool = False,
        status: str | None = None,
        *,
        method: str | None = None,
        tag: str | None = None,
        record_ids: Iterable[str] | None = None,
        smoke_only: bool = False,
    ) -> list[dict]:
        """Records matching every given filter, oldest first; with ``tag``, the release's own copies.

        Smoke records are left out unless ``include_smoke`` (both kinds) or ``smoke_only`` (smoke only).
        A damaged record raises :class:`StoreError` naming it (:meth:`readable_records` skips them).
        """
        sql, args = self._select(
            "r.data", suite, run_id, model, include_smoke, status, method, tag, record_ids, smoke_only
        )
        if sql is None:
            return []
        return [self._decode(rid, data) for data, rid in self._q(sql, args)]

    def _select(
        self, column, suite, run_id, model, include_smoke, status, method, tag, record_ids, smoke_only
    ):
        """SQL for (``column``, record_id) of the rows matching :meth:`records`' filters, oldest first;
        (None, []) when nothing can match."""
        if status is not None and status not in RECORD_STATUSES:
            raise ValueError(f"status must be one of {RECORD_STATUSES} or None, got {status!r}")
        where, args = [], []
        if tag is not None:
            if not self._q("SELECT 1 FROM tag_rows WHERE name = ? LIMIT 1", (tag,)):
                raise StoreError(
                    f"unknown release tag {tag!r}; known tags: {', '.join(self.tag_names()) or 'none'}"
                )
            # the release's copies, filtered on their own fields
            fields = ", ".join(f"json_extract(data, '$.{f}') AS {f}" for f in _TAG_FILTERS)
            source = f"(SELECT record_id, run_id, smoke, data, {fields} FROM tag_rows WHERE name = ?) r"
            args.append(tag)
        else:
            source = "records r"
        for field, value in (
            ("suite", suite),
            ("run_id", run_id),
            ("model", model),
            ("status", status),
            ("method", method),
        ):
            if value is not None:
                where.append(f"r.{field} = ?")
                args.append(value)
        if smoke_only:
            where.append("r.smoke = 1")
        elif not include_smoke:
            where.append("r.smoke = 0")
        if record_ids is not None:
            ids = list(record_ids)
            if not ids:
                return None, []
            where.append(f"r.record_id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        sql = f"SELECT {column}, r.record_id FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + " ORDER BY r.created_at, r.record_id", args

    def readable_records(self, **filters: Any) -> tuple[list[dict], list[tuple[str, str]]]:
        """What :meth:`records` returns, skipping damaged records: (records, [(record id, why)]).

        Each row is read on its own, so a damaged row costs that record only; when the table's own
        pages cannot even be listed, the rows are found through the record-id index instead.
        """
        filters = {**_NO_FILTERS, **filters}
        tag = filters["tag"]
        sql, args = self._select("r.record_id" if tag else "r.rowid", **filters)
        if sql is None:
            return [], []
        try:
            keys, check = self._q(sql, args), None
        except StoreDamagedError:
            if tag:
                raise
            index = "SELECT rowid, record_id FROM records INDEXED BY sqlite_autoindex_records_1 WHERE record_id >= ''"
            keys, check = self._q(index), _matcher(filters)
        good, damaged = [], []
        for key, rid in keys:
            try:
                if tag:
                    query = ("SELECT data FROM tag_rows WHERE name = ? AND record_id = ?", (tag, key))
                else:
                    query = ("SELECT data FROM records WHERE rowid = ?", (key,))
                rec = _parse(self._conn.execute(*query).fetchone()[0])
            except (sqlite3.Error, TypeError, ValueError) as e:
                damaged.append((str(rid), str(e)))
                continue
            if check is None or check(rec):
                good.append(rec)
        return good, damaged

    def count_smoke(self, **filters: Any) -> int:
        """How many smoke records match ``filters`` (the same keywords as :meth:`records`)."""
        return len(self.records(smoke_only=True, **filters))

    def runs(self) -> list[dict]:
        """History: one summary dict per run_id, newest first."""
        rows = self._q(
            """SELECT run_id, MIN(suite), MIN(created_at), MAX(created_at), COUNT(*),
                      SUM(status = 'ok'), SUM(status = 'failed'), MAX(smoke), MIN(smoke),
                      GROUP_CONCAT(DISTINCT model), GROUP_CONCAT(DISTINCT method), COUNT(DISTINCT suite)
               FROM records GROUP BY run_id ORDER BY MIN(created_at) DESC, run_id"""
        )
        out = []
        for (
            run_id,
            suite,
            first,
            last,
            n,
            n_ok,
            n_failed,
            smoke_max,
            smoke_min,
            models,
            methods,
            n_suites,
        ) in rows:
            out.append(
                {
                    "run_id": run_id,
                    "suite": suite if n_suites == 1 else f"{suite} (+{n_suites - 1} more)",
                    "started": first,
                    "finished": last,
                    "records": n,
                    "ok": int(n_ok or 0),
                    "failed": int(n_failed or 0),
                    "smoke": bool(smoke_max) if smoke_max == smoke_min else "mixed",
                    "models": sorted((models or "").split(",")) if models else [],
                    "methods": sorted((methods or "").split(",")) if methods else [],
                    "tags": self._tags_of_run(run_id),
                }
            )
        return out

    def _tags_of_run(self, run_id: str) -> list[str]:
        rows = self._q("SELECT DISTINCT name FROM tag_rows WHERE run_id = ? ORDER BY name", (run_id,))
        return [r[0] for r in rows]

    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.runs()]

    # -- release tags -------------------------------------------------------------------------------
    def tag(
        self,
        name: str,
        record_ids: Iterable[str] | None = None,
        *,
        run_id: str | None = None,
        replace: bool = False,
    ) -> list[str]:
        """Name a set of records a release: explicit ``record_ids`` or every record of ``run_id``.

        The release keeps a copy of each record as it is now. A tag is immutable unless ``replace=True``.
        Returns the tagged record ids.
        """
        if not isinstance(name, str) or not name.strip():
            raise StoreError(f"a tag name must be a non-empty string, got {name!r}")
        if (record_ids is None) == (run_id is None):
            raise StoreError("tag(): give either record_ids or run_id (exactly one)")
        if run_id is not None:
            ids = [r[0] for r in self._q("SELECT record_id FROM records WHERE run_id = ?", (run_id,))]
            if not ids:
                raise StoreError(
                    f"no records with run_id {run_id!r}; known runs: {', '.join(self.run_ids()[:10]) or 'none'}"
                )
        else:
            ids = list(dict.fromkeys(record_ids))
            if not ids:
                raise StoreError("tag(): record_ids is empty")
            marks = ", ".join("?" * len(ids))
            known = {
                r[0] for r in self._q(f"SELECT record_id FROM records WHERE record_id IN ({marks})", ids)
            }
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise StoreError(f"unknown record id(s): {', '.join(unknown)}")
        for rid in ids:  # never copy a damaged record into a release
            self.get(rid)
        now = utc_now()
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM tags WHERE name = ? LIMIT 1", (name,)).fetchone()
            if exists and not replace:
                raise StoreError(
                    f"tag {name!r} already exists; releases are immutable (use replace=True / --replace)"
                )
            conn.execute("DELETE FROM tags WHERE name = ?", (name,))
            conn.executemany(
                """INSERT INTO tags (name, record_id, created_at, run_id, smoke, data)
                   SELECT ?, record_id, ?, run_id, smoke, data FROM records WHERE record_id = ?""",
                [(name, now, i) for i in ids],
            )
        return ids

    def tag_names(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT name FROM tag_rows ORDER BY name")]

    def tags(self) -> list[dict]:
        rows = self._q(
            """SELECT name, MIN(created_at), COUNT(*), GROUP_CONCAT(DISTINCT run_id), MAX(smoke)
               FROM tag_rows GROUP BY name ORDER BY MIN(created_at), name"""
        )
        return [
            {
                "name": n,
                "created_at": c,
                "records": k,
                "runs": sorted((runs or "").split(",")) if runs else [],
                "smoke": bool(smoke),
            }
            for n, c, k, runs, smoke in rows
        ]

    def tagged(self, name: str) -> list[dict]:
        """Every record of a release as it was tagged, smoke or not (reports flag smoke)."""
        return self.records(tag=name, include_smoke=True)

    # -- export -------------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, fmt: str | None = None, **filters: Any) -> Path:
        """Write matching records (``filters`` as for :meth:`records`) to csv, json, jsonl or parquet.

        csv/json/parquet hold one flat row per record (see :func:`flatten_record`); jsonl holds the full
        nested records, one per line. ``fmt`` defaults to the file suffix.
        """
        return export_records(self.records(**filters), path, fmt)


_TAG_FILTERS = ("suite", "model", "status", "method", "created_at")


def _parse(data: Any) -> dict:
    """A stored row's JSON as a validated record (raises ValueError/TypeError for a damaged one)."""
    return RunRecord.parse(json.loads(data)).to_dict()


def _matcher(filters: dict[str, Any]):
    """The filters of :meth:`Store.records` as a test on a decoded record (for rows listed by index)."""
    ids = set(filters["record_ids"]) if filters["record_ids"] is not None else None
    wanted = {
        k: filters[k] for k in ("suite", "run_id", "model", "status", "method") if filters[k] is not None
    }

    def check(rec: dict) -> bool:
        if any(rec[k] != v for k, v in wanted.items()) or (ids is not None and rec["record_id"] not in ids):
            return False
        return rec["smoke"] if filters["smoke_only"] else (filters["include_smoke"] or not rec["smoke"])

    return check


_NO_FILTERS: dict[str, Any] = {
    "suite": None,
    "run_id": None,
    "model": None,
    "include_smoke": False,
    "status": None,
    "method": None,
    "tag": None,
    "record_ids": None,
    "smoke_only": False,
}
