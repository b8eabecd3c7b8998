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

from ecodiff_bench.core.errors import StoreError
from ecodiff_bench.core.export import export_records
from ecodiff_bench.core.record import RECORD_STATUSES, RunRecord, utc_now

SCHEMA_VERSION = 1
DEFAULT_STORE_ENV = "ECODIFF_BENCH_STORE"
DEFAULT_STORE_PATH = Path("results") / "store.sqlite"

_DDL = """
CREATE TABLE IF NOT EXISTS records (
    record_id  TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    suite      TEXT NOT NULL,
    model      TEXT NOT NULL,
    method     TEXT NOT NULL,
    smoke      INTEGER NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    written_at TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_run ON records(run_id);
CREATE INDEX IF NOT EXISTS records_suite ON records(suite, model);
CREATE TABLE IF NOT EXISTS tags (
    name       TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, record_id)
);
"""


def default_store_path() -> Path:
    """``$ECODIFF_BENCH_STORE`` if set, else ``results/store.sqlite`` (relative to the working directory)."""
    env = os.environ.get(DEFAULT_STORE_ENV)
    return Path(env) if env else DEFAULT_STORE_PATH


class Store:
    """SQLite results store. ``Store(path)`` creates the file (and parent folders) unless ``create=False``."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True, timeout_s: float = 60.0):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StoreError(f"no results store at {self.path} (run a suite first, or pass --store PATH)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch {self.path} to WAL journal mode (got {mode!r})")
        # FULL: a committed record survives power loss too, not only a killed process.
        self._conn.execute("PRAGMA synchronous = FULL")
        with self._write():
            for stmt in _DDL.strip().split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this ecodiff-bench reads up to {SCHEMA_VERSION}"
                )

    # -- plumbing -----------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed entirely, or rolled back entirely."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close; first fold the WAL into the main file when no one else is using it (never waits).

        A failed checkpoint loses nothing: the WAL file keeps the data and the next open reads it.
        """
        with suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    # -- records ------------------------------------------------------------------------------------
    def put(self, record: RunRecord | dict) -> dict:
        """Insert or replace (by ``record_id``) one record, atomically. Returns the stored (normalized) record."""
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
        row = self._conn.execute("SELECT data FROM records WHERE record_id = ?", (record_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def has_ok(self, record_id: str) -> bool:
        """True when a record with this id is stored with status ``ok`` (a rerun may skip it)."""
        row = self._conn.execute(
            "SELECT 1 FROM records WHERE record_id = ? AND status = 'ok'", (record_id,)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]

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
        """Records matching every given filter, oldest first.

        Smoke records are left out unless ``include_smoke`` (both kinds) or ``smoke_only`` (smoke only).
        """
        if status is not None and status not in RECORD_STATUSES:
            raise ValueError(f"status must be one of {RECORD_STATUSES} or None, got {status!r}")
        where, args = [], []
        for column, value in (
            ("suite", suite),
            ("run_id", run_id),
            ("model", model),
            ("status", status),
            ("method", method),
        ):
            if value is not None:
                where.append(f"r.{column} = ?")
                args.append(value)
        if smoke_only:
            where.append("r.smoke = 1")
        elif not include_smoke:
            where.append("r.smoke = 0")
        if tag is not None:
            if not self._conn.execute("SELECT 1 FROM tags WHERE name = ? LIMIT 1", (tag,)).fetchone():
                raise StoreError(
                    f"unknown release tag {tag!r}; known tags: {', '.join(self.tag_names()) or 'none'}"
                )
            where.append("r.record_id IN (SELECT record_id FROM tags WHERE name = ?)")
            args.append(tag)
        if record_ids is not None:
            ids = list(record_ids)
            if not ids:
                return []
            where.append(f"r.record_id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        sql = "SELECT r.data FROM records r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.created_at, r.record_id"
        return [json.loads(row[0]) for row in self._conn.execute(sql, args)]

    def count_smoke(self, **filters: Any) -> int:
        """How many smoke records match ``filters`` (the same keywords as :meth:`records`)."""
        return len(self.records(smoke_only=True, **filters))

    def runs(self) -> list[dict]:
        """History: one summary dict per run_id, newest first."""
        rows = self._conn.execute(
            """SELECT run_id, MIN(suite), MIN(created_at), MAX(created_at), COUNT(*),
                      SUM(status = 'ok'), SUM(status = 'failed'), MAX(smoke), MIN(smoke),
                      GROUP_CONCAT(DISTINCT model), GROUP_CONCAT(DISTINCT method), COUNT(DISTINCT suite)
               FROM records GROUP BY run_id ORDER BY MIN(created_at) DESC, run_id"""
        ).fetchall()
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
        rows = self._conn.execute(
            """SELECT DISTINCT t.name FROM tags t JOIN records r ON r.record_id = t.record_id
               WHERE r.run_id = ? ORDER BY t.name""",
            (run_id,),
        ).fetchall()
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

        A tag is immutable unless ``replace=True``. Returns the tagged record ids.
        """
        if not isinstance(name, str) or not name.strip():
            raise StoreError(f"a tag name must be a non-empty string, got {name!r}")
        if (record_ids is None) == (run_id is None):
            raise StoreError("tag(): give either record_ids or run_id (exactly one)")
        if run_id is not None:
            ids = [
                r[0] for r in self._conn.execute("SELECT record_id FROM records WHERE run_id = ?", (run_id,))
            ]
            if not ids:
                raise StoreError(
                    f"no records with run_id {run_id!r}; known runs: {', '.join(self.run_ids()[:10]) or 'none'}"
                )
        else:
            ids = list(dict.fromkeys(record_ids))
            if not ids:
                raise StoreError("tag(): record_ids is empty")
            known = {
                r[0]
                for r in self._conn.execute(
                    f"SELECT record_id FROM records WHERE record_id IN ({', '.join('?' * len(ids))})", ids
                )
            }
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise StoreError(f"unknown record id(s): {', '.join(unknown)}")
        now = utc_now()
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM tags WHERE name = ? LIMIT 1", (name,)).fetchone()
            if exists and not replace:
                raise StoreError(
                    f"tag {name!r} already exists; releases are immutable (use replace=True / --replace)"
                )
            conn.execute("DELETE FROM tags WHERE name = ?", (name,))
            conn.executemany(
                "INSERT INTO tags (name, record_id, created_at) VALUES (?, ?, ?)",
                [(name, i, now) for i in ids],
            )
        return ids

    def tag_names(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT name FROM tags ORDER BY name")]

    def tags(self) -> list[dict]:
        rows = self._conn.execute(
            """SELECT t.name, MIN(t.created_at), COUNT(*), GROUP_CONCAT(DISTINCT r.run_id), MAX(r.smoke)
               FROM tags t LEFT JOIN records r ON r.record_id = t.record_id
               GROUP BY t.name ORDER BY MIN(t.created_at), t.name"""
        ).fetchall()
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
        """Every record of a release, smoke or not (a release is what it is; reports flag smoke)."""
        return self.records(tag=name, include_smoke=True)

    # -- export -------------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, fmt: str | None = None, **filters: Any) -> Path:
        """Write matching records (``filters`` as for :meth:`records`) to csv, json, jsonl or parquet.

        csv/json/parquet hold one flat row per record (see :func:`flatten_record`); jsonl holds the full
        nested records, one per line. ``fmt`` defaults to the file suffix.
        """
        return export_records(self.records(**filters), path, fmt)
