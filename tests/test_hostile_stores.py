"""Hostile and damaged results stores: every result command refuses them with exit code 2 and a message
naming the file (and the record), never a traceback; a file that is not our store is never changed, not
even by a byte; reading commands never write; releases keep what they tagged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core import storefile
from ecodiff_bench.core.errors import StoreDamagedError, StoreError
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.store import Store
from reports.synthetic import make_record

COMMANDS = {
    "history": ["history"],
    "history-records": ["history", "--records"],
    "compare": ["compare", "r1", "v1"],
    "export": ["export", "{tmp}/out.jsonl"],
    "export-skip": ["export", "--skip-damaged", "{tmp}/out2.jsonl"],
    "report": ["report", "--out", "{tmp}/report"],
    "tag": ["tag", "v2", "--run-id", "r1"],
    "check": ["check", "--baseline", "v1", "--run-id", "r1"],
}


def _good_store(path: Path, n: int = 2) -> Path:
    with Store(path) as s:
        s.put(make_record("m", "base", 0.0, run_id="r1"))
        for i in range(1, n):
            s.put(make_record("m", "magnitude", round(0.1 * i, 2), run_id="r1"))
        s.tag("v1", run_id="r1")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sql(path: Path, *statements: str) -> Path:
    conn = sqlite3.connect(path)
    for stmt in statements:
        conn.execute(stmt)
    conn.commit()
    conn.close()
    return path


def _damage(kind: str, tmp: Path) -> Path:
    """A store file damaged (or replaced) the way ``kind`` says."""
    good = _good_store(tmp / "good.sqlite")
    data = good.read_bytes()
    path = tmp / f"{kind}.sqlite"
    if kind == "truncated-half":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-header":
        path.write_bytes(data[:50])
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(8192))
    elif kind == "text-file":
        path.write_text("records,tags\n1,2\n")
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "bad-header":
        path.write_bytes(data[:16] + os.urandom(84) + data[100:])
    elif kind == "bad-json-row":
        shutil.copy(good, path)
        _sql(path, "UPDATE records SET data = '{not json' WHERE method = 'magnitude'")
    elif kind == "bad-shape-row":
        shutil.copy(good, path)
        _sql(path, """UPDATE records SET data = '{"record_id": 1}' WHERE method = 'magnitude'""")
    elif kind == "nan-row":
        shutil.copy(good, path)
        _sql(path, "UPDATE records SET data = replace(data, '\"ratio\": 0.1', '\"ratio\": NaN')")
    elif kind == "foreign-sqlite":
        _sql(path, "CREATE TABLE people (name TEXT)", "INSERT INTO people VALUES ('ada')")
    elif kind == "foreign-wal-sqlite":
        _sql(path, "PRAGMA journal_mode = WAL", "CREATE TABLE people (name TEXT)")
    elif kind == "foreign-same-table-names":
        _sql(path, "CREATE TABLE records (x)", "CREATE TABLE tags (y)", "PRAGMA user_version = 1")
    elif kind == "foreign-application-id":
        _sql(path, "PRAGMA application_id = 1234", "CREATE TABLE records (x)")
    elif kind == "empty-sqlite":
        _sql(path, "PRAGMA user_version = 0", "VACUUM")
    elif kind == "future-version":
        shutil.copy(good, path)
        _sql(path, "PRAGMA user_version = 99")
    elif kind == "dropped-column":
        shutil.copy(good, path)
        _sql(path, "ALTER TABLE records DROP COLUMN status")
    else:
        raise AssertionError(kind)
    return path


# (kind, what the message says, does the file stay byte-identical)
DAMAGED = [
    ("truncated-half", "is damaged", ".recover"),
    ("truncated-header", "truncated to 50 bytes", ".recover"),
    ("random-bytes", "not an ecodiff-bench results store", "left untouched"),
    ("text-file", "not an ecodiff-bench results store", "not an SQLite file"),
    ("empty-file", "is an empty file", "not a results store"),
    ("bad-header", "is damaged", "nothing was changed"),
    ("foreign-sqlite", "not an ecodiff-bench results store", "tables: people"),
    ("foreign-wal-sqlite", "not an ecodiff-bench results store", "left untouched"),
    ("foreign-same-table-names", "not an ecodiff-bench results store", "user_version 1"),
    ("foreign-application-id", "not an ecodiff-bench results store", "application_id 0x4d2"),
    ("empty-sqlite", "not an ecodiff-bench results store", "tables: none"),
    ("future-version", "schema version 99", "reads up to"),
    ("dropped-column", "is damaged", "records.status"),
]


@pytest.mark.parametrize("kind,needle,hint", DAMAGED, ids=[d[0] for d in DAMAGED])
@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_every_command_refuses_a_bad_store_and_leaves_it_untouched(tmp_path, kind, needle, hint, command):
    path = _damage(kind, tmp_path)
    before = _sha(path)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command]] + ["--store", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert str(path) in result.stderr and needle in result.stderr and hint in result.stderr, result.stderr
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no -wal/-shm, no outputs written


@pytest.mark.parametrize("kind", ["bad-json-row", "bad-shape-row", "nan-row"])
def test_a_damaged_record_is_named_and_the_rest_can_be_exported(tmp_path, kind):
    path = _damage(kind, tmp_path)
    before = _sha(path)
    damaged_id = next(
        r[0] for r in sqlite3.connect(path).execute("SELECT record_id FROM records WHERE method != 'base'")
    )
    for command in ("history-records", "export", "report", "compare", "check"):
        args = [a.format(tmp=tmp_path) for a in COMMANDS[command]] + ["--store", str(path)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (command, result.output)
        assert (
            damaged_id in result.stderr and str(path) in result.stderr and "--skip-damaged" in result.stderr
        )
    result = CliRunner().invoke(
        main, ["export", "--skip-damaged", str(tmp_path / "ok.jsonl"), "--store", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert f"skipped damaged record {damaged_id}" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "ok.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["base"]
    assert _sha(path) == before


def test_rows_behind_a_damaged_page_are_found_through_the_index(tmp_path):
    path = _good_store(tmp_path / "s.sqlite", n=40)  # one record per page of the records table
    conn = sqlite3.connect(path)
    try:
        leaves = [
            p
            for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'records' AND pagetype = 'leaf'")
        ]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (leaves[len(leaves) // 2] - 1) * page_size
    data[start : start + page_size] = b"\xab" * page_size
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["history", "--records", "--store", str(path)])
    assert result.exit_code == 2 and "is damaged" in result.stderr and "--skip-damaged" in result.stderr
    out = tmp_path / "rescued.jsonl"
    result = CliRunner().invoke(main, ["export", "--skip-damaged", str(out), "--store", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 damaged record(s) could not be read" in result.stderr
    assert len(out.read_text().splitlines()) == 39


def test_reading_commands_never_write_to_a_store(tmp_path):
    path = _good_store(tmp_path / "s.sqlite")
    os.chmod(path, 0o444)  # even a store we may not write to reads fine
    before = _sha(path)
    for command in ("history", "history-records", "compare", "export", "report", "check"):
        args = [a.format(tmp=tmp_path) for a in COMMANDS[command]] + ["--store", str(path)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (command, result.output)
    assert _sha(path) == before
    with Store(path, readonly=True) as store, pytest.raises(StoreError, match="read-only"):
        store.put(make_record("m", "random", 0.3))


def test_a_foreign_sqlite_file_is_refused_by_run_and_by_the_library(tmp_path):
    path = _damage("foreign-sqlite", tmp_path)
    before = _sha(path)
    for kwargs in ({}, {"create": False}, {"readonly": True}):
        with pytest.raises(StoreError, match="not an ecodiff-bench results store"):
            Store(path, **kwargs)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nmodels: [digits-sdxl]\nenergy: {country: FRA, idle_baseline_s: 0}\n"
        f"outputs: {{dir: {tmp_path / 'out'}, store: {path}}}\n"
    )
    result = CliRunner().invoke(main, ["run", str(suite)])
    assert result.exit_code == 2 and "outputs.store" in result.stderr and str(path) in result.stderr
    result = CliRunner().invoke(main, ["run", "--dry-run", str(suite)])
    assert result.exit_code == 0 and "could not read the store" in result.stderr
    assert _sha(path) == before


def test_a_new_store_is_recognisable_from_its_header(tmp_path):
    path = tmp_path / "new.sqlite"
    Store(path).close()
    header = path.read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == storefile.APPLICATION_ID
    assert int.from_bytes(header[60:64], "big") == storefile.SCHEMA_VERSION


def test_a_version_1_store_is_read_as_it_is_and_migrated_when_written(tmp_path):
    path = tmp_path / "v1.sqlite"
    rec = make_record("m", "base", 0.0, run_id="r1")
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE records (record_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, suite TEXT NOT NULL,
               model TEXT NOT NULL, method TEXT NOT NULL, smoke INTEGER NOT NULL, status TEXT NOT NULL,
               created_at TEXT NOT NULL, written_at TEXT NOT NULL, data TEXT NOT NULL);
           CREATE TABLE tags (name TEXT NOT NULL, record_id TEXT NOT NULL, created_at TEXT NOT NULL,
               PRIMARY KEY (name, record_id));
           PRAGMA user_version = 1;"""
    )
    data = normalize_record(rec)  # the record's JSON form, as version 1 wrote it
    conn.execute(
        "INSERT INTO records VALUES (?, ?, ?, ?, ?, 0, 'ok', ?, ?, ?)",
        (data["record_id"], "r1", data["suite"], "m", "base", data["created_at"], "now", json.dumps(data)),
    )
    conn.execute("INSERT INTO tags VALUES ('v1', ?, 'now')", (data["record_id"],))
    conn.commit()
    conn.close()
    before = _sha(path)
    with Store(path, readonly=True) as store:
        assert [r["record_id"] for r in store.tagged("v1")] == [data["record_id"]]
        assert store.runs()[0]["tags"] == ["v1"]
    assert _sha(path) == before
    with Store(path) as store:  # opened for writing: migrated, the release keeps its record
        store.put({**data, "status": "failed", "error": "rerun failed", "run_id": "r2"})
        assert store.tagged("v1")[0]["status"] == "ok"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == storefile.SCHEMA_VERSION


