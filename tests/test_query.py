"""query(where=...): operators, ordering, paging, streaming, and use of indexes."""

from __future__ import annotations

import json
from typing import Any

import pytest

import memstore

from .dbinfo import plan, sorts, sql, uses_index

RECORDS = [
    {
        "id": "e1",
        "event_type": "error",
        "agent_id": "a1",
        "timestamp": "2026-11-02",
        "duration": 3.0,
        "tags": ["tool", "retry"],
        "payload": {"status": 500, "msg": "timeout talking to tool"},
    },
    {
        "id": "e2",
        "event_type": "info",
        "agent_id": "a1",
        "timestamp": "2026-11-05",
        "duration": 0.5,
        "tags": ["plan"],
        "payload": {"status": 200, "msg": "ok"},
    },
    {
        "id": "e3",
        "event_type": "error",
        "agent_id": "a2",
        "timestamp": "2026-10-30",
        "duration": 9.0,
        "tags": [],
        "payload": {"status": 503},
    },
    {
        "id": "e4",
        "event_type": "warn",
        "agent_id": "a2",
        "timestamp": "2026-11-10",
        "duration": None,
    },
    {
        "id": "e5",
        "event_type": "error",
        "agent_id": "a3",
        "timestamp": "2026-11-11",
        "duration": 1.0,
        "flag": True,
    },
]


@pytest.fixture
def loaded(events: memstore.Collection) -> memstore.Collection:
    events.put_many(RECORDS, key="id")
    return events


def ids(records: list[Any]) -> list[str]:
    return [r["id"] for r in records]


def id_set(records: list[Any]) -> list[str]:
    return sorted(ids(records))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({}, ["e1", "e2", "e3", "e4", "e5"]),
        ({"event_type": "error"}, ["e1", "e3", "e5"]),
        ({"event_type": {"$eq": "error"}, "agent_id": "a1"}, ["e1"]),
        ({"event_type": {"$ne": "error"}}, ["e2", "e4"]),
        ({"timestamp": {"$gt": "2026-11-02"}}, ["e2", "e4", "e5"]),
        ({"timestamp": {"$gte": "2026-11-02", "$lt": "2026-11-10"}}, ["e1", "e2"]),
        ({"duration": {"$lte": 1.0}}, ["e2", "e5"]),
        ({"duration": None}, ["e4"]),
        ({"event_type": {"$in": ["warn", "info"]}}, ["e2", "e4"]),
        ({"event_type": {"$nin": ["warn", "info"]}}, ["e1", "e3", "e5"]),
        ({"payload.status": {"$gte": 500}}, ["e1", "e3"]),
        ({"payload.status": 200}, ["e2"]),
        ({"payload.msg": {"$exists": True}}, ["e1", "e2"]),
        ({"payload": {"$exists": False}}, ["e4", "e5"]),
        ({"duration": {"$exists": True}}, ["e1", "e2", "e3", "e4", "e5"]),  # null exists
        ({"tags": {"$contains": "retry"}}, ["e1"]),
        ({"payload.msg": {"$contains": "tool"}}, ["e1"]),
        ({"flag": True}, ["e5"]),
        ({"flag": {"$ne": True}}, ["e1", "e2", "e3", "e4"]),
        ({"tags.0": "plan"}, ["e2"]),
        ({"tags": {"$eq": ["plan"]}}, ["e2"]),
        ({"payload": {"status": 503}}, ["e3"]),
        ({"$or": [{"agent_id": "a3"}, {"event_type": "info"}]}, ["e2", "e5"]),
        ({"$and": [{"event_type": "error"}, {"duration": {"$gt": 2}}]}, ["e1", "e3"]),
        ({"$not": {"event_type": "error"}}, ["e2", "e4"]),
        ({"key": {"$in": ["e1", "e4"]}}, ["e1", "e4"]),
        ({"key": {"$contains": "3"}}, ["e3"]),
        ({"created_at": {"$exists": True}}, ["e1", "e2", "e3", "e4", "e5"]),
    ],
)
def test_where(loaded: memstore.Collection, where: dict[str, Any], expected: list[str]) -> None:
    assert id_set(loaded.query(where)) == expected
    assert loaded.count(where) == len(expected)
    assert sorted(loaded.keys(where)) == expected


