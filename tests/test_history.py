"""Version history: opt-in per collection, every update and delete keeps the previous version."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import memstore


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
    count = store.connection.execute(
        "SELECT key, count(*) FROM memstore_versions GROUP BY key"
    ).fetchall()
    assert dict(count) == {"k0": 2, "k3": 1, "k4": 1}
    store.connection.execute(
        "UPDATE memstore_versions SET archived_at = '2000-01-01T00:00:00.000000Z'"
    )
    notes.cleanup(older_than=timedelta(days=30))
    assert store.connection.execute("SELECT count(*) FROM memstore_versions").fetchall() == [(0,)]


def test_history_is_opt_in(store: memstore.Store) -> None:
    plain = store.collection("plain")
    plain.put("k", {"v": 1})
    with pytest.raises(memstore.QueryError, match="history=True"):
        plain.history("k")
    notes = store.collection("plain", history=True)
    notes.put("k", {"v": 2})
    assert [v.record for v in notes.history("k")] == [{"v": 1}, {"v": 2}]
    store.collection("plain", history=False).put("k", {"v": 3})
    assert len(store.connection.execute("SELECT * FROM memstore_versions").fetchall()) == 1
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
