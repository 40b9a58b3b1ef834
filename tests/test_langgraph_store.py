"""MemstoreStore: LangGraph's BaseStore on a memstore collection, checked against LangGraph's own
InMemoryStore and through a real graph."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.graph import START, StateGraph
from langgraph.store.base import BaseStore, GetOp, InvalidNamespaceError, PutOp
from langgraph.store.memory import InMemoryStore
from typing_extensions import TypedDict

import memstore
from memstore_langgraph import MemstoreStore

from .dbinfo import on_postgres, requests


@pytest.fixture(params=["memory", "file", "postgres"])
def lgstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemstoreStore]:
    if request.param == "postgres":  # a fresh database, from the suite's own server
        path = str(request.getfixturevalue("pg_url"))
    else:
        path = ":memory:" if request.param == "memory" else str(tmp_path / "agent.db")
    with MemstoreStore(path) as opened:
        yield opened


def test_put_get_delete(lgstore: MemstoreStore) -> None:
    lgstore.put(("users", "alice"), "prefs", {"food": "pizza"})
    first = lgstore.get(("users", "alice"), "prefs")
    assert first is not None and first.value == {"food": "pizza"}
    assert first.namespace == ("users", "alice") and first.key == "prefs"
    time.sleep(0.01)
    lgstore.put(("users", "alice"), "prefs", {"food": "sushi"})
    second = lgstore.get(("users", "alice"), "prefs")
    assert second is not None and second.value == {"food": "sushi"}
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert second.created_at.tzinfo is not None
    assert lgstore.get(("users", "alice"), "nope") is None
    lgstore.delete(("users", "alice"), "prefs")
    assert lgstore.get(("users", "alice"), "prefs") is None
    lgstore.delete(("users", "alice"), "prefs")  # twice is fine


def test_keys_and_labels_of_any_text_stay_apart(lgstore: MemstoreStore) -> None:
    lgstore.put(("a/b",), "c", {"n": 1})
    lgstore.put(("a",), "b/c", {"n": 2})
    lgstore.put(("a", "b"), "c", {"n": 3})
    lgstore.put(("ünï", "💾"), '"quoted" key', {"n": 4})
    assert lgstore.get(("a/b",), "c").value == {"n": 1}  # type: ignore[union-attr]
    assert lgstore.get(("a",), "b/c").value == {"n": 2}  # type: ignore[union-attr]
    assert lgstore.get(("a", "b"), "c").value == {"n": 3}  # type: ignore[union-attr]
    assert lgstore.get(("ünï", "💾"), '"quoted" key').value == {"n": 4}  # type: ignore[union-attr]


def test_namespace_prefixes_match_whole_labels(lgstore: MemstoreStore) -> None:
    for ns in [("users",), ("users", "alice"), ("users", "alice", "notes"), ("usersx",), ("user",)]:
        lgstore.put(ns, "k", {"ns": list(ns)})
    found = {item.namespace for item in lgstore.search(("users",), limit=100)}
    assert found == {("users",), ("users", "alice"), ("users", "alice", "notes")}
    assert {i.namespace for i in lgstore.search(("users", "alice"))} == {
        ("users", "alice"),
        ("users", "alice", "notes"),
    }
    assert len(lgstore.search((), limit=100)) == 5
    # A leaf (nothing below it) is read by equality, in the index's order; labels that
    # only start alike ("alice-x", "alice+") stay out either way.
    for ns in [("users", "alice-x"), ("users", "alice+"), ("users", "bob")]:
        lgstore.put(ns, "k", {"ns": list(ns)})
    assert {i.namespace for i in lgstore.search(("users", "bob"))} == {("users", "bob")}
    assert {i.namespace for i in lgstore.search(("users", "alice"))} == {
        ("users", "alice"),
        ("users", "alice", "notes"),
    }
    lgstore.delete(("users", "alice", "notes"), "k")  # alice is a leaf now
    assert {i.namespace for i in lgstore.search(("users", "alice"))} == {("users", "alice")}


def test_filters_with_operators_and_dotted_keys(lgstore: MemstoreStore) -> None:
    lgstore.put(("docs",), "a", {"stars": 5, "meta": {"lang": "en", "tags": ["x"]}, "ok": True})
    lgstore.put(("docs",), "b", {"stars": 3, "meta": {"lang": "fr", "tags": []}, "ok": False})
    lgstore.put(("docs",), "c", {"stars": 4, "meta": {"lang": "en"}, "ok": None})

    def keys(**kwargs: Any) -> set[str]:
        return {i.key for i in lgstore.search(("docs",), **kwargs)}

    assert keys(filter={"stars": {"$gt": 3}}) == {"a", "c"}
    assert keys(filter={"stars": {"$gte": 3, "$lt": 5}}) == {"b", "c"}
    assert keys(filter={"stars": {"$lte": 3}}) == {"b"}
    assert keys(filter={"stars": {"$ne": 5}}) == {"b", "c"}
    assert keys(filter={"stars": {"$eq": 4}}) == {"c"}
    assert keys(filter={"meta.lang": "en"}) == {"a", "c"}
    assert keys(filter={"meta": {"lang": "fr"}}) == {"b"}  # a nested partial match
    assert keys(filter={"meta.tags": ["x"]}) == {"a"}
    assert keys(filter={"ok": True}) == {"a"}
    assert keys(filter={"ok": None}) == {"c"}
    assert keys(filter={"meta.lang": "en", "stars": {"$lt": 5}}) == {"c"}
    assert keys(filter={"missing": 1}) == set()
    with pytest.raises(memstore.QueryError):
        lgstore.search(("docs",), filter={"stars": {"$regex": "5"}})


def test_search_order_limit_offset(lgstore: MemstoreStore) -> None:
    for i in range(30):
        lgstore.put(("log",), f"k{i:02d}", {"i": i})
        time.sleep(0.002)
    newest = lgstore.search(("log",), limit=5)
    assert [i.key for i in newest] == ["k29", "k28", "k27", "k26", "k25"]
    assert [i.key for i in lgstore.search(("log",), limit=3, offset=5)] == ["k24", "k23", "k22"]
    assert all(i.score is None for i in newest)
    with pytest.raises(memstore.ValidationError):
        lgstore.search(("log",), limit=-1)


def test_query_ranks_by_full_text_search(lgstore: MemstoreStore) -> None:
    lgstore.put(("mem",), "1", {"text": "Alice likes pizza and pasta"})
    lgstore.put(("mem",), "2", {"text": "Bob prefers sushi"})
    lgstore.put(("mem",), "3", {"text": "pizza pizza pizza, every day"})
    lgstore.put(("other",), "4", {"text": "pizza elsewhere"})
    hits = lgstore.search(("mem",), query="what's with pizza?")  # punctuation is not syntax
    assert [h.key for h in hits] == ["3", "1"]
    assert hits[0].score is not None and hits[1].score is not None
    assert hits[0].score > hits[1].score
    assert lgstore.search(("mem",), query="?!") == []
    assert {h.key for h in lgstore.search(("mem",), query="sushi OR pizza")} == {"1", "2", "3"}


def test_list_namespaces(lgstore: MemstoreStore) -> None:
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("f", "b", "c"), ("g",)]:
        lgstore.put(ns, "k", {})
    assert lgstore.list_namespaces() == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "e"),
        ("f", "b", "c"),
        ("g",),
    ]
    assert lgstore.list_namespaces(prefix=("a",)) == [("a", "b", "c"), ("a", "b", "d"), ("a", "e")]
    assert lgstore.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("f", "b", "c")]
    assert lgstore.list_namespaces(prefix=("*", "b")) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("f", "b", "c"),
    ]
    assert lgstore.list_namespaces(max_depth=1) == [("a",), ("f",), ("g",)]
    assert lgstore.list_namespaces(prefix=("a",), max_depth=2) == [("a", "b"), ("a", "e")]
    assert lgstore.list_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "e")]


def test_ttl_expiry_refresh_and_sweeper(tmp_path: Path) -> None:
    ttl_minutes = 1.5 / 60  # 1.5 seconds
    with MemstoreStore(tmp_path / "a.db", ttl={"default_ttl": ttl_minutes}) as lgstore:
        lgstore.put(("t",), "refreshed", {"n": 1})
        lgstore.put(("t",), "left", {"n": 2})
        lgstore.put(("t",), "forever", {"n": 3}, ttl=None)
        for _ in range(3):
            time.sleep(0.6)
            assert lgstore.get(("t",), "refreshed") is not None  # each read pushes expiry back
        assert lgstore.get(("t",), "left", refresh_ttl=False) is None  # expired: never returned
        assert {i.key for i in lgstore.search(("t",))} == {"refreshed", "forever"}
        assert lgstore.items.count() == 2
        assert lgstore.items.expired_count() == 1
        lgstore.start_ttl_sweeper(sweep_interval_minutes=0.2 / 60)
        deadline = time.monotonic() + 10
        while lgstore.items.expired_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lgstore.stop_ttl_sweeper(timeout=5)
        with sqlite3.connect(tmp_path / "a.db") as conn:
            keys = {k for (k,) in conn.execute("SELECT key FROM langgraph_store")}
        assert keys == {'["t", "refreshed"]', '["t", "forever"]'}
    with pytest.raises(memstore.ValidationError):
        MemstoreStore(":memory:", ttl={"default_ttl": 1, "refresh": True})  # type: ignore[typeddict-unknown-key]


def test_batch_reads_before_writes_and_is_atomic(lgstore: MemstoreStore) -> None:
    lgstore.put(("b",), "k", {"v": 0})
    results = lgstore.batch(
        [
            PutOp(("b",), "k", {"v": 1}),
            GetOp(("b",), "k"),
            PutOp(("b",), "k", {"v": 2}),
        ]
    )
    assert results[1] is not None and results[1].value == {"v": 0}  # type: ignore[union-attr]
    assert lgstore.get(("b",), "k").value == {"v": 2}  # type: ignore[union-attr]
    with pytest.raises(memstore.ValidationError):
        lgstore.batch([PutOp(("b",), "k", {"v": 3}), PutOp(("b",), "bad", "not a dict")])  # type: ignore[arg-type]
    with pytest.raises(memstore.ValidationError):
        lgstore.batch([PutOp(("b",), "k", {"v": 3}), PutOp(("b",), "x", {"s": {1, 2}})])
    assert lgstore.get(("b",), "k").value == {"v": 2}  # type: ignore[union-attr]
    assert lgstore.get(("b",), "x") is None


def test_bad_input_is_refused(lgstore: MemstoreStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        lgstore.put(("a.b",), "k", {})
    with pytest.raises(memstore.ValidationError):
        lgstore.batch([PutOp(("a.b",), "k", {})])  # straight to batch: still checked
    with pytest.raises(InvalidNamespaceError):
        lgstore.put(("langgraph",), "k", {})  # LangGraph's own; batch() takes it, as its stores do
    with pytest.raises(memstore.ValidationError):
        lgstore.batch([PutOp(("a",), 5, {})])  # type: ignore[arg-type]
    with pytest.raises(memstore.ValidationError):
        lgstore.put(("a",), "k", {}, ttl=-1)
    with pytest.raises(memstore.ValidationError):
        lgstore.batch(["not an op"])  # type: ignore[list-item]
    with pytest.raises(memstore.ValidationError, match="embed"):
        MemstoreStore(":memory:", index={"dims": 3})
    with pytest.raises(memstore.ValidationError, match="unknown"):
        MemstoreStore(":memory:", index={"dims": 3, "embed": lambda t: t, "colour": 1})
    assert lgstore.list_namespaces() == []
    assert lgstore.store.check() == []


async def test_async_methods_and_concurrency(tmp_path: Path) -> None:
    async with MemstoreStore(tmp_path / "a.db") as lgstore:
        await asyncio.gather(
            *(lgstore.aput(("users", f"u{i % 5}"), f"k{i}", {"i": i}) for i in range(100))
        )
        item = await lgstore.aget(("users", "u1"), "k1")
        assert item is not None and item.value == {"i": 1}
        found = await lgstore.asearch(("users",), filter={"i": {"$gte": 90}}, limit=50)
        assert {i.key for i in found} == {f"k{i}" for i in range(90, 100)}
        assert len(await lgstore.alist_namespaces(prefix=("users",))) == 5
        await lgstore.adelete(("users", "u1"), "k1")
        assert await lgstore.aget(("users", "u1"), "k1") is None


def test_shares_a_file_with_the_saver_and_other_collections(store_url: str) -> None:
    from memstore_langgraph import MemstoreSaver

    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        notes.put("n", {"text": "mine"})
        lgstore, saver = MemstoreStore(store), MemstoreSaver(store)
        lgstore.put(("a",), "k", {"v": 1})
        assert sorted(store.collections()) == ["langgraph_store", "notes"]
        assert store.check() == []
        lgstore.close()
        saver.close()
        assert notes.get("n") == {"text": "mine"}  # the store stays open


class State(TypedDict):
    user: str
    reply: str


def test_a_graph_remembers_across_runs(store_url: str) -> None:
    def respond(state: State, *, store: BaseStore) -> dict[str, Any]:
        namespace = ("memories", state["user"])
        seen = store.search(namespace)
        store.put(namespace, f"visit-{len(seen)}", {"note": f"visit number {len(seen) + 1}"})
        return {"reply": f"{len(seen) + 1} visits"}

    def build(lgstore: MemstoreStore) -> Any:
        builder = StateGraph(State)
        builder.add_node("respond", respond)
        builder.add_edge(START, "respond")
        return builder.compile(store=lgstore)

    with MemstoreStore(store_url) as lgstore:
        assert build(lgstore).invoke({"user": "alice", "reply": ""})["reply"] == "1 visits"
    with MemstoreStore(store_url) as lgstore:
        graph = build(lgstore)
        assert graph.invoke({"user": "alice", "reply": ""})["reply"] == "2 visits"
        assert graph.invoke({"user": "bob", "reply": ""})["reply"] == "1 visits"
        assert lgstore.list_namespaces(prefix=("memories",)) == [
            ("memories", "alice"),
            ("memories", "bob"),
        ]


# -- LangGraph's InMemoryStore as the reference -----------------------------------

labels = st.sampled_from(["a", "b", "c", "users", "ü"])
namespaces = st.lists(labels, min_size=1, max_size=3).map(tuple)
values = st.fixed_dictionaries(
    {"n": st.integers(-3, 3), "tag": st.sampled_from(["x", "y", None])},
    optional={"extra": st.text(max_size=5)},
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]), namespaces, st.sampled_from(["k1", "k2"]), values
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, namespaces, st.integers(-3, 3), st.sampled_from(["x", "y", None]))
def test_agrees_with_langgraphs_in_memory_store(
    ops: list[tuple[str, tuple[str, ...], str, dict[str, Any]]],
    prefix: tuple[str, ...],
    n: int,
    tag: str | None,
) -> None:
    reference, mine = InMemoryStore(), MemstoreStore(":memory:")
    try:
        for kind, ns, key, value in ops:
            for store in (reference, mine):
                if kind == "put":
                    store.put(ns, key, value)
                else:
                    store.delete(ns, key)
        for _, ns, key, _ in ops:
            want, got = reference.get(ns, key), mine.get(ns, key)
            assert (want and want.value) == (got and got.value)

        def found(store: BaseStore, **kwargs: Any) -> set[tuple[tuple[str, ...], str]]:
            return {(i.namespace, i.key) for i in store.search(prefix[:1], limit=1000, **kwargs)}

        assert found(mine) == found(reference)
        assert found(mine, filter={"n": n}) == found(reference, filter={"n": n})
        assert found(mine, filter={"tag": tag}) == found(reference, filter={"tag": tag})
        gte = {"n": {"$gte": n}}
        assert found(mine, filter=gte) == found(reference, filter=gte)
        # InMemoryStore lists namespaces it only looked up (its dict of them is a defaultdict):
        # the reference's answer, without namespaces that hold nothing.
        held = {i.namespace for i in reference.search((), limit=10_000)}

        def listed(store: BaseStore, **kwargs: Any) -> list[tuple[str, ...]]:
            names = store.list_namespaces(**kwargs)
            if "max_depth" not in kwargs:
                return [ns for ns in names if ns in held]
            return [ns for ns in names if any(h[: kwargs["max_depth"]] == ns for h in held)]

        assert mine.list_namespaces() == listed(reference)
        assert mine.list_namespaces(prefix=prefix[:1], max_depth=2) == listed(
            reference, prefix=prefix[:1], max_depth=2
        )
        assert mine.list_namespaces(suffix=prefix[-1:]) == listed(reference, suffix=prefix[-1:])
    finally:
        mine.close()


def test_without_full_text_index(store_url: str) -> None:
    with MemstoreStore(store_url, fts=False) as lgstore:
        lgstore.put(("a",), "k", {"text": "pizza"})
        assert [i.key for i in lgstore.search(("a",))] == ["k"]
        with pytest.raises(memstore.QueryError, match="fts=True"):
            lgstore.search(("a",), query="pizza")
        assert lgstore.items.fts == []
    with MemstoreStore(store_url) as lgstore:  # asking for it later builds it from the items
        assert [i.key for i in lgstore.search(("a",), query="pizza")] == ["k"]
    with pytest.raises(memstore.ValidationError):
        MemstoreStore(":memory:", fts="yes")  # type: ignore[arg-type]


async def test_items_show_in_the_explorer(db_path: Path) -> None:
    from datasette.app import Datasette

    with MemstoreStore(db_path) as lgstore:
        lgstore.put(("users", "alice"), "prefs", {"food": "pizza"})
    ds = Datasette([str(db_path)])
    await ds.invoke_startup()
    overview = await ds.client.get("/-/memstore")
    assert overview.status_code == 200 and "langgraph_store" in overview.text
    rows = (await ds.client.get("/agent/langgraph_store.json?_shape=array")).json()
    assert [r["namespace"] for r in rows] == ["users.alice"]
    searched = await ds.client.get("/agent/langgraph_store.json?_search=pizza&_shape=array")
    assert [r["namespace"] for r in searched.json()] == ["users.alice"]


def test_keep_past_reads_the_store_as_it_was(tmp_path: Path) -> None:
    import time
    from datetime import UTC, datetime

    with MemstoreStore(tmp_path / "past.db", keep_past=True) as store:
        store.put(("users", "ada"), "city", {"name": "Lyon"})
        time.sleep(0.01)
        lyon = datetime.now(UTC)
        time.sleep(0.01)
        store.put(("users", "ada"), "city", {"name": "Paris"})
        time.sleep(0.01)
        paris = datetime.now(UTC)
        time.sleep(0.01)
        store.delete(("users", "ada"), "city")
        assert store.get(("users", "ada"), "city") is None
        assert store.search(("users",)) == []
        was = store.get(("users", "ada"), "city", as_of=lyon)
        assert was is not None and was.value == {"name": "Lyon"}
        assert store.get(("users", "ada"), "city", as_of=paris).value == {"name": "Paris"}
        assert [i.value for i in store.search(("users",), as_of=lyon)] == [{"name": "Lyon"}]
        found = store.search(("users",), query="paris", as_of=paris)
        assert [i.value for i in found] == [{"name": "Paris"}]
        assert store.search(("users",), query="paris", as_of=lyon) == []
        store.put(("users", "ada"), "city", {"name": "Nice"})  # back after a delete
        assert store.get(("users", "ada"), "city").value == {"name": "Nice"}
        assert store.get(("users", "ada"), "city", as_of=paris).value == {"name": "Paris"}
        before = datetime(2000, 1, 1, tzinfo=UTC)
        assert store.get(("users", "ada"), "city", as_of=before) is None
        assert store.items.store.check() == []


def test_a_search_of_a_namespace_is_one_round_trip(lgstore: MemstoreStore) -> None:
    """The namespace's own page, in its index's order, and the probe for namespaces below
    it go together: two statements (in one read transaction on SQLite: four), one round
    trip on PostgreSQL (as PostgresStore's one statement). Only when there are namespaces
    below does one more read the subtree."""
    for i in range(30):
        lgstore.put(("users", "u1"), f"k{i}", {"kind": "fact" if i % 2 else "note", "n": i})
    for _ in range(6):  # PostgreSQL prepares statements after a few runs
        lgstore.search(("users", "u1"), filter={"kind": "fact"}, limit=5)
    got: list[Any] = []

    def search() -> None:
        got.append(lgstore.search(("users", "u1"), filter={"kind": "fact"}, limit=5))

    assert requests(lgstore.store, search) == (1 if on_postgres(lgstore.store) else 4)
    assert [item.key for item in got[0]] == [f"k{i}" for i in (29, 27, 25, 23, 21)]
    lgstore.put(("users", "u1", "deeper"), "k99", {"kind": "fact", "n": 99})
    assert requests(lgstore.store, search) == (2 if on_postgres(lgstore.store) else 5)
    assert [item.key for item in got[1]][:2] == ["k99", "k29"]
