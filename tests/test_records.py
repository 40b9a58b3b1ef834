"""Writing and reading records: put, add, put_many, get, delete, and refusing bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

import memstore


def test_put_get_delete(events: memstore.Collection) -> None:
    assert events.put("evt-1", {"event_type": "error", "n": [1, 2, {"x": None}]}) == "evt-1"
    assert events.get("evt-1") == {"event_type": "error", "n": [1, 2, {"x": None}]}
    assert "evt-1" in events
    assert events.delete("evt-1") is True
    assert events.delete("evt-1") is False
    assert "evt-1" not in events
    with pytest.raises(memstore.NotFoundError, match="evt-1"):
        events.get("evt-1")
    with pytest.raises(KeyError):  # NotFoundError is a KeyError too
        events.get("evt-1")
    assert events.get("evt-1", None) is None
    assert events.get("evt-1", {"d": 1}) == {"d": 1}


def test_put_replaces(events: memstore.Collection) -> None:
    events.put("k", {"a": 1, "b": 2})
    events.put("k", {"a": 3})
    assert events.get("k") == {"a": 3}
    assert events.count() == 1


def test_add_makes_time_sortable_unique_keys(events: memstore.Collection) -> None:
    keys = [events.add({"i": i}) for i in range(200)]
    assert len(set(keys)) == 200
    assert keys == sorted(keys)
    assert all(len(k) == 26 for k in keys)
    assert [r["i"] for r in events.query(order_by="key")] == list(range(200))


def test_put_many_forms(events: memstore.Collection) -> None:
    assert events.put_many([{"id": "a", "v": 1}, {"id": "b", "v": 2}], key="id") == 2
    assert events.put_many({"c": {"v": 3}}) == 1
    assert events.put_many([("d", {"v": 4})]) == 1
    assert (
        events.put_many(({"name": f"g{i}", "v": i} for i in range(3)), key=lambda r: r["name"]) == 3
    )
    assert events.get("a") == {"id": "a", "v": 1}
    assert sorted(events.keys()) == ["a", "b", "c", "d", "g0", "g1", "g2"]


def test_put_many_large_generator_and_duplicates(events: memstore.Collection) -> None:
    records = ({"id": f"k{i % 2500}", "summary": f"word{i}", "v": i} for i in range(5000))
    assert events.put_many(records, key="id") == 5000
    assert events.count() == 2500
    assert events.get("k7") == {"id": "k7", "summary": "word2507", "v": 2507}
    assert events.search("word7") == []
    assert [h.key for h in events.search("word2507")] == ["k7"]
    assert events.check() == []


@pytest.mark.parametrize(
    "value",
    [
        {"s": {1, 2}},
        {"b": b"bytes"},
        {"f": math.nan},
        {"f": math.inf},
        {"f": -math.inf},
        {"o": object()},
        {"bad": "\ud800"},
        ["not", "a", "dict"],
        "text",
        None,
    ],
    ids=["set", "bytes", "nan", "inf", "-inf", "object", "surrogate", "list", "str", "none"],
)
def test_values_json_cannot_represent_are_refused(events: memstore.Collection, value: Any) -> None:
    events.put("keep", {"v": 1})
    with pytest.raises(memstore.ValidationError):
        events.put("k", value)
    with pytest.raises(memstore.ValidationError):
        events.put_many([("ok", {"v": 2}), ("k", value)])
    assert events.keys() == ["keep"]


def test_circular_value_is_refused(events: memstore.Collection) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(memstore.ValidationError):
        events.put("k", loop)
    assert events.count() == 0


@pytest.mark.parametrize(
    "key", ["", "x" * (memstore.MAX_KEY_LENGTH + 1), 5, None, b"k", "a\x00b", "\udc80"]
)
def test_bad_keys_are_refused(events: memstore.Collection, key: Any) -> None:
    with pytest.raises(memstore.ValidationError):
        events.put(key, {"v": 1})
    with pytest.raises(memstore.ValidationError):
        events.put_many([{"id": "fine", "v": 0}, {"id": key, "v": 1}], key="id")
    with pytest.raises(memstore.ValidationError):
        events.get(key)
    assert events.count() == 0


def test_longest_key_and_unicode_keys_are_fine(events: memstore.Collection) -> None:
    for key in ["x" * memstore.MAX_KEY_LENGTH, "ключ", "🔑", "a b; DROP TABLE events --", "'\""]:
        events.put(key, {"k": key})
        assert events.get(key) == {"k": key}


@pytest.mark.sqlite_only("SQLite's page cache")
def test_put_many_works_with_a_larger_page_cache_and_gives_it_back(
    events: memstore.Collection,
) -> None:
    conn = events.store.connection
    before = conn.execute("PRAGMA cache_size").fetchall()
    seen = []

    def records() -> Iterator[dict[str, object]]:
        for i in range(3000):
            if i == 2500:  # in the middle of the load
                seen.append(conn.execute("PRAGMA cache_size").fetchall()[0][0])
            yield {"id": f"k{i}", "summary": f"word{i}"}

    assert events.put_many(records(), key="id") == 3000
    assert seen == [-memstore.BULK_CACHE_KIB]
    assert conn.execute("PRAGMA cache_size").fetchall() == before
    assert [h.key for h in events.search("word2999")] == ["k2999"]


def test_put_many_needs_keys(events: memstore.Collection) -> None:
    with pytest.raises(memstore.ValidationError, match="no 'id' field"):
        events.put_many([{"id": "a"}, {"other": 1}], key="id")
    with pytest.raises(memstore.ValidationError, match="pairs"):
        events.put_many([{"id": "a"}])
    assert events.count() == 0


def test_unicode_and_nesting_round_trip(events: memstore.Collection) -> None:
    record = {
        "text": "naïve café 東京 🚀",
        "deep": {"a": [{"b": [1.5, -2, True, None]}]},
        "": "empty key",
    }
    events.put("u", record)
    assert events.get("u") == record
