"""Facts that change over time: validity periods, supersede, invalidate, as_of and known_at,
checked against a plain-Python model of bi-temporal facts, and hostile input."""

from __future__ import annotations

import copy
import itertools
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore

from .dbinfo import on_connections, on_postgres, sql

DAY = [f"2026-01-{d:02d}T00:00:00.000000Z" for d in range(1, 11)]  # world times to use


@pytest.fixture
def facts(store: memstore.Store) -> memstore.Collection:
    return store.collection("facts", fields={"topic": str}, fts=["text"], temporal=True)


def test_supersede_keeps_the_old_fact_for_as_of(facts: memstore.Collection) -> None:
    facts.put("diet", {"topic": "food", "text": "eats meat"}, valid_from=DAY[0])
    facts.supersede("diet", {"topic": "food", "text": "vegetarian"}, at=DAY[4])
    assert facts.get("diet")["text"] == "vegetarian"
    assert facts.get("diet", as_of=DAY[2])["text"] == "eats meat"
    assert facts.get("diet", None, as_of="2025-12-31T00:00:00Z") is None
    assert facts.keys() == ["diet"] and facts.count() == 1
    assert facts.keys(as_of=DAY[2]) == ["diet"]
    assert [h.key for h in facts.search("meat")] == []
    assert [h.key for h in facts.search("meat", as_of=DAY[2])] == ["diet"]
    assert [r.record["text"] for r in facts.rows(as_of=datetime(2026, 1, 3, tzinfo=UTC))] == [
        "eats meat"
    ]
    line = facts.timeline("diet")
    assert [(f["record"]["text"], f["valid_from"], f["valid_to"]) for f in line] == [
        ("eats meat", DAY[0], DAY[4]),
        ("vegetarian", DAY[4], None),
    ]
    facts.invalidate("diet", at=DAY[7])
    assert facts.get("diet", None, as_of=DAY[8]) is None
    assert facts.get("diet", as_of=DAY[6])["text"] == "vegetarian"
    assert facts.delete("diet") and facts.timeline("diet") == []
    assert facts.store.check() == []


