"""Hostile input at every door: a memstore error, never a raw one, and nothing stored changes.

Each case is a call that once escaped as a Python or driver error (OverflowError,
RecursionError, UnicodeEncodeError, TypeError, apsw's own), or stored something
wrong. The store holds a little of every layer; its fingerprint (every row of
every table) must be the same after the refused call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memstore

BIG = 2**64
HUGE = 10**400


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[memstore.Store]:
    with memstore.Store(tmp_path / "hostile.db") as store:
        notes = store.collection("notes", fields={"n": int, "kind": str}, fts=["text"])
        notes.put("a", {"n": 1, "kind": "x", "text": "alpha beta"})
        notes.put("b", {"n": 2, "kind": "y", "text": "gamma"})
        store.event_log("log").append({"id": "e1", "kind": "start"})
        conv = store.conversations()
        conv.create_thread("t", user_id="u")
        conv.add_message("t", "user", "hello")
        store.checkpoints().save("t", {"step": 1})
        g = store.graph("g")
        g.add_node("x", "thing")
        g.add_node("y", "thing")
        store.cache("c").set("k", 1)
        mem = store.collection("mem", fts=["text"], vectors={"dim": 3, "model": "m"})
        mem.put("v", {"text": "a vector"}, vector=[1.0, 0.0, 0.0])
        yield store


def fingerprint(store: memstore.Store) -> str:
    digest = hashlib.sha256()
    tables = [
        r[0]
        for r in store.connection.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '%fts%' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    for table in tables:
        for row in store.connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
            digest.update(repr((table, row)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def nested(operator: str, depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"n": 1}
    for _ in range(depth):
        where = {operator: [where] if operator != "$not" else where}
    return where


CASES: dict[str, Callable[[memstore.Store], Any]] = {
    # durations beyond what a timestamp can hold
    "collection ttl 1e30": lambda s: s.collection("notes", ttl=1e30),
    "collection ttl 10**400": lambda s: s.collection("fresh", ttl=HUGE),
    "put ttl 10**12": lambda s: s.collection("notes").put("z", {}, ttl=10**12),
    "cache ttl": lambda s: s.cache("c").set("k2", 1, ttl=10**12),
    "cache default ttl": lambda s: s.cache("c2", ttl=1e30),
    "collection cleanup": lambda s: s.collection("notes").cleanup(older_than=10**12),
    "log cleanup": lambda s: s.event_log("log").cleanup(older_than=1e300),
    "conversation cleanup": lambda s: s.conversations().cleanup(older_than=10**12),
    "checkpoint cleanup": lambda s: s.checkpoints().cleanup("t", older_than=10**12),
    "store cleanup": lambda s: s.cleanup(older_than=HUGE),
    "nan ttl": lambda s: s.collection("notes").put("z", {}, ttl=float("nan")),
    # integers beyond 64 bits
    "where value": lambda s: s.collection("notes").query({"n": BIG}),
    "where $gt": lambda s: s.collection("notes").query({"n": {"$gt": -BIG}}),
    "where $in": lambda s: s.collection("notes").query({"n": {"$in": [1, BIG]}}),
    "limit": lambda s: s.collection("notes").query(limit=BIG),
    "offset": lambda s: s.collection("notes").query(offset=BIG),
    "since": lambda s: s.event_log("log").read(since=BIG),
    "tail": lambda s: s.event_log("log").tail(BIG),
    "depth": lambda s: s.graph("g").neighbors("x", depth=BIG),
    "keep_last": lambda s: s.collection("notes").cleanup(keep_last=BIG),
    "tokens": lambda s: s.conversations().add_message(
        "t", "assistant", "x", usage={"input_tokens": BIG}
    ),
    "token total": lambda s: s.conversations().add_message(
        "t", "assistant", "x", usage={"input_tokens": 2**62, "output_tokens": 2**62}
    ),
    "cost": lambda s: s.conversations().add_message("t", "assistant", "x", usage={"cost": HUGE}),
    "weight": lambda s: s.graph("g").add_edge("x", "y", "r", weight=HUGE),
    "put a big int": lambda s: s.collection("notes").put("z", {"n": BIG}),
    # filters too deep or too large
    "500 nested $and": lambda s: s.collection("notes").query(nested("$and", 500)),
    "500 nested $or": lambda s: s.collection("notes").query(nested("$or", 500)),
    "500 nested $not": lambda s: s.collection("notes").query(nested("$not", 500)),
    "100k $or": lambda s: s.collection("notes").count({"$or": [{"n": i} for i in range(100_000)]}),
    "deep checkpoint find": lambda s: s.checkpoints().find("t", where=nested("$and", 100)),
    # timestamps at the ends of the calendar
    "event at 9999 -14:00": lambda s: s.event_log("log").append(
        {"kind": "k", "at": "9999-12-31T23:59:59-14:00"}
    ),
    "event at 0001 +14:00": lambda s: s.event_log("log").append(
        {"kind": "k", "at": "0001-01-01T00:00:00+14:00"}
    ),
    "threads created_after": lambda s: s.conversations().threads(
        created_after="9999-12-31T23:59:59-14:00"
    ),
    "history before": lambda s: s.checkpoints().history("t", before="0001-01-01T00:00:00+14:00"),
    # lone surrogates
    "checkpoint state surrogate": lambda s: s.checkpoints().save("t", {"a": "\ud800"}),
    "big checkpoint surrogate": lambda s: s.checkpoints().save("t", {"a": "\ud800" * 70_000}),
    "cache value surrogate": lambda s: s.cache("c").set("k", "\udfff"),
    "record surrogate": lambda s: s.collection("notes").put("z", {"text": "\ud800"}),
    "key surrogate": lambda s: s.collection("notes").put("\ud800", {}),
    "memoize surrogate": lambda s: s.cache("c").memoize()(lambda x: x)("\ud800"),
    # ids and fields of the wrong type
    "checkpoint get tuple": lambda s: s.checkpoints().get(("t",)),  # type: ignore[arg-type]
    "checkpoint find int field": lambda s: s.checkpoints().find("t", where={1: 2}),  # type: ignore[dict-item]
    "neighbors tuple": lambda s: s.graph("g").neighbors(("t",)),  # type: ignore[arg-type]
    "threads user tuple": lambda s: s.conversations().threads(user_id=("t",)),  # type: ignore[arg-type]
    "event get list": lambda s: s.event_log("log").get(["e1"]),  # type: ignore[arg-type]
    "profile name bytes": lambda s: s.graph("g").profile(b"x"),  # type: ignore[arg-type]
    # keys that collide once they are JSON
    "null and None": lambda s: s.collection("notes").put("z", {"null": 5, None: "text"}),
    "true and True": lambda s: s.collection("notes").put("z", {"true": 1, True: 2}),
    "int key": lambda s: s.collection("notes").put("z", {"kind": "x", "sub": {1: "a"}}),
    "nested tuple key": lambda s: s.collection("notes").put("z", {"a": [{(1, 2): 3}]}),
    "state int key": lambda s: s.checkpoints().save("t", {1: "a", "1": "b"}),
    "cache int key": lambda s: s.cache("c").set("k", {None: 1}),
    "message json key": lambda s: s.conversations().add_message("t", "tool", {False: 1}),
    # names SQLite keeps for itself
    "collection sqlite": lambda s: s.collection("sqlite"),
    "collection SQLite_x": lambda s: s.collection("SQLite_x"),
    "collection sqlitefoo": lambda s: s.collection("sqlitefoo"),
    # vectors that are not vectors of the collection
    "vector 10**400": lambda s: s.collection("mem").put("v", {}, vector=[HUGE, 0, 0]),
    "vector nan": lambda s: s.collection("mem").put("v", {}, vector=[float("nan"), 0, 0]),
    "vector float32 overflow": lambda s: s.collection("mem").put("v", {}, vector=[1e39, 0, 0]),
    "vector wrong dim": lambda s: s.collection("mem").put("v", {}, vector=[1.0] * 4),
    "vector matrix": lambda s: s.collection("mem").put("v", {}, vector=[[1.0] * 3]),
    "vector text": lambda s: s.collection("mem").put("v", {}, vector="1 2 3"),
    "vector part int": lambda s: s.collection("mem").put("v", {}, vector={1: [1.0] * 3}),
    "vector part surrogate": lambda s: s.collection("mem").put(
        "v", {}, vector={"\ud800": [1.0] * 3}
    ),
    "vectors too few": lambda s: s.collection("mem").put_many(
        [("w", {}), ("x", {})], vectors=[[1.0] * 3]
    ),
    "nearest k 2**64": lambda s: s.collection("mem").nearest([1.0] * 3, k=BIG),
    "nearest query huge": lambda s: s.collection("mem").nearest([HUGE, 0, 0]),
    "nearest deep where": lambda s: s.collection("mem").nearest(
        [1.0] * 3, where=nested("$or", 500)
    ),
    "nearest other model": lambda s: s.collection("mem").nearest([1.0] * 3, model="other"),
    "hybrid long text": lambda s: s.collection("mem").hybrid("x " * 3000, vector=[1.0] * 3),
    "hybrid recency 10**400": lambda s: s.collection("mem").hybrid(
        "a", vector=[1.0] * 3, recency=HUGE
    ),
    "hybrid importance 5": lambda s: s.collection("mem").hybrid(
        "a",
        vector=[1.0] * 3,
        importance=5,  # type: ignore[arg-type]
    ),
    "re_embed nan": lambda s: s.collection("mem").re_embed(lambda t: [[float("nan")] * 3] * len(t)),
    "re_embed too few": lambda s: s.collection("mem").re_embed(lambda t: []),
    "re_embed dim 0": lambda s: s.collection("mem").re_embed(lambda t: t, model="n", dim=0),
    "vectors dim 2**64": lambda s: s.collection("fresh", vectors={"dim": BIG, "model": "m"}),
    "vectors model int": lambda s: s.collection("fresh", vectors={"dim": 3, "model": 3}),
    "vectors other model": lambda s: s.collection("mem", vectors={"dim": 3, "model": "n"}),
    # full-text queries too long to run
    "long search": lambda s: s.collection("notes").search("alpha " * 2000),
    "long message search": lambda s: s.conversations().search("x" * 5000),
    "long event search": lambda s: s.event_log("log").search("y" * 5000),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_a_memstore_error_and_changes_nothing(
    full_store: memstore.Store, name: str
) -> None:
    before = fingerprint(full_store)
    with pytest.raises(memstore.MemstoreError) as caught:
        CASES[name](full_store)
    assert str(caught.value)
    assert fingerprint(full_store) == before
    assert full_store.check() == []


#: The cases of the layers a PostgreSQL store has (README, "PostgreSQL"), run there too.
ON_POSTGRES = [
    *("collection ttl 1e30", "collection ttl 10**400", "put ttl 10**12", "cache ttl"),
    *("cache default ttl", "collection cleanup", "log cleanup", "store cleanup", "nan ttl"),
    *("where value", "where $gt", "where $in", "limit", "offset", "since", "tail"),
    *("keep_last", "put a big int", "500 nested $and", "500 nested $or", "500 nested $not"),
    *("100k $or", "event at 9999 -14:00", "event at 0001 +14:00", "cache value surrogate"),
    *("record surrogate", "key surrogate", "memoize surrogate", "event get list"),
    *("null and None", "true and True", "int key", "nested tuple key", "cache int key"),
    *("collection sqlite", "collection SQLite_x", "collection sqlitefoo", "long search"),
    "long event search",
    *("conversation cleanup", "tokens", "token total", "cost", "threads created_after"),
    *("threads user tuple", "message json key", "long message search"),
    *("depth", "weight", "neighbors tuple", "profile name bytes"),
    *("vector 10**400", "vector nan", "vector float32 overflow", "vector wrong dim"),
    *("vector matrix", "vector text", "vector part int", "vector part surrogate"),
    *("vectors too few", "nearest k 2**64", "nearest query huge", "nearest deep where"),
    *("nearest other model", "hybrid long text", "hybrid recency 10**400"),
    *("hybrid importance 5", "re_embed nan", "re_embed too few", "re_embed dim 0"),
    *("vectors dim 2**64", "vectors model int", "vectors other model"),
]


@pytest.fixture
def pg_full_store(pg_url: str) -> Iterator[memstore.Store]:
    """full_store's layers that PostgreSQL has, on a PostgreSQL database."""
    with memstore.Store(pg_url) as store:
        notes = store.collection("notes", fields={"n": int, "kind": str}, fts=["text"])
        notes.put("a", {"n": 1, "kind": "x", "text": "alpha beta"})
        notes.put("b", {"n": 2, "kind": "y", "text": "gamma"})
        kept = store.collection("kept", history=True)
        kept.put("k", {"v": 1})
        kept.put("k", {"v": 2})
        store.event_log("log").append({"id": "e1", "kind": "start"})
        store.cache("c").set("k", 1)
        conv = store.conversations()
        conv.create_thread("t", user_id="u")
        conv.add_message("t", "user", "hello")
        g = store.graph("g")
        g.add_node("x", "thing")
        g.add_node("y", "thing")
        mem = store.collection("mem", fts=["text"], vectors={"dim": 3, "model": "m"})
        mem.put("v", {"text": "a vector"}, vector=[1.0, 0.0, 0.0])
        yield store


