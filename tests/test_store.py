"""Results store: round trip, WAL, upsert, smoke filtering, tags, export, crash safety (no torch)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ecodiff_bench.core.errors import RecordError, StoreError
from ecodiff_bench.core.export import export_records, flatten_record
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.store import Store
from reports.synthetic import make_record, value

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db" / "store.sqlite")
    yield s
    s.close()


def test_round_trip_returns_the_stored_record(store):
    rec = make_record("digits-sdxl", "ecodiff", 0.3)
    stored = store.put(rec)
    assert store.get(rec["record_id"]) == stored
    assert stored["metrics"] == rec["metrics"]
    assert stored["provenance"] == rec["provenance"]
    assert store.get("nope") is None
    assert len(store) == 1


def test_store_is_in_wal_mode_for_every_connection(store):
    assert store.journal_mode().lower() == "wal"
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


def test_put_upserts_by_record_id(store):
    rec = make_record("m", "ecodiff", 0.2, status="failed")
    store.put(rec)
    assert not store.has_ok(rec["record_id"])
    rec2 = make_record("m", "ecodiff", 0.2, run_id="run-2")
    assert rec2["record_id"] == rec["record_id"]
    store.put(rec2)
    assert len(store) == 1
    got = store.get(rec["record_id"])
    assert got["status"] == "ok" and got["run_id"] == "run-2"
    assert store.has_ok(rec["record_id"])


def test_queries_exclude_smoke_unless_asked(store):
    full = make_record("m", "base", 0.0)
    smoke = make_record("m", "ecodiff", 0.5, smoke=True, run_id="smoke-run")
    store.put_many([full, smoke])
    assert [r["record_id"] for r in store.records()] == [full["record_id"]]
    assert store.records(run_id="smoke-run") == []
    assert {r["record_id"] for r in store.records(include_smoke=True)} == {
        full["record_id"],
        smoke["record_id"],
    }
    assert [r["record_id"] for r in store.records(smoke_only=True)] == [smoke["record_id"]]
    assert store.count_smoke() == 1


def test_filters(store):
    store.put(make_record("a", "base", 0.0, suite="s1", created_at="2025-01-01T00:00:01+00:00"))
    store.put(make_record("a", "ecodiff", 0.2, suite="s1", created_at="2025-01-01T00:00:02+00:00"))
    store.put(make_record("b", "base", 0.0, suite="s2", run_id="run-2", status="failed"))
    assert len(store.records(suite="s1")) == 2
    assert [r["method"] for r in store.records(model="a")] == ["base", "ecodiff"]  # oldest first
    assert len(store.records(status="failed")) == 1
    assert len(store.records(run_id="run-2")) == 1
    assert len(store.records(method="ecodiff")) == 1
    with pytest.raises(ValueError, match="status must be one of"):
        store.records(status="done")


def test_runs_history(store):
    store.put(make_record("a", "base", 0.0, run_id="r1", created_at="2025-01-01T00:00:00+00:00"))
    store.put(
        make_record("a", "ecodiff", 0.2, run_id="r1", status="failed", created_at="2025-01-01T00:01:00+00:00")
    )
    store.put(make_record("a", "base", 0.0, run_id="r2", smoke=True, created_at="2025-01-02T00:00:00+00:00"))
    runs = store.runs()
    assert [r["run_id"] for r in runs] == ["r2", "r1"]  # newest first
    r1 = runs[1]
    assert (r1["records"], r1["ok"], r1["failed"], r1["smoke"]) == (2, 1, 1, False)
    assert r1["methods"] == ["base", "ecodiff"] and r1["started"] < r1["finished"]
    assert runs[0]["smoke"] is True


def test_release_tags(store):
    a = make_record("a", "base", 0.0, run_id="r1")
    b = make_record("a", "ecodiff", 0.2, run_id="r1")
    c = make_record("a", "ecodiff", 0.4, run_id="r2")
    store.put_many([a, b, c])
    assert sorted(store.tag("v1", run_id="r1")) == sorted([a["record_id"], b["record_id"]])
    assert {r["record_id"] for r in store.tagged("v1")} == {a["record_id"], b["record_id"]}
    assert store.records(tag="v1", model="a", method="ecodiff")[0]["record_id"] == b["record_id"]
    with pytest.raises(StoreError, match="already exists"):
        store.tag("v1", [c["record_id"]])
    store.tag("v1", [c["record_id"]], replace=True)
    assert [r["record_id"] for r in store.tagged("v1")] == [c["record_id"]]
    with pytest.raises(StoreError, match="unknown record id"):
        store.tag("v2", ["missing"])
    with pytest.raises(StoreError, match="no records with run_id"):
        store.tag("v2", run_id="nope")
    with pytest.raises(StoreError, match="unknown release tag 'v9'"):
        store.records(tag="v9")
    assert store.tag_names() == ["v1"]
    assert store.tags()[0]["records"] == 1
    assert store.runs()[0]["tags"] == ["v1"] or store.runs()[1]["tags"] == ["v1"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("record_id"), "missing record_id"),
        (lambda r: r.update(status="done"), "record.status must be one of"),
        (lambda r: r.update(smoke="no"), "record.smoke"),
        (lambda r: r.update(status="failed", error=None), "no error"),
        (lambda r: r["metrics"].update(fid=value("clip_score", 1.0)), "key must equal the name"),
        (lambda r: r["metrics"]["fid"].update(value=None), "needs a number"),
        (lambda r: r["metrics"]["fid"].update(status="unavailable"), "must be None"),
        (
            lambda r: r["metrics"]["fid"]["details"].update(spread=float("nan")),
            r"record.metrics.fid.details.spread",
        ),
        (lambda r: r["settings"].update(guidance=float("inf")), r"record.settings.guidance"),
    ],
)
def test_invalid_records_are_refused_with_the_field_named(store, mutate, message):
    rec = make_record("a", "ecodiff", 0.2)
    mutate(rec)
    with pytest.raises(RecordError, match=message):
        store.put(rec)
    assert len(store) == 0


def test_missing_store_is_not_created_when_reading(tmp_path):
    with pytest.raises(StoreError, match="no results store at"):
        Store(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()


def _records_for_export():
    a = make_record("a", "base", 0.0)
    b = make_record("a", "ecodiff", 0.2)
    b["metrics"]["fid"] = value("fid", None, note="inception weights missing")
    b["artifacts"] = {"plan": "runs/plan.json"}
    b["settings"]["resolution"] = "512x512"  # mixed types in one column must still export
    return [a, b]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_flat_formats(store, tmp_path, fmt):
    store.put_many(_records_for_export())
    out = store.export(tmp_path / f"out.{fmt}")
    frame = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt](out)
    assert len(frame) == 2
    for col in (
        "record_id",
        "model",
        "method",
        "ratio",
        "smoke",
        "fid",
        "fid__unit",
        "fid__status",
        "energy_image_j",
        "energy_image_j__unit",
        "artifact.plan",
        "provenance.git.commit",
    ):
        assert col in frame.columns, col
    frame = frame.set_index("method")
    assert frame.loc["base", "fid"] == pytest.approx(20.0)
    assert frame.loc["base", "energy_image_j__unit"] == "J"
    assert frame.loc["ecodiff", "fid__status"] == "unavailable"
    assert pd.isna(frame.loc["ecodiff", "fid"])  # unavailable is empty, never 0
    assert frame.loc["ecodiff", "fid__note"] == "inception weights missing"


def test_export_jsonl_keeps_full_records_and_respects_filters(store, tmp_path):
    recs = _records_for_export()
    smoke = make_record("a", "random", 0.5, smoke=True)
    store.put_many(recs + [smoke])
    out = store.export(tmp_path / "all.jsonl")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["record_id"] for r in lines] == [r["record_id"] for r in store.records()]
    assert lines[0] == store.get(lines[0]["record_id"])
    out = store.export(tmp_path / "smoke.jsonl", include_smoke=True)
    assert len(out.read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="export format must be one of"):
        export_records(recs, tmp_path / "x.xlsx")
    assert not list(tmp_path.glob(".*.tmp"))


def test_flatten_record_columns():
    row = flatten_record(normalize_record(make_record("a", "ecodiff", 0.2)))
    assert row["latency_image_s__unit"] == "s" and row["latency_image_s__status"] == "measured"
    assert row["provenance.packages.torch"] == "2.4"


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


CHILD_MID_TRANSACTION = r"""
import json, sys, time
from pathlib import Path
from ecodiff_bench.core.record import normalize_record
from ecodiff_bench.core.store import Store
from reports.synthetic import make_record
db, marker = sys.argv[1], Path(sys.argv[2])
s = Store(db)
for i in range(5):
    s.put(make_record(f"m{i}", "ecodiff", 0.1 * i))
