"""time_indexes=False: a collection without the indexes on created_at and updated_at,
kept in the registry, honoured by check and repair, and still right for every read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import memstore

from .dbinfo import indexes, sql


def test_a_collection_can_go_without_time_indexes(store: memstore.Store) -> None:
    notes = store.collection("notes", time_indexes=False)
    assert indexes(store, "notes") == {"notes__expires_at_idx"}
    for i in range(5):
        notes.put(f"k{i}", {"n": i})
    assert [r["n"] for r in notes.query(order_by="-created_at", limit=2)] == [4, 3]
    assert notes.cleanup(keep_last=3) == 2 and notes.count() == 3
    assert store.check() == []  # the indexes it goes without are not missing
    store.repair()
    assert indexes(store, "notes") == {"notes__expires_at_idx"}
    again = store.collection("notes")  # left out: as declared
    assert again.count() == 3 and indexes(store, "notes") == {"notes__expires_at_idx"}
    store.collection("notes", time_indexes=True)  # and back
    assert indexes(store, "notes") == {
        "notes__created_at_idx",
        "notes__updated_at_idx",
        "notes__expires_at_idx",
    }
    assert store.check() == []


def test_the_choice_travels_with_an_export(store: memstore.Store, tmp_path: Path) -> None:
    store.collection("notes", time_indexes=False).put("a", {"x": 1})
    store.export(tmp_path / "out", plaintext=True)  # the fixture may be an encrypted file
    with memstore.Store(tmp_path / "copy.db") as copy:
        copy.import_(tmp_path / "out")
        assert indexes(copy, "notes") == {"notes__expires_at_idx"}
        assert copy["notes"].get("a") == {"x": 1} and copy.check() == []


def test_retention_by_age_still_works_without_them(store: memstore.Store) -> None:
    notes = store.collection("notes", time_indexes=False)
    notes.put("old", {"x": 1})
    sql(store, "UPDATE notes SET created_at = '2020-01-01T00:00:00.000000Z'")
    notes.put("new", {"x": 2})
    assert notes.cleanup(older_than=timedelta(days=30)) == 1
    assert notes.keys() == ["new"]


@pytest.mark.parametrize("bad", ["no", 1, 0.0])
def test_time_indexes_must_be_a_bool(store: memstore.Store, bad: object) -> None:
    with pytest.raises(memstore.ValidationError, match="time_indexes"):
        store.collection("notes", time_indexes=bad)  # type: ignore[arg-type]
    assert "notes" not in store
