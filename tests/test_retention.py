"""Retention: TTLs, age, keep-last-N, store-wide cleanup in batches."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import memstore

from .dbinfo import sql, triggers


def age(collection: memstore.Collection, key: str, column: str, stamp: str) -> None:
    sql(
        collection.store, f'UPDATE "{collection.name}" SET {column} = ? WHERE key = ?', (stamp, key)
    )


def test_expired_records_are_invisible_then_cleaned(store: memstore.Store) -> None:
    cache = store.collection("cache", ttl=timedelta(hours=1), fts=["text"])
    cache.put("fresh", {"text": "hello fresh"})
    cache.put("stale", {"text": "hello stale"})
    cache.put("forever", {"text": "hello forever"}, ttl=timedelta(days=3650))
    age(cache, "stale", "expires_at", "2000-01-01T00:00:00.000000Z")
    assert "stale" not in cache
    assert cache.get("stale", "gone") == "gone"
    assert cache.count() == 2 and len(cache) == 2
    assert sorted(cache.keys()) == ["forever", "fresh"]
    assert {h.key for h in cache.search("hello")} == {"forever", "fresh"}
    assert cache.cleanup() == 1
    assert sql(store, "SELECT count(*) FROM cache") == [(2,)]
    assert cache.check() == []


def test_default_ttl_and_per_record_ttl(store: memstore.Store) -> None:
    notes = store.collection("notes", ttl=60)
    notes.put("a", {})
    notes.put("b", {}, ttl=timedelta(days=1))
    a, b = (next(notes.rows({"key": k})).expires_at for k in ("a", "b"))
    assert a is not None and b is not None and a < b
    notes.set_ttl(None)
    notes.put("c", {})
    assert next(notes.rows({"key": "c"})).expires_at is None
    assert store.collection("notes").ttl is None


@pytest.mark.parametrize("ttl", [0, -5, timedelta(seconds=-1), float("nan"), "1 hour", True])
def test_bad_ttl_is_refused(store: memstore.Store, ttl: object) -> None:
    notes = store.collection("notes")
    with pytest.raises(memstore.ValidationError):
        notes.put("a", {}, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(memstore.ValidationError):
        store.collection("other", ttl=ttl)  # type: ignore[arg-type]
    assert notes.count() == 0 and "other" not in store


def test_cleanup_by_age(store: memstore.Store) -> None:
    notes = store.collection("notes")
    for key in "abcd":
        notes.put(key, {"k": key})
    age(notes, "a", "created_at", "2020-01-01T00:00:00.000000Z")
    age(notes, "b", "updated_at", "2020-01-01T00:00:00.000000Z")
    assert notes.cleanup(older_than=timedelta(days=7)) == 1
    assert "a" not in notes
    assert notes.cleanup(older_than=timedelta(days=7), by="updated") == 1
    assert sorted(notes.keys()) == ["c", "d"]


def test_keep_last(store: memstore.Store) -> None:
    log = store.collection("log", fts=["msg"])
    for i in range(150):
        log.put(f"k{i:03}", {"msg": f"message {i}"})
    assert log.cleanup(keep_last=100, batch_size=7) == 50
    assert sorted(log.keys()) == [f"k{i:03}" for i in range(50, 150)]
    assert log.cleanup(keep_last=100) == 0
    assert log.cleanup(keep_last=0) == 100
    assert log.count() == 0 and log.check() == []


def test_cleanup_large_batches_keep_fts_in_step(store: memstore.Store) -> None:
    log = store.collection("log", fts=["msg"])
    log.put_many([(f"k{i:04}", {"msg": f"message {i}"}) for i in range(2500)])
    assert log.cleanup(keep_last=10, batch_size=1000) == 2490
    assert log.check() == []
    assert len(log.search("message", limit=100)) == 10


def test_store_cleanup_covers_all_collections(store: memstore.Store) -> None:
    a = store.collection("a", ttl=1)
    b = store.collection("b")
    a.put("x", {})
    b.put("y", {}, ttl=1)
    b.put("z", {})
    for collection, key in ((a, "x"), (b, "y")):
        age(collection, key, "expires_at", "2000-01-01T00:00:00.000000Z")
    assert store.cleanup() == {"collection a": 1, "collection b": 0 + 1}
    assert store.cleanup(keep_last=0) == {
        "collection a": 0,
        "collection b": 1,
        "checkpoints": 0,
    }


def test_store_cleanup_covers_every_layer(store: memstore.Store) -> None:
    notes = store.collection("notes")
    notes.put_many([(f"n{i}", {"i": i}) for i in range(5)])
    log = store.event_log("agent")
    for i in range(6):
        log.append({"kind": "tick", "at": f"2020-01-0{i + 1}T00:00:00Z"})
    conv = store.conversations()
    conv.create_thread("old")
    conv.add_message("old", "user", "hello")
    store.connection.execute("UPDATE memstore_threads SET last_message_at = '2020-01-01'")
    conv.create_thread("new")
    cp = store.checkpoints()
    for step in range(4):
        cp.save("t1", {"step": step})
    cache = store.cache("llm")
    cache.set("a", 1, ttl=1)
    store.connection.execute("UPDATE memstore_cache SET expires_at = '2000-01-01T00:00:00Z'")
    graph = store.graph("g")
    for kind in ("person", "robot", "person"):  # two replaced versions of the node
        graph.add_node("ada", kind)
    store.connection.execute(  # one of them replaced long ago
        "UPDATE memstore_node_versions SET known_to = '2020-01-01' WHERE kind = 'person'"
    )
    calls: list[tuple[int, int]] = []
    # Old events go, but the newest two always stay; young notes and checkpoints stay.
    everything = {
        "collection notes": 0,
        "event log agent": 4,
        "conversations": 1,
        "checkpoints": 0,
        "graph history": 1,
        "cache llm": 1,
    }
    dry = store.cleanup(older_than=timedelta(days=365), keep_last=2, dry_run=True)
    assert dry == everything
    assert notes.count() == 5 and len(log) == 6 and len(cp.history("t1")) == 4
    assert [t.id for t in conv.threads(order_by="id")] == ["new", "old"]
    assert (
        store.cleanup(
            older_than=timedelta(days=365), keep_last=2, progress=lambda *a: calls.append(a)
        )
        == everything
    )
    assert calls == [(n, 6) for n in range(1, 7)]
    assert notes.count() == 5 and len(log) == 2 and len(cp.history("t1")) == 4
    assert store.cleanup(keep_last=2)["collection notes"] == 3
    assert [t.id for t in conv.threads()] == ["new"] and cache.get("a") is None
    assert store.check() == []


def test_dry_run_inside_a_transaction_keeps_the_outer_writes(file_store: memstore.Store) -> None:
    notes = file_store.collection("notes", ttl=1)
    notes.put("a", {})
    age(notes, "a", "expires_at", "2000-01-01T00:00:00.000000Z")
    with file_store.transaction():
        notes.put("b", {})
        assert file_store.cleanup(dry_run=True) == {"collection notes": 1}
    assert sorted(notes.keys()) == ["b"]  # "a" is expired, not removed
    assert notes.expired_count() == 1


@pytest.mark.parametrize(
    "options",
    [{"by": "touched"}, {"keep_last": -1}, {"older_than": "old"}, {"older_than": -5}],
)
def test_bad_store_cleanup_options_change_nothing(
    store: memstore.Store, options: dict[str, object]
) -> None:
    store.collection("notes").put("a", {})
    with pytest.raises(memstore.ValidationError):
        store.cleanup(**options)  # type: ignore[arg-type]
    assert store.collection("notes").count() == 1


@pytest.mark.parametrize(
    "options", [{"by": "touched"}, {"keep_last": -1}, {"older_than": "old"}, {"batch_size": 0}]
)
def test_bad_cleanup_options(store: memstore.Store, options: dict[str, object]) -> None:
    with pytest.raises(memstore.ValidationError):
        store.collection("notes").cleanup(**options)  # type: ignore[arg-type]


def test_older_than_with_keep_last_always_keeps_the_last(store: memstore.Store) -> None:
    """ "Older than X, but always keep the last N", in every layer that has both."""
    cp = store.checkpoints()
    for step in range(5):
        cp.save("t", {"step": step})
    sql(store, "UPDATE memstore_checkpoints SET created_at = '2020-01-01'")
    assert cp.cleanup("t", keep_last=3, older_than=timedelta(days=1)) == 2
    assert [c.state["step"] for c in cp.history("t")] == [4, 3, 2]
    notes = store.collection("notes")
    notes.put_many([(f"n{i}", {"i": i}) for i in range(5)])
    age(notes, "n0", "created_at", "2020-01-01T00:00:00.000000Z")
    assert notes.cleanup(keep_last=3, older_than=timedelta(days=1)) == 1  # only n0 is old
    assert notes.cleanup(keep_last=10, older_than=timedelta(days=1)) == 0
    log = store.event_log("l")
    for day in range(1, 6):
        log.append({"kind": "k", "at": f"2020-01-0{day}T00:00:00Z"})
    log.append({"kind": "k"})  # today
    assert log.cleanup(keep_last=3, older_than=timedelta(days=1)) == 3
    assert [e.seq for e in log.read()] == [4, 5, 6]


def test_other_tools_inserts_get_the_default_ttl(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.collection("short", ttl=timedelta(hours=1), fts=["text"])
        store.collection("plain")
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("INSERT INTO short (key, body) VALUES ('theirs', '{\"text\": \"hi\"}')")
        raw.execute(
            "INSERT INTO short (key, body, expires_at) "
            "VALUES ('kept', '{}', '2999-01-01T00:00:00Z')"
        )
        raw.execute("INSERT INTO plain (key, body) VALUES ('theirs', '{}')")
    raw.close()
    with memstore.Store(db_path) as store:
        short = store.collection("short")
        row = next(short.rows({"key": "theirs"}))
        created = datetime.fromisoformat(row.created_at)
        assert datetime.fromisoformat(row.expires_at) - created == timedelta(hours=1)
        assert next(short.rows({"key": "kept"})).expires_at == "2999-01-01T00:00:00Z"
        assert next(store.collection("plain").rows()).expires_at is None
        short.put_many([(f"bulk{i}", {"text": "x"}) for i in range(200)])  # the bulk path
        assert short.count({"expires_at": {"$exists": True}}) == 202  # every row
        assert store.check() == []
        short.set_ttl(None)  # no default TTL: no trigger
        assert "short__ttl" not in triggers(store, "short") and store.check() == []
        short.set_ttl(60)
        assert store.check() == [] and "short__ttl" in triggers(store, "short")


def test_large_deletes_leave_the_schema_alone(db_path: Path) -> None:
    """Every schema change makes each other connection (Datasette's too) prepare its
    statements again: deletes keep the FTS index in step by its triggers instead."""
    with memstore.Store(db_path) as store:
        notes = store.collection("notes", fields={"n": int}, fts=["text"])
        notes.put_many({f"k{i}": {"n": i, "text": f"word{i % 7} shared"} for i in range(3000)})
        conn = store.connection
        conn.execute("UPDATE notes SET created_at = '2000-01-01T00:00:00.000000Z' WHERE id <= 2500")
        before = conn.execute("PRAGMA schema_version").fetchall()
        assert notes.cleanup(older_than=timedelta(days=1), batch_size=1000) == 2500
        assert notes.delete_where({"n": {"$gte": 2900}}) == 100
        assert conn.execute("PRAGMA schema_version").fetchall() == before
        assert len(notes.search("shared", limit=1000)) == 400 and store.check() == []


def test_keep_last_counts_live_records_only(store: memstore.Store) -> None:
    notes = store.collection("notes")
    notes.put_many([(f"k{i:03d}", {"i": i}) for i in range(210)])
    # The newest record is already expired: it is not one of the 200 kept.
    age(notes, "k209", "expires_at", "2000-01-01T00:00:00.000000Z")
    notes.cleanup(keep_last=200)
    assert notes.count() == 200
    assert notes.keys(order_by="key")[0] == "k009" and "k208" in notes


def test_durations_are_the_same_strings_everywhere(store: memstore.Store) -> None:
    notes = store.collection("notes", ttl="7d")
    assert notes.ttl == timedelta(days=7)
    notes.set_ttl("12h")
    assert notes.ttl == timedelta(hours=12)
    notes.put("a", {}, ttl="90s")
    row = next(notes.rows())
    assert row.expires_at is not None
    stamps = [
        datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (row.created_at, row.expires_at)
    ]
    assert stamps[1] - stamps[0] == timedelta(seconds=90)
    assert notes.cleanup(older_than="2w") == 0
    assert store.cleanup(older_than="1.5h", dry_run=True) is not None
    store.cache("c").set("k", 1, ttl="15m")
    assert memstore.parse_duration("2w") == timedelta(weeks=2)


@pytest.mark.parametrize("text", ["7", "7 days", "0s", "-1d", "d7", "99999999d", "", "7y"])
def test_bad_duration_strings_are_refused(store: memstore.Store, text: str) -> None:
    with pytest.raises(memstore.ValidationError, match=r"duration|at most|more than 0"):
        store.collection("notes", ttl=text)
    assert "notes" not in store


def test_touch_gives_live_records_a_new_expiry(store: memstore.Store) -> None:
    notes = store.collection("notes", ttl="1h", history=True)
    notes.put("a", {"n": 1})
    notes.put("b", {"n": 2})
    notes.put("gone", {"n": 3})
    age(notes, "gone", "expires_at", "2000-01-01T00:00:00.000000Z")
    before = {r.key: r for r in notes.rows(order_by="key")}
    assert notes.touch(["a", "gone", "missing"], ttl="7d") == 1
    after = {r.key: r for r in notes.rows(order_by="key")}
    assert after["a"].expires_at is not None and after["a"].expires_at > before["a"].expires_at
    assert after["a"].updated_at == before["a"].updated_at and notes.history("a") == notes.history(
        "a"
    )
    assert len(notes.history("a")) == 1  # no version archived
    assert after["b"] == before["b"] and "gone" not in notes
    assert notes.touch(["b"]) == 1  # the collection's own TTL
    with pytest.raises(memstore.ValidationError):
        notes.touch("a")  # a string is not a list of keys