def test_order_by_limit_offset(loaded: memstore.Collection) -> None:
    assert ids(loaded.query(order_by="-timestamp")) == ["e5", "e4", "e2", "e1", "e3"]
    assert ids(loaded.query(order_by=["event_type", "-duration"])) == ["e3", "e1", "e5", "e2", "e4"]
    assert ids(loaded.query(order_by="payload.status", limit=2)) == ["e4", "e5"]
    assert ids(loaded.query(order_by="timestamp", limit=2, offset=1)) == ["e1", "e2"]
    assert ids(loaded.query(order_by="timestamp", offset=3)) == ["e4", "e5"]
    assert ids(loaded.query(where={"event_type": "error"}, order_by="-created_at", limit=1)) == [
        "e5"
    ]


def test_rows_stream(events: memstore.Collection) -> None:
    events.put_many([(f"k{i:05}", {"i": i}) for i in range(3000)])
    stream = events.rows(order_by="key")
    first = next(stream)
    assert first.key == "k00000" and first.record == {"i": 0}
    events.put("zzz", {"i": -1})  # writing while a stream is open is fine
    assert sum(1 for _ in stream) in (2999, 3000)  # the new row may or may not be seen
    assert [r.record["i"] for r in events.rows(limit=3, order_by="-key")] == [-1, 2999, 2998]


@pytest.mark.parametrize(
    "where",
    [
        {"x": {"$regex": "a"}},
        {"$nor": []},
        {"x": {"$gt": None}},
        {"x": {"$in": "abc"}},
        {"x": {"$exists": "yes"}},
        {"x": {"$gt": {"a": 1}}},
        {"x": {"$eq": {1, 2}}},
        {"x": float("nan")},
        {"x": b"bytes"},
        {"": 1},
        {'a"b': 1},
        {"$or": []},
        {"$or": {"a": 1}},
        ["not", "a", "dict"],
        {"x": {"$contains": None}},
    ],
)
def test_bad_filters_raise_query_error(loaded: memstore.Collection, where: Any) -> None:
    with pytest.raises(memstore.QueryError):
        loaded.query(where)


@pytest.mark.parametrize(
    "options", [{"limit": -1}, {"offset": -5}, {"limit": "10"}, {"order_by": 5}]
)
def test_bad_paging_is_refused(loaded: memstore.Collection, options: dict[str, Any]) -> None:
    with pytest.raises((memstore.ValidationError, memstore.QueryError)):
        loaded.query(**options)


def test_odd_json_keys_can_be_queried(events: memstore.Collection) -> None:
    events.put("a", {"user-name": "x", "with space": {"é": 1}})
    assert events.keys({"user-name": "x"}) == ["a"]
    assert events.keys({"with space.é": 1}) == ["a"]


def query_plan(
    collection: memstore.Collection, where: dict[str, Any], order_by: str | None = None
) -> str:
    sql, params = collection._select("t.key", where, order_by, None, 0)
    return plan(collection.store, sql, params)


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ({"event_type": "error"}, "events__event_type_idx"),
        ({"event_type": {"$in": ["error", "warn"]}}, "events__event_type_idx"),
        ({"timestamp": {"$gt": "2026-11-01"}}, "events__timestamp_idx"),
        ({"duration": {"$gte": 1, "$lt": 5}}, "events__duration_idx"),
        ({"agent_id": "a1", "payload.status": 500}, "events__agent_id_idx"),
        ({"created_at": {"$lt": "2026-11-01"}}, "events__created_at_idx"),
    ],
)
def test_declared_fields_use_their_index(
    loaded: memstore.Collection, where: dict[str, Any], index: str
) -> None:
    found = query_plan(loaded, where)
    assert uses_index(found, index), found


def test_order_by_declared_field_uses_index(loaded: memstore.Collection) -> None:
    found = query_plan(loaded, {}, "-timestamp")
    assert uses_index(found, "events__timestamp_idx") and not sorts(found), found