def test_a_release_keeps_its_records_when_they_are_measured_again(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        failed = make_record("m", "magnitude", 0.2, run_id="r1", status="failed")
        store.put(failed)
        store.tag("v1", run_id="r1")
        store.put(make_record("m", "magnitude", 0.2, run_id="r2"))  # the rerun, same spec
        assert store.get(failed["record_id"])["status"] == "ok"
        (release,) = store.tagged("v1")
        assert release["status"] == "failed" and release["run_id"] == "r1"
        assert store.records(tag="v1", include_smoke=True, status="failed")[0]["run_id"] == "r1"
        assert store.tags()[0]["runs"] == ["r1"]
        assert {r["run_id"]: r["tags"] for r in store.runs()} == {"r2": []}  # r1 lives on in v1 only


def test_a_damaged_record_is_never_copied_into_a_release(tmp_path):
    path = _damage("bad-json-row", tmp_path)
    with Store(path) as store, pytest.raises(StoreDamagedError, match="is damaged"):
        store.tag("v2", run_id="r1")


def test_the_run_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    path = tmp_path / "s.sqlite"
    held = r"another run \(pid \d+ on .*, suite suite-a, since"
    with (
        Store(path) as store,
        store.run_lock("suite-a"),
        pytest.raises(StoreError, match=held),
        Store(path).run_lock("suite-b"),
    ):
        pass
    with Store(path).run_lock("suite-b"):  # released with the first holder
        pass