def test_known_at_reads_what_the_store_held(
    facts: memstore.Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    clock.at(1)
    facts.put("ceo", {"text": "Alice"})
    clock.at(2)
    facts.supersede("ceo", {"text": "Bob"}, at=DAY[5])
    clock.at(3)
    facts.put("ceo", {"text": "Bobby"})  # a correction: it was always Bobby since DAY[5]
    # On day 1 of store time the agent believed Alice held, whatever the world date.
    assert facts.get("ceo", as_of=DAY[8], known_at=clock.stamp(1.5))["text"] == "Alice"
    assert facts.get("ceo", as_of=DAY[8], known_at=clock.stamp(2.5))["text"] == "Bob"
    assert facts.get("ceo", as_of=DAY[8])["text"] == "Bobby"
    assert facts.get("ceo", as_of=DAY[2], known_at=clock.stamp(2.5))["text"] == "Alice"
    assert facts.get("ceo", None, known_at=clock.stamp(0.5)) is None
    assert facts.count(known_at=clock.stamp(1.5), as_of=DAY[1]) == 1
    assert facts.query(known_at=clock.stamp(2.5), as_of=DAY[8]) == [{"text": "Bob"}]


def test_a_key_holding_the_unit_separator_is_read_back_exactly(
    facts: memstore.Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A superseded fact's row is keyed by its subject, char(31) and a ULID; a key that
    holds char(31) itself is never taken for one, in the version history either."""
    clock = Clock(monkeypatch)
    clock.at(1)
    facts.put("a\x1fb", {"text": "one"})
    facts.put("a", {"text": "plain"})
    clock.at(2)
    facts.supersede("a\x1fb", {"text": "two"}, at=DAY[5])
    clock.at(3)
    facts.put("a\x1fb", {"text": "three"})  # a correction: what was known is history now
    facts.delete("a")
    assert facts.get("a\x1fb", as_of=DAY[8], known_at=clock.stamp(1.5))["text"] == "one"
    assert facts.get("a\x1fb", as_of=DAY[8], known_at=clock.stamp(2.5))["text"] == "two"
    assert facts.get("a\x1fb", as_of=DAY[2], known_at=clock.stamp(2.5))["text"] == "one"
    assert facts.get("a", known_at=clock.stamp(2.5))["text"] == "plain"
    assert sorted(facts.keys(known_at=clock.stamp(1.5))) == ["a", "a\x1fb"]
    assert facts.keys() == ["a\x1fb"]


class Clock:
    """memstore's clock, set by the test: every write of one step has one instant."""

    base = datetime(2026, 6, 1, tzinfo=UTC)

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = self.base
        monkeypatch.setattr(memstore, "_utcnow", lambda: self.now)

    def at(self, step: float) -> None:
        self.now = self.base + timedelta(seconds=step)

    def stamp(self, step: float) -> str:
        return memstore._iso(self.base + timedelta(seconds=step))


# -- the model ----------------------------------------------------------------


def model_apply(state: dict[str, Any], op: tuple[Any, ...]) -> bool:
    """Apply an operation to the model; False when memstore must refuse it."""
    kind, key, body, a, b = op
    facts = state.setdefault(key, {"live": None, "closed": []})
    live = facts["live"]
    if kind == "put":
        start = a or (live[1] if live else memstore.NEVER_BEFORE)
        end = b or (live[2] if live else memstore.NEVER_AFTER)
        if not start < end or any(s < end and e > start for _, s, e in facts["closed"]):
            return False
        facts["live"] = (body, start, end)
        return True
    if kind == "supersede" and live is not None and a >= live[2]:  # after a gap
        facts["closed"].append(live)
        facts["live"] = (body, a, memstore.NEVER_AFTER)
        return True
    if live is None or not live[1] < a < live[2]:
        return False
    if kind == "supersede":
        facts["closed"].append((live[0], live[1], a))
        facts["live"] = (body, a, memstore.NEVER_AFTER)
    else:  # invalidate
        facts["live"] = (live[0], live[1], a)
    return True


def model_get(state: dict[str, Any], key: str, t: str) -> Any:
    facts = state.get(key)
    if not facts:
        return None
    every = ([facts["live"]] if facts["live"] else []) + facts["closed"]
    holding = [f for f in every if f[1] <= t < f[2]]
    return max(holding, key=lambda f: f[1])[0] if holding else None


days = st.sampled_from(DAY)
operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "supersede", "invalidate"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 99).map(lambda n: {"n": n}),
        st.one_of(st.none(), days),
        st.one_of(st.none(), days),
    ),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_as_of_and_known_at_agree_with_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ops: list[tuple[Any, ...]]
) -> None:
    clock = Clock(monkeypatch)
    with memstore.Store(":memory:") as store:
        facts = store.collection("facts", temporal=True)
        state: dict[str, Any] = {}
        snapshots: list[dict[str, Any]] = [copy.deepcopy(state)]
        for step, op in enumerate(ops, 1):
            clock.at(step)
            kind, key, body, a, b = op
            if kind != "put" and a is None:
                op = (kind, key, body, DAY[4], b)
                a = DAY[4]
            expected = model_apply(state, op)
            try:
                if kind == "put":
                    facts.put(key, body, valid_from=a, valid_to=b)
                elif kind == "supersede":
                    facts.supersede(key, body, at=a)
                else:
                    facts.invalidate(key, at=a)
                done = True
            except (memstore.ValidationError, memstore.NotFoundError):
                done = False
            assert done == expected, (op, state)
            snapshots.append(copy.deepcopy(state))
        for key in ("a", "b"):
            for t in DAY:
                assert facts.get(key, None, as_of=t) == model_get(state, key, t), (key, t)
                for step, snapshot in enumerate(snapshots):
                    seen = facts.get(key, None, as_of=t, known_at=clock.stamp(step + 0.5))
                    assert seen == model_get(snapshot, key, t), (key, t, step)
        assert store.check() == []


