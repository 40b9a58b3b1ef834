"""Collections as tables: the registry, the row layout, declaring fields and FTS paths later."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import memstore

from .dbinfo import (
    columns,
    indexes,
    on_postgres,
    plan,
    requests,
    sorts,
    sql,
    tables,
    uses_index,
)

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def test_collection_is_its_own_table_with_generated_columns(events: memstore.Collection) -> None:
    cols = columns(events.store, "events")
    assert list(cols)[:6] == ["id", "key", "body", "created_at", "updated_at", "expires_at"]
    assert cols["event_type"] == "TEXT"
    assert cols["duration"] == "REAL"
    assert {"events__event_type_idx", "events__duration_idx", "events__created_at_idx"} <= indexes(
        events.store, "events"
    )
    if on_postgres(events.store):  # the words are a column, read from the JSON
        assert cols["fts_document"] == "TSVECTOR"
        assert "events__fts_idx" in indexes(events.store, "events")
        assert not {"summary", "text"} & set(cols)
    else:  # FTS5 indexes columns: the searched fields have theirs
        assert {"summary", "text"} <= set(cols)
        assert "events_fts" in tables(events.store)


def test_registry_remembers_declaration(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.collection("events", fields={"kind": str}, fts=["summary"], ttl=timedelta(hours=1))
    with memstore.Store(db_path) as store:
        events = store.collection("events")
        assert events.fields == {"kind": "text"}
        assert events.fts == ["summary"]
        assert events.ttl == timedelta(hours=1)
        events.put("a", {"kind": "x", "summary": "remembered declaration"})
        assert [h.key for h in events.search("remembered")] == ["a"]


def test_row_layout_timestamps(events: memstore.Collection) -> None:
    events.put("k", {"event_type": "a"})
    first = sql(
        events.store, "SELECT created_at, updated_at, expires_at FROM events WHERE key = 'k'"
    )[0]
    assert ISO.match(first[0]) and first[0] == first[1] and first[2] is None
    time.sleep(0.002)  # timestamps are to the millisecond
    events.put("k", {"event_type": "a"})  # unchanged: the row is left alone
    same = sql(events.store, "SELECT updated_at FROM events WHERE key = 'k'")[0]
    assert same[0] == first[1]
    events.put("k", {"event_type": "b"})
    second = sql(events.store, "SELECT created_at, updated_at FROM events WHERE key = 'k'")[0]
    assert second[0] == first[0]
    assert second[1] > first[1]
    row = next(events.rows({"key": "k"}))
    assert (row.key, row.record, row.created_at) == ("k", {"event_type": "b"}, first[0])


def test_body_must_be_a_json_object_even_from_raw_sql(events: memstore.Collection) -> None:
    for body in ["not json", "[1, 2]", '"text"']:
        # the CHECK refuses it, or before it an index on a generated column
        with pytest.raises(memstore.MemstoreError):
            sql(events.store, "INSERT INTO events (key, body) VALUES ('raw', ?)", (body,))
    assert sql(events.store, "SELECT count(*) FROM events") == [(0,)]


def test_declaring_fields_later_backfills_index(store: memstore.Store) -> None:
    notes = store.collection("notes")
    notes.put_many([(f"k{i}", {"topic": f"t{i % 3}", "n": i}) for i in range(30)])
    body_before = sql(store, "SELECT body FROM notes ORDER BY id")
    notes = store.collection("notes", fields={"topic": str})
    assert "notes__topic_idx" in indexes(store, "notes")
    assert sql(store, "SELECT body FROM notes ORDER BY id") == body_before
    assert notes.count({"topic": "t1"}) == 10
    assert uses_index(plan(store, "SELECT * FROM notes WHERE topic = 't1'"), "notes__topic_idx")


def test_declaring_fts_later_backfills_search(store: memstore.Store) -> None:
    notes = store.collection("notes", fts=["title"])
    notes.put("a", {"title": "apple pie", "content": "crust and filling"})
    notes = store.collection("notes", fts=["content"])
    assert notes.fts == ["title", "content"]
    assert [h.key for h in notes.search("crust")] == ["a"]
    assert [h.key for h in notes.search("apple")] == ["a"]
    assert store.check() == []


def test_fts_path_can_later_become_a_text_field(store: memstore.Store) -> None:
    """A searched field is text: it may become a declared text field, never another type,
    on both engines (on PostgreSQL, where the search reads the JSON, it has no column
    until it is declared)."""
    notes = store.collection("notes", fts=["title"])
    notes.put("a", {"title": "apple pie"})
    if on_postgres(store):
        assert "title" not in columns(store, "notes")
    with pytest.raises(memstore.SchemaError, match="indexed for search as text"):
        store.collection("notes", fields={"title": int})
    notes = store.collection("notes", fields={"title": str})
    assert "notes__title_idx" in indexes(store, "notes")
    assert notes.keys({"title": "apple pie"}) == ["a"]
    assert [h.key for h in notes.search("apple")] == ["a"]
    with pytest.raises(memstore.SchemaError):
        store.collection("notes", fields={"title": int})
    assert store.check() == []


def test_field_type_cannot_change(store: memstore.Store) -> None:
    store.collection("notes", fields={"n": int})
    with pytest.raises(memstore.SchemaError, match="declared integer"):
        store.collection("notes", fields={"n": str})


def test_declared_field_types_are_enforced(events: memstore.Collection) -> None:
    with pytest.raises(memstore.ValidationError, match="duration"):
        events.put("x", {"duration": "slow"})
    with pytest.raises(memstore.ValidationError, match="event_type"):
        events.put("x", {"event_type": 5})
    events.put("ok", {"duration": 3, "event_type": None})  # ints are fine for real, null for all
    assert events.count() == 1


def test_nested_field_paths(store: memstore.Store) -> None:
    logs = store.collection("logs", fields={"payload.user.id": str}, fts=["payload.text"])
    logs.put("a", {"payload": {"user": {"id": "u1"}, "text": "nested words"}})
    assert "payload__user__id" in columns(store, "logs")
    assert logs.keys({"payload.user.id": "u1"}) == ["a"]
    assert [h.key for h in logs.search("nested")] == ["a"]


HOSTILE = [
    "",
    "a b",
    'ev"ents',
    "ev'ents",
    "events; DROP TABLE x",
    "events--",
    "évents",
    "x" * 65,
    "_memstore_collections",
    "sqlite_master",
    "events_fts",
    "a__b",
    "1events",
    None,
    5,
    "events\u202e",
    "ev\x00ents",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_collection_names_are_refused(store: memstore.Store, name: object) -> None:
    with pytest.raises(memstore.ValidationError):
        store.collection(name)  # type: ignore[arg-type]
    assert store.collections() == []


@pytest.mark.parametrize(
    "field",
    [
        "",
        'a"b',
        "a;b",
        "a--b",
        "é",
        "key",
        "body",
        "created_at",
        "id",
        "a..b",
        ".a",
        "a__b",
        "rank",
        "_memstore_x",
    ],
)
def test_hostile_field_names_are_refused(store: memstore.Store, field: str) -> None:
    with pytest.raises(memstore.ValidationError):
        store.collection("notes", fields={field: str})
    with pytest.raises(memstore.ValidationError):
        store.collection("notes", fts=[field])
    assert "notes" not in store


@pytest.mark.parametrize("kind", [list, dict, bytes, "varchar", None])
def test_unknown_field_types_are_refused(store: memstore.Store, kind: object) -> None:
    with pytest.raises(memstore.ValidationError, match="type"):
        store.collection("notes", fields={"x": kind})  # type: ignore[dict-item]


def test_names_ignore_case(store: memstore.Store) -> None:
    store.collection("Notes")
    with pytest.raises(memstore.ValidationError, match="ignore case"):
        store.collection("notes")


def test_drop_collection(file_store: memstore.Store, db_path: Path) -> None:
    events = file_store.collection("events", fields={"k": str}, fts=["t"])
    events.put("a", {"t": "x"})
    file_store.drop_collection("events")
    assert file_store.collections() == []
    names = [r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_schema")]
    assert not [n for n in names if n.startswith("events")]
    with pytest.raises(memstore.NotFoundError):
        file_store.drop_collection("events")


def test_check_and_repair_restore_missing_index_and_fts(file_store: memstore.Store) -> None:
    events = file_store.collection("events", fields={"kind": str}, fts=["text"])
    events.put_many([(f"k{i}", {"kind": "a", "text": f"word{i}"}) for i in range(10)])
    conn = file_store.connection
    conn.execute('DROP INDEX "events__kind_idx"')
    conn.execute('DROP TRIGGER "events__fts_insert"')
    conn.execute("INSERT INTO events (key, body) VALUES ('raw', '{\"text\": \"sneaky\"}')")
    problems = file_store.check()
    assert any("events__kind_idx" in p for p in problems)
    assert any("events__fts_insert" in p for p in problems)
    done = file_store.repair()
    assert done
    assert file_store.check() == []
    assert [h.key for h in events.search("sneaky")] == ["raw"]


def test_stats_say_what_a_collection_holds(store: memstore.Store) -> None:
    notes = store.collection("notes", fields={"kind": str}, fts=["text"], ttl=60)
    assert notes.stats() == {
        "records": 0,
        "expired": 0,
        "oldest": None,
        "newest": None,
        "fields": {"kind": "text"},
        "fts": ["text"],
        "ttl_seconds": 60.0,
        "history": False,
        "indexes": [],
        "vectors": None,
    }
    notes.put("a", {"kind": "x"})
    notes.put("b", {"kind": "y"})
    sql(store, "UPDATE notes SET expires_at = '2000-01-01T00:00:00Z' WHERE key = 'b'")
    stats = notes.stats()
    assert (stats["records"], stats["expired"]) == (1, 1)
    assert stats["oldest"] <= stats["newest"]
    assert store.stats()["collections"]["notes"] == stats


def test_opening_a_collection_again_reads_its_declaration_only_when_it_changed(
    store_url: str,
) -> None:
    """store.collection(name), as a pool's user calls it for each call, asks the database
    nothing on PostgreSQL (SQLite: its file's data version) while no declaration changed,
    and takes another connection's declaration as soon as it is committed, with no read
    of its own in between (on PostgreSQL the announcement comes on the socket, shortly)."""
    with memstore.Store(store_url) as store, memstore.Store(store_url) as other:
        store.collection("notes", fields={"n": int})
        store.collection("notes")
        asked = requests(store, lambda: store.collection("notes"))
        assert asked == (0 if on_postgres(store) else 1)  # SQLite: PRAGMA data_version
        other.collection("notes", fields={"kind": str})
        deadline = time.monotonic() + 5
        while "kind" not in store.collection("notes").fields:
            assert time.monotonic() < deadline, "another connection's declaration unseen"
            time.sleep(0.005)
        with pytest.raises(memstore.ValidationError, match="'kind' must be text"):
            store.collection("notes").put("a", {"kind": 5})
        other.drop_collection("notes")
        with pytest.raises(memstore.NotFoundError):
            while time.monotonic() < deadline:
                store.collection("notes", create=False)
                time.sleep(0.005)


def declared_elsewhere(store: memstore.Store, other: memstore.Store, **declaration: Any) -> None:
    """``other`` declares; return once ``store`` has heard of it, with no read of its own:
    at once on SQLite (the file's version moved), on PostgreSQL when the server's notice
    of the commit has come on the socket, moments later."""
    before, deadline = store._data_version(), time.monotonic() + 5
    other.collection("notes", **declaration)
    while store._data_version() == before:
        assert time.monotonic() < deadline, "the declaration was never announced"
        time.sleep(0.001)


def test_a_handle_follows_declarations_made_elsewhere(store_url: str) -> None:
    """A handle takes another connection's declaration at its next write once its Store
    has heard of it (declared_elsewhere): inside a block too, deferred or not."""
    with memstore.Store(store_url) as store, memstore.Store(store_url) as other:
        old = store.collection("notes")
        store.collection("notes", fields={"n": int})  # another handle, same Store
        with pytest.raises(memstore.ValidationError, match="'n' must be integer"):
            old.put("a", {"n": "x"})
        assert old.fields == {"n": "integer"}
        declared_elsewhere(store, other, fields={"kind": str}, ttl=60)  # another connection
        with pytest.raises(memstore.ValidationError, match="'kind' must be text"):
            old.put("b", {"kind": 5})
        with pytest.raises(memstore.ValidationError):
            old.put_many([("c", {"kind": 5})])
        old.put("d", {"kind": "ok"})
        assert old.ttl is not None and old.ttl.total_seconds() == 60
        assert next(old.rows({"key": "d"})).expires_at is not None
        assert old.count() == 1
        # After this handle's own writes (which move SQLite's file version on too), and
        # in a deferred block, another connection's declaration is still seen.
        declared_elsewhere(store, other, fields={"kind": str, "size": int})
        with pytest.raises(memstore.ValidationError, match="'size' must be integer"):
            old.put("e", {"size": "big"})
        old.put("f", {"size": 1})
        declared_elsewhere(store, other, fields={"kind": str, "size": int, "tag": str})
        with (
            pytest.raises(memstore.ValidationError, match="'tag' must be text"),
            store.transaction(immediate=False),  # nothing read yet when the put begins
        ):
            old.put("g", {"tag": 1})
        old.put("h", {"tag": "x"})
        other.collection("notes", fields={"kind": str, "size": int, "tag": str, "n": int})
        with (
            store.transaction(),
            pytest.raises(memstore.ValidationError, match="'n' must be integer"),
        ):
            old.put("i", {"n": "x"})
        assert sorted(old.keys()) == ["d", "f", "h"]


def test_indexes_over_several_fields(store_url: str) -> None:
    with memstore.Store(store_url) as store:
        events = store.collection(
            "events",
            fields={"event_type": str, "timestamp": str, "agent": str},
            indexes=[("event_type", "-timestamp"), {"fields": ["agent", "key"], "unique": True}],
        )
        events.put_many(
            [
                (
                    f"e{i}",
                    {
                        "event_type": "error" if i % 2 else "info",
                        "timestamp": f"t{i:03}",
                        "agent": f"a{i}",
                    },
                )
                for i in range(200)
            ]
        )
        found_plan = plan(
            store, *events._select("t.key", {"event_type": "error"}, "-timestamp", 5, 0)
        )
        assert uses_index(found_plan, "events__index__event_type__timestamp_desc"), found_plan
        assert not sorts(found_plan), found_plan
        # A field an index over several fields starts with gets no index of its own.
        names = indexes(store, "events")
        assert "events__timestamp_idx" in names
        assert not names & {"events__event_type_idx", "events__agent_idx"}
        found = events.query({"event_type": "error"}, order_by="-timestamp", limit=3)
        assert [r["timestamp"] for r in found] == ["t199", "t197", "t195"]
        assert events.indexes == [
            {"fields": ["event_type", "-timestamp"], "unique": False},
            {"fields": ["agent", "key"], "unique": True},
        ]
    with memstore.Store(store_url) as store:  # remembered in the file, and unique
        events = store.collection("events")
        found_plan = plan(store, "SELECT key FROM events AS t WHERE t.agent = 'a1'")
        assert uses_index(found_plan, "events__unique__agent__key"), found_plan
        assert len(events.indexes) == 2 and events.stats()["indexes"] == events.indexes
        assert store.check() == []
        sql(store, 'DROP INDEX "events__index__event_type__timestamp_desc"')
        assert any("events__index__event_type__timestamp_desc" in p for p in store.check())
        store.repair()
        assert store.check() == []


@pytest.mark.parametrize(
    "indexes",
    [
        [("nope",)],  # not a declared field
        [("kind", "kind")],
        [()],
        ["kind; DROP TABLE x"],
        [{"fields": ["kind"], "unique": "yes"}],
        [{"fields": ["kind"], "other": 1}],
        "kind",
        [tuple("abcdefghi")],
    ],
)
def test_bad_indexes_are_refused(store: memstore.Store, indexes: object) -> None:
    with pytest.raises(memstore.ValidationError):
        store.collection("notes", fields={"kind": str}, indexes=indexes)  # type: ignore[arg-type]
    assert "notes" not in store


def test_a_unique_index_refuses_duplicates(store: memstore.Store) -> None:
    notes = store.collection("notes", fields={"email": str})
    notes.put("a", {"email": "x@y"})
    notes.put("b", {"email": "x@y"})
    with pytest.raises(memstore.ValidationError):
        store.collection("notes", indexes=[{"fields": ["email"], "unique": True}])
    assert notes.indexes == [] and store.collection("notes").indexes == []
    notes.delete("b")
    store.collection("notes", indexes=[{"fields": ["email"], "unique": True}])
    with pytest.raises(memstore.ValidationError):
        notes.put("c", {"email": "x@y"})
    assert sorted(notes.keys()) == ["a"]


def test_opening_only_an_existing_collection(store: memstore.Store) -> None:
    store.collection("notes", fields={"topic": str})
    assert store["notes"].fields == {"topic": "text"}
    assert store.collection("notes", create=False).name == "notes"
    with pytest.raises(
        memstore.NotFoundError, match="no collection named 'nosuhc'; there are notes"
    ):
        store["nosuhc"]
    with pytest.raises(memstore.NotFoundError, match="nosuhc"):
        store.collection("nosuhc", create=False)
    with pytest.raises(memstore.ValidationError):
        store.collection("notes", create="no")  # type: ignore[arg-type]
    assert store.collections() == ["notes"]


def test_put_many_takes_the_last_record_of_a_key_and_any_text(store: memstore.Store) -> None:
    """A key twice in one call: the last record wins, as one put after another (on
    PostgreSQL a batch is one statement, which cannot write a row twice); text with
    quotes, backslashes, newlines and any script comes back as it went in."""
    notes = store.collection("notes", fields={"n": int})
    text = "quote \" back\\slash\nnew line \t tab é 😀 \\u0041 'single'"
    count = notes.put_many(
        [("a", {"n": 1}), ("b", {"n": 2, "t": text}), ("a", {"n": 3}), ("c", {"n": 4, "t": [text]})]
    )
    assert count == 4
    assert notes.get("a") == {"n": 3} and len(notes) == 3
    assert notes.get("b") == {"n": 2, "t": text} and notes.get("c") == {"n": 4, "t": [text]}
    assert notes.keys(where={"n": {"$gte": 2}}, order_by="n") == ["b", "a", "c"]