def test_aggregate(loaded: memstore.Collection) -> None:
    groups = loaded.aggregate(group_by="event_type", of="duration")
    assert [g["event_type"] for g in groups] == ["error", "info", "warn"]
    error = groups[0]
    assert error["count"] == 3 and error["min"] == 1.0 and error["max"] == 9.0
    assert error["sum"] == 13.0 and error["median"] == 3.0
    assert error["p95"] == pytest.approx(3.0 + (9.0 - 3.0) * 0.9)
    warn = groups[2]
    assert warn["count"] == 1 and warn["median"] is None
    assert loaded.aggregate() == [{"count": 5}]
    assert loaded.aggregate(group_by=["agent_id", "event_type"], where={"event_type": "error"})[
        0
    ] == {"agent_id": "a1", "event_type": "error", "count": 1}
    assert loaded.aggregate(group_by="payload.status", where={"payload.status": {"$gt": 300}}) == [
        {"payload.status": 500, "count": 1},
        {"payload.status": 503, "count": 1},
    ]
    with pytest.raises(memstore.QueryError):
        loaded.aggregate(of="duration", percentiles=[101])


def test_count_leaves_out_the_expiry_test_only_when_nothing_expires(store: memstore.Store) -> None:
    notes = store.collection("notes", fields={"n": int})
    notes.put_many([(f"k{i}", {"n": i}) for i in range(10)])
    assert notes.count({"n": {"$gte": 5}}) == 5
    notes.put("old", {"n": 7}, ttl=60)
    sql(store, "UPDATE notes SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE key = 'old'")
    assert notes.count({"n": {"$gte": 5}}) == 5  # the expired one is not counted
    assert notes.count() == 10


def test_a_list_is_not_an_equality_value(loaded: memstore.Collection) -> None:
    with pytest.raises(memstore.QueryError, match=r"\$in"):
        loaded.query(where={"event_type": ["error", "info"]})
    with pytest.raises(memstore.QueryError, match=r"\$in"):
        loaded.count({"$or": [{"agent_id": ("a1", "a2")}]})
    # Said explicitly, an exact list is a value like any other.
    loaded.put("listy", {"tags": ["a", "b"]})
    assert loaded.keys(where={"tags": {"$eq": ["a", "b"]}}) == ["listy"]


def test_fields_no_record_has_are_warned_about(loaded: memstore.Collection) -> None:
    with pytest.warns(
        memstore.UnknownFieldWarning, match="'evnt_type'.*declared fields: event_type"
    ):
        assert loaded.query(where={"evnt_type": "error"}) == []
    with pytest.warns(memstore.UnknownFieldWarning, match="'nosuch'"):
        list(loaded.rows(order_by="-nosuch"))
    with pytest.warns(memstore.UnknownFieldWarning, match="'nosuch'"):
        loaded.keys(order_by=["event_type", "-nosuch"])
    with pytest.warns(memstore.UnknownFieldWarning):
        assert loaded.count({"$or": [{"typo": 1}, {"event_type": "nope"}]}) == 0
    with pytest.warns(memstore.UnknownFieldWarning):
        assert loaded.delete_where({"typo": 1}) == 0


def test_known_fields_and_empty_collections_give_no_warning(
    loaded: memstore.Collection, store: memstore.Store
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loaded.query(where={"event_type": "nope"}) == []  # declared
        assert loaded.keys(where={"created_at": {"$lt": "2000"}}) == []  # a meta column
        loaded.put("extra", {"rare": {"nested": 1}})
        assert loaded.count({"rare.nested": 2}) == 0  # some record has it
        loaded.query(order_by="rare.nested")
        empty = store.collection("empty")
        assert empty.query(where={"anything": 1}, order_by="whatever") == []  # nothing to know


def test_a_handle_may_turn_the_unknown_field_warning_off(loaded: memstore.Collection) -> None:
    import warnings

    loaded.warn_unknown_fields = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loaded.query(where={"typo": 1}, order_by="typo2") == []


def test_rows_sql_is_the_statement_rows_runs(store: memstore.Store) -> None:
    notes = store.collection("notes", fields={"kind": str})
    notes.put_many([(f"k{i}", {"kind": "todo" if i % 3 else "done", "n": i}) for i in range(20)])
    where = {"kind": "todo", "n": {"$gte": 4}}
    statement, params = notes.rows_sql(where, order_by="-n", limit=5, offset=1)
    found = sql(store, statement, params)
    expected = list(notes.rows(where, order_by="-n", limit=5, offset=1))
    assert [(key, json.loads(body)) for key, body, *_ in found] == [
        (row.key, row.record) for row in expected
    ]
    assert [tuple(r[2:]) for r in found] == [
        (row.created_at, row.updated_at, row.expires_at) for row in expected
    ]
