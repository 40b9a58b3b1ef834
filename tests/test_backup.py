"""Backups taken while another process writes, and restores."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memstore

from .conftest import PYTHONPATH, memstore_cli

WRITER = """
import sys, time, memstore
store = memstore.Store(sys.argv[1])
notes = store.collection("notes")
i = 0
while True:
    notes.put(f"w{i:06d}", {"i": i, "text": "written while backing up " * 20})
    i += 1
    if i % 50 == 0:
        print(i, flush=True)
"""


@pytest.fixture
def busy_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = tmp_path / "live.db"
    with memstore.Store(db) as store:
        store.collection("notes", fts=["text"]).put_many(
            [(f"seed{i}", {"text": f"seed {i}"}) for i in range(2000)]
        )
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    writer.stdout.readline()  # it is writing
    yield db
    writer.kill()
    writer.wait()


def committed_keys(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    keys = {r[0] for r in conn.execute("SELECT key FROM notes")}
    conn.close()
    return keys


@pytest.mark.parametrize("compact", [False, True])
def test_backup_while_another_process_writes(
    busy_store: Path, tmp_path: Path, compact: bool
) -> None:
    before = committed_keys(busy_store)  # every row committed before the backup starts
    dest = tmp_path / f"backup-{compact}.db"
    args = ["backup", str(dest), "--json", *(["--compact"] if compact else [])]
    result = memstore_cli(*args, db=busy_store)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(dest)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert before <= committed_keys(dest)
    with memstore.Store(dest) as copy:
        assert copy.check(full=True) == []
        assert len(copy.collection("notes").search("seed", limit=5000)) == 2000


def test_backup_refuses_an_existing_destination(tmp_path: Path) -> None:
    db, dest = tmp_path / "a.db", tmp_path / "b.db"
    memstore.Store(db).close()
    dest.write_text("precious")
    result = memstore_cli("backup", str(dest), db=db)
    assert result.returncode == 1 and "exists" in result.stderr
    assert dest.read_text() == "precious"


def test_restore_round_trip(tmp_path: Path) -> None:
    db, saved = tmp_path / "a.db", tmp_path / "saved.db"
    with memstore.Store(db) as store:
        store.collection("notes", fts=["t"]).put("keep", {"t": "before the backup"})
        store.conversations().create_thread("t1")
        store.backup(saved)
        store.collection("notes").put("later", {"t": "after the backup"})
        store.collection("notes").delete("keep")
    reader = memstore.Store(db)  # another connection stays open through the restore
    result = memstore_cli("restore", str(saved), "--json", db=db)
    assert result.returncode == 0, result.stderr
    assert reader.collection("notes").keys() == ["keep"]
    assert [h.key for h in reader.collection("notes").search("before")] == ["keep"]
    assert reader.check() == []
    reader.close()


@pytest.mark.parametrize("bad", ["garbage", "not-memstore", "missing"])
def test_restore_refuses_a_bad_source(tmp_path: Path, bad: str) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("notes").put("keep", {"v": 1})
    source = tmp_path / "source.db"
    if bad == "garbage":
        source.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    elif bad == "not-memstore":
        sqlite3.connect(source).execute("CREATE TABLE x (y)").connection.commit()
    with memstore.Store(db) as store:
        with pytest.raises(memstore.MemstoreError):
            store.restore(source)
        assert store.collection("notes").get("keep") == {"v": 1}
    if bad != "missing":
        assert memstore_cli("restore", str(source), db=db).returncode in (1, 2)


def test_quota_error_keeps_data_and_other_tenants(tmp_path: Path) -> None:
    tenants = memstore.Tenants(tmp_path / "tenants", max_size=1024 * 1024)
    small = tenants.open("small")
    small.collection("notes").put("kept", {"text": "safe"})
    other = tenants.open("other")
    blob = "x" * 50_000
    with pytest.raises(memstore.QuotaError):
        for i in range(100):
            small.collection("notes").put(f"n{i}", {"text": blob})
    with pytest.raises(memstore.QuotaError), small.transaction():
        small.collection("notes").put_many([(f"bulk{i}", {"text": blob}) for i in range(50)])
    assert isinstance(memstore.QuotaError("x"), memstore.StorageFullError)
    assert small.collection("notes").get("kept") == {"text": "safe"}
    assert small.check(full=True) == []
    count = small.collection("notes").count()
    small.collection("notes").delete("n0")
    assert small.collection("notes").count() == count - 1  # still writable below the quota
    other.collection("notes").put_many([(f"o{i}", {"text": blob}) for i in range(10)])
    assert other.collection("notes").count() == 10
    tenants.close()


def test_backup_of_a_big_store_keeps_going_under_load(busy_store: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with memstore.Store(busy_store) as store:
        store.backup(tmp_path / "b.db")
    assert time.monotonic() - started < 60


def test_backup_reports_progress_to_the_end(busy_store: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with memstore.Store(busy_store) as store:
        store.backup(tmp_path / "p.db", progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2  # in chunks, while another process writes
    assert seen[-1][0] == seen[-1][1] > 0


def test_quota_counts_the_wal_and_refuses_a_quota_too_small(tmp_path: Path) -> None:
    with pytest.raises(memstore.ValidationError, match="at least 1,048,576"):
        memstore.Store(tmp_path / "tiny.db", max_size=200_000)
    path = tmp_path / "quota.db"
    with memstore.Store(path, max_size=2**20) as store:
        notes = store.collection("notes")
        with pytest.raises(memstore.QuotaError):
            for i in range(500):
                notes.put(f"n{i}", {"text": "x" * 4000})
        wal = Path(f"{path}-wal")
        on_disk = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        assert on_disk <= 1.5 * 2**20, on_disk  # the WAL does not grow past the quota
        assert store.check() == []


def test_a_backup_path_that_starts_like_a_uri_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with memstore.Store("agent.db") as store:
        store.collection("notes").put("a", {"n": 1})
        for compact in (False, True):
            name = f"file:copy{int(compact)}.db?mode=ro"
            store.backup(name, compact=compact)
            assert (tmp_path / name).is_file()
    with memstore.Store("file:copy1.db?mode=ro") as copy:
        assert copy.collection("notes").get("a") == {"n": 1}
