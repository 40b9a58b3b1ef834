"""Version history: opt-in per collection, every update and delete keeps the previous version."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import memstore

from .dbinfo import sql


def test_updates_and_deletes_keep_versions(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True, fts=["text"])
    notes.put("k", {"text": "first"})
    notes.put("k", {"text": "second"})
    notes.put("k", {"text": "second"})  # no change: no version
    notes.put("k", {"text": "third"})
    versions = notes.history("k")
    assert [v.record["text"] for v in versions] == ["first", "second", "third"]
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[-1].archived_at is None and versions[0].operation == "update"
    notes.delete("k")
    assert notes.history("k")[-1].operation == "delete"
    assert notes.revert("k", 1) == {"text": "first"}
    assert notes.get("k") == {"text": "first"}
    assert [v.record["text"] for v in notes.history("k")] == [
        "first",
        "second",
        "third",
        "first",
    ]
    assert [h.key for h in notes.search("first")] == ["k"]


def test_history_survives_reopen_and_other_tools(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.collection("notes", history=True).put("k", {"v": 1})
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE notes SET body = '{\"v\": 2}' WHERE key = 'k'")
    raw.close()
    with memstore.Store(db_path) as store:
        notes = store.collection("notes")
        assert notes.keeps_history
        assert [v.record for v in notes.history("k")] == [{"v": 1}, {"v": 2}]
        assert store.check() == []


def test_bulk_writes_keep_history(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True, fts=["t"])
    notes.put_many([(f"k{i}", {"t": "one"}) for i in range(200)])
    notes.put_many([(f"k{i}", {"t": "two"}) for i in range(200)])
    assert [v.record["t"] for v in notes.history("k7")] == ["one", "two"]
    assert notes.check() == []


def test_retention_follows_the_collection(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True)
    for i in range(5):
        notes.put(f"k{i}", {"v": 1})
        notes.put(f"k{i}", {"v": 2})
    notes.delete("k0")  # a user's delete: its history stays, to revert
    assert notes.cleanup(keep_last=2) == 2  # retention: the records and their versions go
    assert sorted(notes.keys()) == ["k3", "k4"]
    count = sql(store, "SELECT key, count(*) FROM memstore_versions GROUP BY key")
    assert dict(count) == {"k0": 2, "k3": 1, "k4": 1}
    sql(store, "UPDATE memstore_versions SET archived_at = '2000-01-01T00:00:00.000000Z'")
    notes.cleanup(older_than=timedelta(days=30))
    assert sql(store, "SELECT count(*) FROM memstore_versions") == [(0,)]


def test_history_is_opt_in(store: memstore.Store) -> None:
    plain = store.collection("plain")
    plain.put("k", {"v": 1})
    with pytest.raises(memstore.QueryError, match="history=True"):
        plain.history("k")
    notes = store.collection("plain", history=True)
    notes.put("k", {"v": 2})
    assert [v.record for v in notes.history("k")] == [{"v": 1}, {"v": 2}]
    store.collection("plain", history=False).put("k", {"v": 3})
    assert len(sql(store, "SELECT * FROM memstore_versions")) == 1
    with pytest.raises(memstore.ValidationError):
        store.collection("plain", history="yes")  # type: ignore[arg-type]


def test_revert_bad_versions(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True)
    notes.put("k", {"v": 1})
    for version in (0, 2, -1, "1"):
        with pytest.raises(memstore.NotFoundError):
            notes.revert("k", version)  # type: ignore[arg-type]
    with pytest.raises(memstore.NotFoundError):
        notes.history("never")
    assert [v.record for v in notes.history("k")] == [{"v": 1}]


def test_versions_end_when_the_next_begins(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True)
    for n in range(5):
        notes.put("k", {"n": n})
    versions = notes.history("k")
    for older, newer in itertools.pairwise(versions):
        assert older.valid_from <= older.archived_at  # never ends before it began
        assert older.archived_at == newer.valid_from  # one clock: the new version's updated_at
    notes.delete("k")
    deleted = notes.history("k")[-1]
    assert deleted.operation == "delete" and deleted.archived_at >= deleted.valid_from


def test_version_numbers_are_stable_after_retention(store: memstore.Store) -> None:
    notes = store.collection("notes", history=True)
    for n in range(1, 5):
        notes.put("k", {"n": n})  # versions 1, 2, 3 archived; 4 current
    sql(
        store,
        "UPDATE memstore_versions SET archived_at = '2000-01-01T00:00:00.000000Z' "
        "WHERE version <= 2",
    )
    notes.cleanup(older_than=timedelta(days=1))  # removes archived versions 1 and 2
    assert [(v.version, v.record["n"]) for v in notes.history("k")] == [(3, 3), (4, 4)]
    assert notes.revert("k", 3) == {"n": 3}
    with pytest.raises(memstore.NotFoundError, match="versions 3, 4, 5"):
        notes.revert("k", 1)  # gone: never another version under its number
    sql(store, "DELETE FROM memstore_versions")  # every archived version gone
    notes.put("k", {"n": 6})
    assert [v.version for v in notes.history("k")] == [5, 6]  # numbers are never reused


def test_other_tools_updates_move_updated_at(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.collection("notes").put("k", {"v": 1})
        before = next(store.collection("notes").rows()).updated_at
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE notes SET body = json_set(body, '$.v', 2) WHERE key = 'k'")
    raw.close()
    with memstore.Store(db_path) as store:
        row = next(store.collection("notes").rows())
        assert row.record == {"v": 2} and row.updated_at > before


def test_version_6_files_get_numbered_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_sql = tmp_path / "sql"
    old_sql.mkdir()
    for version, path in memstore._migrations():
        if version <= 6:
            (old_sql / path.name).write_text(path.read_text())
    db = tmp_path / "v6.db"
    conn = sqlite3.connect(db)
    conn.isolation_level = None
    for version, path in memstore._migrations():
        if version <= 6:
            conn.executescript(path.read_text())
    conn.execute(f"PRAGMA application_id = {memstore.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 6")
    # A collection with history as memstore 6 made it: the old triggers, two versions.
    conn.execute(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
        "body TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT '', "
        "updated_at TEXT NOT NULL DEFAULT '', expires_at TEXT)"
    )
    conn.execute("INSERT INTO _memstore_collections (name, history) VALUES ('notes', 1)")
    conn.execute(
        "INSERT INTO notes (key, body, updated_at) VALUES ('k', '{\"n\": 3}', "
        "'2026-01-03T00:00:00.000000Z')"
    )
    for n in (1, 2):
        conn.execute(
            "INSERT INTO memstore_versions (collection, key, body, valid_from, operation) "
            "VALUES ('notes', 'k', ?, '2026-01-01T00:00:00.000000Z', 'update')",
            (f'{{"n": {n}}}',),
        )
    conn.close()
    with memstore.Store(db) as store:
        assert store.schema_version == memstore.SCHEMA_VERSION
        notes = store.collection("notes")
        assert [(v.version, v.record["n"]) for v in notes.history("k")] == [(1, 1), (2, 2), (3, 3)]
        notes.put("k", {"n": 4})
        assert [v.version for v in notes.history("k")] == [1, 2, 3, 4]
        triggers = {
            r[0]
            for r in store.connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'notes'"
            )
        }
        assert triggers == {"notes__touch", "notes__history_update", "notes__history_delete"}