def vector_of(n: int) -> list[float]:
    angle = n * 0.37
    return [math.cos(angle), math.sin(angle)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_search_and_nearest_known_at_agree_with_the_model(
    monkeypatch: pytest.MonkeyPatch, ops: list[tuple[Any, ...]]
) -> None:
    """What search and nearest find as the store knew it then, ranked by the vectors the
    records had then, is what the model held."""
    pytest.importorskip("numpy")
    clock = Clock(monkeypatch)
    with memstore.Store(":memory:") as store:
        facts = store.collection(
            "facts", fts=["text"], temporal=True, vectors={"dim": 2, "model": "m"}
        )
        state: dict[str, Any] = {}
        snapshots: list[dict[str, Any]] = [copy.deepcopy(state)]
        for step, (kind, key, body, a, b) in enumerate(ops, 1):
            clock.at(step)
            body = {**body, "text": f"fact n{body['n']}"}
            a = DAY[4] if kind != "put" and a is None else a
            if model_apply(state, (kind, key, body, a, b)):
                if kind == "put":
                    facts.put(key, body, valid_from=a, valid_to=b, vector=vector_of(body["n"]))
                elif kind == "supersede":
                    facts.supersede(key, body, at=a, vector=vector_of(body["n"]))
                else:
                    facts.invalidate(key, at=a)
            snapshots.append(copy.deepcopy(state))
        query = [1.0, 0.0]
        for step, snapshot in enumerate(snapshots):
            for t in DAY[::3]:
                held = {
                    key: record
                    for key in ("a", "b")
                    if (record := model_get(snapshot, key, t)) is not None
                }
                known = clock.stamp(step + 0.5)
                found = facts.search("fact", as_of=t, known_at=known)
                assert {h.key: h.record for h in found} == held, (step, t)
                near = facts.nearest(query, k=5, as_of=t, known_at=known)
                assert {n.key: n.record for n in near} == held, (step, t)
                for n in near:  # scored by the vector the record had then
                    assert n.score == pytest.approx(vector_of(n.record["n"])[0])
                fused = facts.hybrid("fact", vector=query, as_of=t, known_at=known)
                assert {h.key: h.record for h in fused} == held
        assert store.check() == []


# -- hostile input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.put("k", {}, valid_from=DAY[5], valid_to=DAY[1]), "must come after"),
        (lambda c: c.put("k", {}, valid_from=DAY[5], valid_to=DAY[5]), "must come after"),
        (lambda c: c.put("k", {}, valid_from=datetime(2026, 1, 1)), "time zone"),
        (lambda c: c.put("k", {}, valid_from="yesterday"), "ISO-8601"),
        (lambda c: c.put("k", {}, valid_from=12345), "ISO-8601"),
        (lambda c: c.supersede("k", {}, at="0001-01-01T00:00:00Z"), "not inside"),
        (lambda c: c.invalidate("k", at="9999-12-31T23:59:59Z"), "not inside"),
        (lambda c: c.supersede("k", {}, at="10000-01-01T00:00:00Z"), "ISO-8601"),
        (lambda c: c.supersede("k", {}, at=DAY[0]), "not inside"),
        (lambda c: c.invalidate("k", at=datetime(2026, 1, 9)), "time zone"),
        (lambda c: c.supersede("nope", {}), "no record"),
    ],
)
def test_hostile_times_are_refused_and_change_nothing(
    facts: memstore.Collection, call: Any, message: str
) -> None:
    facts.put("k", {"v": 1}, valid_from=DAY[2], valid_to=DAY[8])
    before = facts.timeline("k")
    with pytest.raises(memstore.MemstoreError, match=message):
        call(facts)
    assert facts.timeline("k") == before


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get("k", as_of="someday"),
        lambda c: c.query(as_of=datetime(2026, 1, 1)),
        lambda c: c.count(known_at="2026-13-01T00:00:00Z"),
        lambda c: c.keys(known_at=42),
    ],
)
def test_bad_read_times_are_query_errors(facts: memstore.Collection, read: Any) -> None:
    facts.put("k", {})
    with pytest.raises(memstore.QueryError):
        read(facts)


