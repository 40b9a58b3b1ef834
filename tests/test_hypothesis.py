"""Property tests: put/get round-trips, and query(where) agrees with the same filter in Python."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
records = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
keys = st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k)

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def mem() -> memstore.Store:
    return memstore.Store(":memory:")


@SETTINGS
@given(key=keys, record=records)
def test_put_get_round_trip(mem: memstore.Store, key: str, record: dict[str, Any]) -> None:
    notes = mem.collection("notes", fts=["text"])
    notes.put(key, record)
    assert notes.get(key) == record
    assert notes.rows({"key": key}).__next__().record == record


@SETTINGS
@given(batch=st.dictionaries(keys, records, max_size=80))
def test_put_many_round_trip(mem: memstore.Store, batch: dict[str, dict[str, Any]]) -> None:
    notes = mem.collection("notes", fts=["text"])
    notes.delete_where({})
    notes.put_many(batch)
    assert {row.key: row.record for row in notes.rows()} == batch
    assert notes.check() == []


# Records with a declared field "n" (integer), an undeclared "s" (text) and "tags" (list),
# each sometimes missing or null: SQL and Python must agree on all of them.
maybe = lambda s: st.none() | s  # noqa: E731
small_records = st.fixed_dictionaries(
    {},
    optional={
        "n": maybe(st.integers(-5, 5)),
        "s": maybe(st.sampled_from(["a", "b", "ab", "c"])),
        "tags": st.lists(st.sampled_from(["x", "y", "z"]), max_size=3),
    },
)

ints = st.integers(-5, 5)
texts = st.sampled_from(["a", "b", "ab", "c"])


COMPARISONS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]


def condition(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A bare value, null, or one operator applied to values of the field's type."""
    return (
        values
        | st.none()
        | st.builds(lambda op, v: {op: v}, st.sampled_from(COMPARISONS), values)
        | st.builds(
            lambda op, vs: {op: vs}, st.sampled_from(["$in", "$nin"]), st.lists(values, max_size=3)
        )
        | st.builds(lambda b: {"$exists": b}, st.booleans())
    )


filters = st.fixed_dictionaries(
    {},
    optional={
        "n": condition(ints),
        "s": condition(texts) | st.builds(lambda v: {"$contains": v}, texts),
        "tags": st.builds(lambda v: {"$contains": v}, st.sampled_from(["x", "y", "z"])),
    },
)

MISSING = object()


def matches(record: dict[str, Any], where: dict[str, Any]) -> bool:
    """The reference semantics, in plain Python."""
    for field, cond in where.items():
        value = record.get(field, MISSING)
        present = value is not MISSING
        value = None if value is MISSING else value
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, arg in ops.items():
            if op == "$eq":
                ok = value == arg if value is not None and arg is not None else value is arg
            elif op == "$ne":
                ok = not (value == arg if value is not None and arg is not None else value is arg)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                ok = (
                    value is not None
                    and {
                        "$gt": value > arg,
                        "$gte": value >= arg,
                        "$lt": value < arg,
                        "$lte": value <= arg,
                    }[op]
                )
            elif op == "$in":
                ok = value is not None and value in [a for a in arg if a is not None]
            elif op == "$nin":
                ok = value is None or value not in arg
            elif op == "$exists":
                ok = present == arg
            elif op == "$contains":
                ok = (isinstance(value, list) and arg in value) or (
                    isinstance(value, str) and arg in value
                )
            else:  # pragma: no cover
                raise AssertionError(op)
            if not ok:
                return False
    return True


@SETTINGS
@given(data=st.lists(small_records, max_size=25), where=filters)
@pytest.mark.filterwarnings("ignore::memstore.UnknownFieldWarning")  # random fields, on purpose
def test_query_agrees_with_python(
    mem: memstore.Store, data: list[dict[str, Any]], where: dict[str, Any]
) -> None:
    items = mem.collection("items", fields={"n": int})
    items.delete_where({})
    items.put_many([(f"k{i:03}", r) for i, r in enumerate(data)])
    expected = [f"k{i:03}" for i, r in enumerate(data) if matches(r, where)]
    assert sorted(items.keys(where)) == expected
    assert items.count(where) == len(expected)


@SETTINGS
@given(data=st.lists(small_records, max_size=25))
def test_order_by_agrees_with_python(mem: memstore.Store, data: list[dict[str, Any]]) -> None:
    items = mem.collection("items", fields={"n": int})
    items.delete_where({})
    items.put_many([(f"k{i:03}", r) for i, r in enumerate(data)])

    # SQLite sorts NULL (and missing) first, then by value; ties by insertion order.
    def sort_key(i_r: tuple[int, dict[str, Any]]) -> tuple[bool, float, int]:
        i, r = i_r
        n = r.get("n")
        return (n is not None, -math.inf if n is None else n, i)

    expected = [f"k{i:03}" for i, _ in sorted(enumerate(data), key=sort_key)]
    assert items.keys(order_by="n") == expected