partial = normalize_record(make_record("doomed", "ecodiff", 0.9))
with s._write() as conn:
    conn.execute("INSERT INTO records (record_id, run_id, suite, model, method, smoke, status, created_at, "
                 "written_at, data) VALUES (?, 'r', 's', 'doomed', 'ecodiff', 0, 'ok', 'now', 'now', ?)",
                 (partial["record_id"], json.dumps(partial)[: 40]))
    marker.write_text("in transaction")
    time.sleep(600)
"""

CHILD_STREAM = r"""
import sys
from ecodiff_bench.core.store import Store
from reports.synthetic import make_record
s = Store(sys.argv[1])
i = 0
while True:
    rec = make_record(f"model-{i}", "ecodiff", 0.5, seed=i)
    rec["settings"]["blob"] = [i] * 20000
    s.put(rec)
    i += 1
"""


def _sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _reopen_intact(db: Path) -> Store:
    """Open the store a killed writer left behind; SQLite must find it intact."""
    s = Store(db)
    assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return s


def test_sigkill_inside_a_write_leaves_earlier_records_intact(tmp_path):
    db, marker = tmp_path / "crash.sqlite", tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_MID_TRANSACTION, str(db), str(marker)], env=_child_env()
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "child exited early"
            assert time.monotonic() < deadline, "child never reached the write"
            time.sleep(0.05)
    finally:
        _sigkill(proc)
    s = _reopen_intact(db)
    recs = s.records()
    assert sorted(r["model"] for r in recs) == [f"m{i}" for i in range(5)]
    assert all(r["metrics"]["fid"]["unit"] == "" for r in recs)
    s.close()


def test_sigkill_during_a_stream_of_writes_keeps_every_record_whole(tmp_path):
    db = tmp_path / "stream.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CHILD_STREAM, str(db)], env=_child_env())
    try:
        deadline = time.monotonic() + 60
        n = 0
        while n < 8:
            assert proc.poll() is None, "child exited early"
            assert time.monotonic() < deadline, "child wrote too slowly"
            time.sleep(0.05)
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as c:
                        n = c.execute("SELECT COUNT(*) FROM records").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
    finally:
        _sigkill(proc)
    s = _reopen_intact(db)
    recs = s.records()
    assert len(recs) >= 8
    for r in recs:
        i = r["seed"]
        assert r["model"] == f"model-{i}"
        assert r["settings"]["blob"] == [i] * 20000
    assert sorted(r["seed"] for r in recs) == list(range(len(recs)))
    s.close()
