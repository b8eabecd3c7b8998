"""The results store's file: telling our stores from anything else, opening them safely, the run lock.

A store is an SQLite file whose header carries :data:`APPLICATION_ID` (stores written before version 2
carry ``user_version`` 1 and our two tables instead). Anything else - a text file, random bytes, an empty
file, somebody else's SQLite database - is refused before a single byte of it is written: it is first
looked at through a read-only connection, and only a file recognised as ours is ever opened for writing.

Readers open the store read-only, so ``history``, ``export``, ``report`` and friends never change it.
A ``run`` holds :class:`RunLock` on ``<store>.lock`` for its whole duration, so that two runs on one
store never measure the same record twice (the second waits, or refuses with the holder's pid).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from ecodiff_bench.core.errors import StoreDamagedError, StoreError
from ecodiff_bench.core.record import utc_now

#: "ECDB" in the SQLite header's application_id field (offset 68).
APPLICATION_ID = 0x45434442
SCHEMA_VERSION = 2
_MAGIC = b"SQLite format 3\x00"
_TABLES = {
    "records": {"record_id", "run_id", "suite", "model", "method", "smoke", "status", "created_at", "data"},
    "tags": {"name", "record_id", "created_at"},
}

_DDL = """
CREATE TABLE records (
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
CREATE INDEX records_run ON records(run_id);
CREATE INDEX records_suite ON records(suite, model);
CREATE TABLE tags (
    name       TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    run_id     TEXT,
    smoke      INTEGER,
    data       TEXT,
    PRIMARY KEY (name, record_id)
);
"""

# Version 1 tagged record ids only, so a rerun that replaced a tagged record changed the release.
# Version 2 keeps a copy of every tagged record in the tag itself: a release never changes.
_MIGRATE_1_TO_2 = """
ALTER TABLE tags ADD COLUMN run_id TEXT;
ALTER TABLE tags ADD COLUMN smoke INTEGER;
ALTER TABLE tags ADD COLUMN data TEXT;
UPDATE tags SET run_id = (SELECT r.run_id FROM records r WHERE r.record_id = tags.record_id),
                smoke = (SELECT r.smoke FROM records r WHERE r.record_id = tags.record_id),
                data = (SELECT r.data FROM records r WHERE r.record_id = tags.record_id);
"""

#: The tagged records as every query reads them, whatever the store's version (a TEMP view: it lives in
#: the connection, so a read-only store is not touched).
_TAG_ROWS = {
    1: """CREATE TEMP VIEW tag_rows AS SELECT t.name, t.record_id, t.created_at, r.run_id, r.smoke, r.data
          FROM main.tags t LEFT JOIN main.records r ON r.record_id = t.record_id""",
    2: """CREATE TEMP VIEW tag_rows AS SELECT name, record_id, created_at, run_id, smoke, data
          FROM main.tags""",
}


def recovery_hint(path: Path, *, opens: bool = True) -> str:
    """The way out of a damaged store: export what still reads, or (when it does not even open) SQLite's
    own recovery; then a fresh store."""
    if opens:
        rescue = (
            f"save what is readable with `ecodiff-bench export --store {path} --skip-damaged recovered.jsonl`"
        )
    else:
        rescue = f"SQLite's `sqlite3 {path} .recover > recovered.sql` may rescue rows"
    return rescue + ", then move the damaged file away (a new run starts a fresh store)"


def database_error(path: Path, exc: sqlite3.Error, *, opens: bool = True) -> StoreError:
    """A StoreError for an SQLite failure: busy (another process) or damaged (with the way out)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreError(f"results store {path} is busy (another process holds it): {text}; try again")
    return StoreDamagedError(
        f"results store {path} is damaged ({text}); nothing was changed; {recovery_hint(path, opens=opens)}"
    )


def _check_header(path: Path) -> None:
    """Refuse a path that is not an SQLite file, before SQLite is given a chance to touch it."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a results store (give the store's .sqlite file)")
    try:
        with path.open("rb") as f:
            head = f.read(100)
    except OSError as e:
        raise StoreError(f"cannot read results store {path}: {e.strerror or e}") from None
    if not head:
        raise StoreError(
            f"{path} is an empty file, not a results store; delete it or choose another --store/outputs.store"
        )
    if not head.startswith(_MAGIC):
        raise StoreError(
            f"{path} is not an ecodiff-bench results store (not an SQLite file); it was left untouched"
        )
    if len(head) < 100:
        raise StoreDamagedError(
            f"results store {path} is damaged (truncated to {len(head)} bytes); nothing was changed; "
            + recovery_hint(path, opens=False)
        )


def _connect_ro(path: Path, timeout_s: float, *, probe: bool = False) -> sqlite3.Connection:
    """A read-only connection. A probe of a file without a write-ahead log opens it ``immutable``: SQLite
    then creates no -wal/-shm files next to it (a WAL-mode file would get them even read-only)."""
    immutable = probe and not path.with_name(path.name + "-wal").exists()
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return conn


def identify(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of an ecodiff-bench store behind ``conn``; StoreError for anything else."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {
            name: {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
            for name in names
            if name in _TABLES
        }
    except sqlite3.Error as e:
        raise database_error(path, e, opens=False) from None
    missing = [f"{t}.{c}" for t, cols in _TABLES.items() for c in sorted(cols - tables.get(t, set()))]
    # Stores of version 1 carry no application_id: recognised by their version and every column.
    ours = app_id == APPLICATION_ID or (app_id == 0 and version == 1 and not missing)
    if not ours:
        shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "") or "none"
        what = f"application_id {app_id:#x}, user_version {version}, tables: {shown}"
        raise StoreError(
            f"{path} is an SQLite database but not an ecodiff-bench results store ({what}); it was left "
            "untouched (give --store/outputs.store a new file name to start a store)"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; this ecodiff-bench reads up to {SCHEMA_VERSION} (upgrade it)"
        )
    if missing:
        raise StoreDamagedError(
            f"results store {path} is damaged (missing {', '.join(missing)}); nothing was changed; "
            + recovery_hint(path, opens=False)
        )
    return version


def open_store_file(
    path: Path, *, readonly: bool, create: bool, timeout_s: float
) -> tuple[sqlite3.Connection, int]:
    """A connection to the store at ``path`` and its schema version (created when allowed and missing)."""
    if not path.exists():
        if readonly or not create:
            raise StoreError(f"no results store at {path} (run a suite first, or pass --store PATH)")
        return _create(path, timeout_s), SCHEMA_VERSION
    _check_header(path)
    try:
        probe = _connect_ro(path, timeout_s, probe=True)
        try:
            version = identify(probe, path)
        finally:
            probe.close()
        conn = _connect_ro(path, timeout_s) if readonly else _connect_rw(path, timeout_s)
    except sqlite3.Error as e:
        raise database_error(path, e, opens=False) from None
    if readonly:
        return conn, version
    if version < SCHEMA_VERSION:
        _migrate(conn, path, version)
    return conn, SCHEMA_VERSION


def _connect_rw(path: Path, timeout_s: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # FULL: a committed record survives power loss too, not only a killed process.
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as e:
        raise database_error(path, e) from None
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"could not switch {path} to WAL journal mode (got {mode!r})")
    return conn


def _create(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A new store. The header (application_id, version) is written before WAL mode, into the file itself,
    so that the file is recognisable from its first moment on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot create the results store's folder {path.parent}: {e.strerror or e}"
        ) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executescript(f"BEGIN; {_DDL} COMMIT;")
        conn.close()
        _publish(tmp, path)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot create results store {path}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return open_store_file(path, readonly=False, create=False, timeout_s=timeout_s)[0]


def _publish(tmp: Path, path: Path) -> None:
    """Put the finished new store at ``path``, unless another process created one meanwhile (theirs wins)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not path.exists():
            os.replace(tmp, path)


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        if (
            conn.execute("PRAGMA user_version").fetchone()[0] == 1
        ):  # not migrated by another process meanwhile
            for stmt in _MIGRATE_1_TO_2.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise database_error(path, e) from None


def create_tag_view(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(_TAG_ROWS[version])


class RunLock:
    """An exclusive lock on ``<store>.lock`` held by one run at a time (released when the process ends,
    however it ends). ``wait=False`` refuses at once, naming the run that holds it."""

    def __init__(self, store_path: Path, *, suite: str, wait: bool, say=print):
        self.path = store_path.with_name(store_path.name + ".lock")
        self.suite, self.wait, self.say = suite, wait, say
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            if not self.wait:
                os.close(fd)
                raise StoreError(
                    f"another run ({holder}) is using the results store {self.path.with_suffix('')}; "
                    "wait for it to finish, or rerun with --wait to queue behind it"
                ) from None
            self.say(f"waiting for the run ({holder}) that holds {self.path} ...")
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.say(f"lock acquired after {time.monotonic() - t0:.0f} s")
        except BaseException:
            os.close(fd)
            raise
        me = {"pid": os.getpid(), "host": socket.gethostname(), "suite": self.suite, "since": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, suite {info['suite']}, since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