def pg_fingerprint(store: memstore.Store) -> str:
    digest = hashlib.sha256()
    tables = store._fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        "current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    for (table,) in tables:
        for row in store._fetch(f'SELECT t::text FROM "{table}" AS t ORDER BY 1'):
            digest.update(repr((table, row)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@pytest.mark.parametrize("name", ON_POSTGRES)
def test_hostile_input_on_postgresql_too(pg_full_store: memstore.Store, name: str) -> None:
    before = pg_fingerprint(pg_full_store)
    with pytest.raises(memstore.MemstoreError) as caught:
        CASES[name](pg_full_store)
    assert str(caught.value) and not isinstance(caught.value, memstore.UnsupportedError)
    assert pg_fingerprint(pg_full_store) == before
    assert pg_full_store.check() == []


@pytest.mark.parametrize("operator", ["$and", "$or", "$not"])
def test_filter_limits_are_stated(full_store: memstore.Store, operator: str) -> None:
    notes = full_store.collection("notes")
    with pytest.raises(memstore.QueryError, match="32 deep at most"):
        notes.query(nested(operator, 33))
    assert notes.query(nested(operator, 31)) is not None  # within the limit: runs
    with pytest.raises(memstore.QueryError, match="500 conditions at most"):
        notes.count({"$or": [{"n": i} for i in range(501)]})
    assert notes.count({"$or": [{"n": i} for i in range(400)]}) == 2
    assert notes.count({"n": {"$in": list(range(100_000))}}) == 2  # $in is not bounded


def test_a_slow_search_is_stopped(tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db", query_timeout=0.001) as store:
        notes = store.collection("notes", fts=["text"])
        notes.put_many([(str(i), {"text": f"word{i} alpha beta"}) for i in range(3000)])
        terms = " OR ".join(f"word{i}*" for i in range(1, 340))  # every row, ranked: ~0.1 s
        started = time.monotonic()
        with pytest.raises(memstore.QueryError, match=r"took longer than 0\.001 s"):
            notes.search(terms, limit=3000)
        assert time.monotonic() - started < 2
        assert [h.key for h in notes.search("word7")] == ["7"]  # the connection works on
    with pytest.raises(memstore.ValidationError):
        memstore.Store(":memory:", query_timeout=0)


def test_filters_match_the_same_records_declared_or_not(tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db") as store:
        plain = store.collection("plain")
        typed = store.collection("typed", fields={"priority": int, "label": str, "score": float})
        for c in (plain, typed):
            c.put("one", {"priority": 1, "label": "1", "score": 1.0})
            c.put("two", {"priority": 2, "label": "2", "score": 2.5})
        filters = [
            {"priority": "1"},
            {"priority": 1},
            {"priority": 1.0},
            {"label": 1},
            {"label": "1"},
            {"score": "1"},
            {"score": 1},
            {"priority": {"$gte": "1"}},
            {"priority": {"$lt": "2"}},
            {"priority": {"$in": ["1", "2"]}},
            {"priority": {"$nin": ["1"]}},
            {"label": {"$lt": 2}},
            {"label": {"$in": [1, 2]}},
            {"priority": {"$ne": "1"}},
        ]
        for where in filters:
            assert sorted(plain.keys(where)) == sorted(typed.keys(where)), where
        assert typed.keys({"priority": "1"}) == []  # "1" is not 1, declared or not


def test_a_lone_surrogate_in_a_big_state_is_refused_before_compressing(
    full_store: memstore.Store,
) -> None:
    with pytest.raises(memstore.ValidationError, match="surrogate"):
        full_store.checkpoints().save("t", {"a": "x" * 70_000 + "\ud800"})