def test_a_collection_that_is_not_temporal_says_so(store: memstore.Store) -> None:
    notes = store.collection("notes", fts=["text"])
    notes.put("a", {"text": "x"})
    for call in (
        lambda: notes.get("a", as_of=DAY[0]),
        lambda: notes.query(known_at=DAY[0]),
        lambda: notes.search("x", as_of=DAY[0]),
        lambda: notes.supersede("a", {}),
        lambda: notes.invalidate("a"),
        lambda: notes.timeline("a"),
    ):
        with pytest.raises(memstore.QueryError, match="temporal=True"):
            call()
    with pytest.raises(memstore.ValidationError, match="temporal=True"):
        notes.put("a", {}, valid_from=DAY[0])
    assert notes.get("a") == {"text": "x"}


def test_declaring_temporal_later_keeps_every_record(store: memstore.Store, db_path: Path) -> None:
    notes = store.collection("notes", fields={"kind": str})
    notes.put_many([(f"k{i}", {"kind": "x", "i": i}) for i in range(100)])
    temporal = store.collection("notes", temporal=True)
    assert temporal.count() == 100 and temporal.keeps_history
    assert temporal.get("k5", as_of="1999-01-01T00:00:00Z") == {"kind": "x", "i": 5}
    with pytest.raises(memstore.SchemaError, match="cannot be dropped"):
        store.collection("notes", temporal=False)
    with pytest.raises(memstore.SchemaError, match="unique"):
        store.collection("notes", indexes=[{"fields": ["kind"], "unique": True}])
    assert store.check() == []


def test_nearest_and_hybrid_find_superseded_facts_as_of(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    prefs = store.collection("prefs", fts=["text"], temporal=True, vectors={"dim": 2, "model": "m"})
    prefs.put("travel", {"text": "likes planes"}, vector=[1.0, 0.0], valid_from=DAY[0])
    prefs.supersede("travel", {"text": "likes trains"}, at=DAY[5], vector=[0.0, 1.0])
    assert [n.record["text"] for n in prefs.nearest([1.0, 0.0], k=5)] == ["likes trains"]
    before = prefs.nearest([1.0, 0.0], k=5, as_of=DAY[2])
    assert [(n.key, n.record["text"]) for n in before] == [("travel", "likes planes")]
    assert before[0].score == pytest.approx(1.0)
    fused = prefs.hybrid("planes", vector=[1.0, 0.0], k=5, as_of=DAY[2])
    assert [h.record["text"] for h in fused] == ["likes planes"]


def test_export_and_import_keep_validity_and_superseded_facts(
    facts: memstore.Collection, tmp_path: Path
) -> None:
    facts.put("diet", {"topic": "food", "text": "meat"}, valid_from=DAY[0])
    facts.supersede("diet", {"topic": "food", "text": "vegetables"}, at=DAY[4])
    facts.store.export(tmp_path / "out", plaintext=True)  # may be an encrypted file
    with memstore.Store(tmp_path / "copy.db") as copy_store:
        copy_store.import_(tmp_path / "out")
        again = copy_store["facts"]
        assert again.temporal
        assert again.timeline("diet") == facts.timeline("diet")
        assert again.get("diet", as_of=DAY[2])["text"] == "meat"
        assert copy_store.check() == []


def test_graph_edges_hold_in_world_time(store: memstore.Store) -> None:
    g = store.graph("org")
    for name in ("alice", "acme", "globex"):
        g.add_node(name, "thing")
    g.add_edge("alice", "acme", "works_at", valid_from=DAY[0])
    assert g.invalidate_edge("alice", "acme", "works_at", at=DAY[4])
    g.add_edge("alice", "globex", "works_at", valid_from=DAY[4])
    assert [n.id for n in g.neighbors("alice")] == ["globex"]
    assert [n.id for n in g.neighbors("alice", as_of=DAY[2])] == ["acme"]
    assert [n.id for n in g.neighbors("alice", as_of="2025-12-01T00:00:00Z")] == []
    assert [e.target for e in g.edges(source="alice", as_of=DAY[2])] == ["acme"]
    every = g.edges(source="alice", every=True)
    assert [(e.target, e.valid_from, e.valid_to) for e in every] == [
        ("acme", DAY[0], DAY[4]),
        ("globex", DAY[4], None),
    ]
    with pytest.raises(memstore.ValidationError, match="not inside"):
        g.invalidate_edge("alice", "acme", "works_at", at=DAY[8])
    with pytest.raises(memstore.ValidationError, match="must come after"):
        g.add_edge("alice", "acme", "knew", valid_from=DAY[5], valid_to=DAY[1])
    with pytest.raises(memstore.ValidationError, match="time zone"):
        g.add_edge("alice", "acme", "knew", valid_from=datetime(2026, 1, 1))
    assert not g.invalidate_edge("alice", "nobody", "works_at")
    copy_graph = store.graph("copy")
    copy_graph.import_(g.export())
    assert copy_graph.edges(every=True) == [
        e._replace(created_at=c.created_at, updated_at=c.updated_at)
        for e, c in zip(g.edges(every=True), copy_graph.edges(every=True), strict=True)
    ]
    assert g.check() == []


def test_check_finds_periods_other_tools_wrote_wrong(facts: memstore.Collection) -> None:
    facts.put("a", {"v": 1}, valid_from=DAY[0])
    facts.supersede("a", {"v": 2}, at=DAY[4])
    assert facts.store.check() == []
    store = facts.store
    sql(store, "UPDATE facts SET valid_from = ? WHERE key = 'a'", (DAY[2],))  # overlaps
    assert any("hold at the same time ('a')" in p for p in facts.store.check())
    sql(store, "UPDATE facts SET valid_from = ?, valid_to = ? WHERE key = 'a'", (DAY[8], DAY[6]))
    assert any("valid_to is not after valid_from" in p for p in facts.store.check())


def test_reinforcement_of_what_was_known_then_is_refused_clearly(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    notes = store.collection(
        "notes", fts=["text"], temporal=True, hygiene={}, vectors={"dim": 2, "model": "m"}
    )
    notes.put("a", {"text": "x"}, vector=[1.0, 0.0])
    with pytest.raises(memstore.QueryError, match="reads counted until now"):
        notes.hybrid("x", vector=[1.0, 0.0], known_at=DAY[0], reinforcement=True)
    assert notes.hybrid("x", vector=[1.0, 0.0], known_at=DAY[0]) == []  # known_at: before it


def test_search_known_at_ranks_as_one_index_of_the_same_texts_would(
    facts: memstore.Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The yardstick: a plain FTS5 table (Python's sqlite3) holding the collection's texts
    and the replaced versions' together, ranked by FTS5's own bm25 (on PostgreSQL, which
    ranks by ts_rank, the same hits)."""
    import sqlite3

    clock = Clock(monkeypatch)
    vocabulary = ["river", "stone", "cloud", "tree", "lake", "hill", "road", "mill", "bell"]

    def text(i: int) -> str:  # words of unequal frequency, and texts of unequal length
        return " ".join(vocabulary[(i * i + j * 5) % 9] for j in range(1 + i % 4)) + f" w{i}"

    clock.at(1)
    for i in range(40):
        facts.put(f"k{i}", {"text": text(i)})
    clock.at(2)
    for i in range(0, 40, 3):  # corrections: the old texts become replaced versions
        facts.put(f"k{i}", {"text": f"{text(i + 1)} corrected"})
    for i in range(1, 40, 5):
        facts.delete(f"k{i}")
    reference = sqlite3.connect(":memory:")
    reference.execute("CREATE VIRTUAL TABLE t USING fts5(text, key UNINDEXED, known UNINDEXED)")
    store, then = facts.store, clock.stamp(1.5)
    postgres = on_postgres(store)
    words = "body::json ->> 'text'" if postgres else "json_extract(body, '$.text')"
    held = "CASE WHEN updated_at <= ? THEN 1 ELSE 0 END"
    for row in sql(store, f"SELECT {words}, key, {held} FROM facts", (then,)):
        reference.execute("INSERT INTO t VALUES (?, ?, ?)", row)  # marked if held then
    for row in sql(  # and the versions held then, replaced since
        store,
        f"SELECT {words}, key, 1 FROM memstore_versions "
        "WHERE collection = 'facts' AND valid_from <= ? AND archived_at > ?",
        (then, then),
    ):
        reference.execute("INSERT INTO t VALUES (?, ?, ?)", row)
    for query in ("river", "stone OR cloud", "river AND lake", "tree mill", "bell OR w3"):
        found = facts.search(query, known_at=then, limit=100)
        expected = reference.execute(
            "SELECT key, bm25(t) FROM t WHERE t MATCH ? AND known = 1 ORDER BY rank", (query,)
        ).fetchall()
        assert expected and expected[0][1] < -0.01, query  # words that weigh something
        assert sorted(h.key for h in found) == sorted(key for key, _ in expected), query
        if not postgres:
            assert [h.rank for h in found] == pytest.approx([r for _, r in expected]), query
        # the newest texts, unchanged, are FTS5's own
    assert [h.key for h in facts.search("corrected", known_at=then)] == []
    assert (
        facts.search("river", known_at=then, limit=3, offset=2)
        == facts.search("river", known_at=then, limit=100)[2:5]
    )


def test_a_fact_can_hold_again_after_a_gap(facts: memstore.Collection) -> None:
    facts.put("office", {"city": "Lyon"}, valid_from=DAY[0])
    facts.invalidate("office", at=DAY[3])
    facts.supersede("office", {"city": "Paris"}, at=DAY[6])
    assert facts.get("office", as_of=DAY[1]) == {"city": "Lyon"}
    assert facts.get("office", None, as_of=DAY[4]) is None  # the gap
    assert facts.get("office", as_of=DAY[7]) == {"city": "Paris"}
    assert [(f["valid_from"], f["valid_to"]) for f in facts.timeline("office")] == [
        (DAY[0], DAY[3]),
        (DAY[6], None),
    ]


def test_graph_known_at_walks_the_graph_the_store_held(
    store: memstore.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = Clock(monkeypatch)
    g = store.graph("org")
    clock.at(1)
    for node, kind in (("alice", "person"), ("acme", "company"), ("bob", "person")):
        g.add_node(node, kind, {"city": "Paris"})
    g.add_edge("alice", "acme", "works_at", {"role": "engineer"})
    g.add_edge("acme", "bob", "employs")
    clock.at(2)
    g.add_node("alice", "person", {"city": "Rome"})
    g.add_edge("alice", "acme", "works_at", {"role": "cto"})
    g.invalidate_edge("acme", "bob", "employs", at=DAY[3])
    clock.at(3)
    g.delete_node("bob")  # and its edge
    then, between = clock.stamp(1.5), clock.stamp(2.5)
    assert [n.id for n in g.neighbors("alice", depth=2)] == ["acme"]
    assert [(n.id, n.depth) for n in g.neighbors("alice", depth=2, known_at=then)] == [
        ("acme", 1),
        ("bob", 2),
    ]
    assert g.node("alice", known_at=then).props == {"city": "Paris"}
    assert g.node("bob", known_at=between).kind == "person"
    with pytest.raises(memstore.NotFoundError, match="known at"):
        g.node("bob", known_at=clock.stamp(0.5))
    assert [e.props for e in g.edges(relation="works_at", known_at=then)] == [{"role": "engineer"}]
    # Between: the edge was known to stop holding on DAY[3]; as_of reads either side.
    assert [n.id for n in g.neighbors("acme", known_at=between, as_of=DAY[5])] == []
    assert [n.id for n in g.neighbors("acme", known_at=between, as_of=DAY[1])] == ["bob"]
    # Another tool's writes are kept as history too.
    sql(
        store,
        'UPDATE memstore_nodes SET props = \'{"city": "Oslo"}\' '
        "WHERE graph = 'org' AND id = 'acme'",
    )
    assert g.node("acme", known_at=between).props == {"city": "Paris"}
    # The history goes with an export, and Graph.cleanup forgets it.
    store.export(tmp_path / "out", plaintext=True)  # the fixture may be an encrypted file
    with memstore.Store(tmp_path / "copy.db") as other:
        other.import_(tmp_path / "out")
        copied = other.graph("org")
        assert copied.neighbors("alice", depth=2, known_at=then) == g.neighbors(
            "alice", depth=2, known_at=then
        )
        assert other.check() == []
    clock.at(100)  # versions replaced at step 2 go; those SQLite's clock stopped stay
    assert g.cleanup(older_than="1s") == 3
    with pytest.raises(memstore.NotFoundError):  # what alice was then is forgotten
        g.neighbors("alice", depth=2, known_at=then)
    assert store.check() == []


def test_graph_known_at_refuses_bad_times(store: memstore.Store) -> None:
    g = store.graph("g")
    g.add_node("a", "x")
    for bad in ("yesterday", datetime(2026, 1, 1), 12):
        with pytest.raises(memstore.QueryError):
            g.neighbors("a", known_at=bad)
        with pytest.raises(memstore.QueryError):
            g.edges(known_at=bad)


def test_replaced_versions_keep_the_vectors_they_had(
    store: memstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numpy")
    clock = Clock(monkeypatch)
    notes = store.collection("notes", vectors={"dim": 2, "model": "m"})
    store.collection("notes", temporal=True)  # declared temporal later: the triggers come too
    clock.at(1)
    notes.put("a", {"text": "one"}, vector=[1.0, 0.0])
    clock.at(2)
    notes.put("a", {"text": "two"}, vector=[0.0, 1.0])  # a correction, new vector
    clock.at(3)
    notes.put("a", {"text": "three"})  # no vector given: it keeps the one it has
    sql(store, "DELETE FROM notes")  # another tool deletes it
    for step, text, score in ((1.5, "one", 1.0), (2.5, "two", 0.0), (3.5, "three", 0.0)):
        (hit,) = notes.nearest([1.0, 0.0], known_at=clock.stamp(step))
        assert (hit.record["text"], hit.score) == (text, pytest.approx(score))
    assert notes.nearest([1.0, 0.0]) == []
    assert sql(store, "SELECT count(*) FROM memstore_version_vectors") == [(3,)]
    drop = "DROP TRIGGER notes__history_vectors_delete"
    sql(store, drop + (" ON notes" if on_postgres(store) else ""))
    assert any("notes__history_vectors_delete" in p for p in store.check())
    store.repair()
    assert store.check() == []
    sql(store, "DELETE FROM memstore_versions")  # retention, or another tool
    assert sql(store, "SELECT count(*) FROM memstore_version_vectors") == [(0,)]


@pytest.mark.sqlite_only("SQLite's index_info and query plans")
def test_a_field_index_holds_what_reads_test_so_a_count_needs_no_table(
    store: memstore.Store,
) -> None:
    notes = store.collection("notes", fields={"agent": str})
    notes.put("a", {"agent": "x"})
    store.collection("notes", temporal=True, hygiene=True)  # declared later: indexes remade
    columns = [row[2] for row in store.connection.execute("PRAGMA index_info('notes__agent_idx')")]
    assert columns == ["agent", "valid_from", "valid_to", "forgotten_at"], columns
    plan = " ".join(
        row[3]
        for row in store.connection.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM notes AS t WHERE t.forgotten_at IS NULL "
            "AND t.valid_from <= ? AND t.valid_to > ? AND t.agent = ?",
            ("2026-01-01", "2026-01-01", "x"),
        )
    )
    # Both bounds from the index; the rest of the row is read from it too (bench_temporal:
    # the count costs what a plain collection's does).
    assert "notes__agent_idx (agent=? AND valid_from<?)" in plan, plan
    assert notes.count({"agent": "x"}) == 1 and store.check() == []


@pytest.mark.sqlite_only("SQLite's query plans")
def test_writes_and_reads_by_key_never_scan_the_collection(store: memstore.Store) -> None:
    """Every statement a write or a read by key runs in a temporal collection finds its
    rows by an equality on an index: none scans the table, nor a range of the validity
    index (a put of a correction once did, 10 ms at 100,000 records)."""
    facts = store.collection("facts", fts=["text"], temporal=True, hygiene=True)
    facts.put_many([(f"k{i}", {"text": f"fact {i}"}) for i in range(50)])
    statements: list[tuple[str, Any]] = []

    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        statements.append((sql, bindings))
        return True

    store.connection.exec_trace = trace
    try:
        facts.put("k1", {"text": "corrected"})
        facts.supersede("k2", {"text": "changed"}, at=DAY[3])
        facts.invalidate("k3", at=DAY[3])
        facts.get("k2", as_of=DAY[1])
        facts.get("k4")
        facts.timeline("k2")
        facts.delete("k2")
    finally:
        store.connection.exec_trace = None
    scans = []
    for statement, bindings in statements:
        if not statement.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE", "INSERT")):
            continue
        plan = store.connection.execute(f"EXPLAIN QUERY PLAN {statement}", bindings).fetchall()
        scans += [
            (statement, row[3])
            for row in plan
            # (a bare "SEARCH facts" is max(id): the last row of the table's b-tree)
            if re.match(r"SCAN facts\b|SEARCH facts USING", row[3])
            and not re.search(r"\(.*=\?", row[3])
        ]
    assert scans == []


def test_versions_never_overlap_in_store_time_within_one_millisecond(
    facts: memstore.Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """memstore's clock counts milliseconds: changes made within one (here, a clock that
    stands still) follow each other in store time still, each version ending where the
    next begins, so that what was known at any time is one fact per subject and period."""
    clock = Clock(monkeypatch)
    clock.at(1)
    facts.put("diet", {"text": "meat"}, valid_from=DAY[0])
    facts.supersede("diet", {"text": "vegetarian"}, at=DAY[2])
    facts.invalidate("diet", at=DAY[6])
    facts.put("diet", {"text": "vegan"}, valid_from=DAY[2])
    conn = facts.store.connection
    versions = conn.execute(
        "SELECT valid_from, archived_at FROM memstore_versions WHERE key = 'diet' ORDER BY version"
    ).fetchall()
    (now,) = conn.execute("SELECT updated_at FROM facts WHERE key = 'diet'").fetchone()
    starts = [start for start, _ in versions[1:]] + [now]
    assert [end for _, end in versions] == starts  # each ends where the next begins
    for start, _ in versions:
        for t in DAY:
            held = facts.query({"key": "diet"}, as_of=t, known_at=start)
            found = facts.search("meat OR vegetarian OR vegan", as_of=t, known_at=start)
            assert len(held) <= 1 and [h.record for h in found] == held, (start, t)


def test_changes_within_one_millisecond_follow_each_other(store: memstore.Store) -> None:
    """A supersede right after another (the clock not moved on) took effect "now", inside
    no period: ValidationError. It now takes effect a millisecond after the fact began."""
    facts = store.collection("facts", temporal=True)
    facts.put("diet", {"n": -1})
    for n in range(50):
        facts.supersede("diet", {"n": n})
    facts.invalidate("diet")
    timeline = facts.timeline("diet")
    assert [fact["record"] for fact in timeline] == [{"n": n} for n in range(-1, 50)]
    for before, after in itertools.pairwise(timeline):
        assert before["valid_to"] == after["valid_from"]
    assert timeline[-1]["valid_to"] is not None
    assert store.check() == []
    future = store.collection("plans", temporal=True)
    future.put("trip", {"to": "Lyon"}, valid_from="2999-01-01T00:00:00Z")
    with pytest.raises(memstore.ValidationError, match="not inside"):
        future.supersede("trip", {"to": "Nice"})  # a fact that has not begun yet: as before


def test_supersedes_of_one_key_on_many_connections_keep_one_timeline(store_url: str) -> None:
    """Each supersede reads the current fact, then closes it: on PostgreSQL two at once
    closed the same fact twice (facts holding at the same time, check() said)."""
    with memstore.Store(store_url) as store:
        store.collection("facts", temporal=True).put("diet", {"n": "start"})

    def work(store: memstore.Store, t: int) -> None:
        facts = store.collection("facts")
        for i in range(15):
            facts.supersede("diet", {"n": f"{t}-{i}"})

    on_connections(store_url, work)
    with memstore.Store(store_url) as store:
        timeline = store.collection("facts").timeline("diet")
        assert len(timeline) == 61
        for before, after in itertools.pairwise(timeline):
            assert before["valid_to"] == after["valid_from"]
        assert store.check() == []
