"""Checkpoints: save, latest, history through branches, find, diff, retention, big states."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import memstore

from .dbinfo import on_connections, sql


@pytest.fixture
def cp(store: memstore.Store) -> memstore.Checkpoints:
    return store.checkpoints()


def test_save_latest_get_restore(cp: memstore.Checkpoints) -> None:
    assert cp.latest("t") is None
    first = cp.save("t", {"step": 1}, metadata={"by": "planner"}, tags=["start"])
    second = cp.save("t", {"step": 2})
    latest = cp.latest("t")
    assert latest is not None and latest.id == second and latest.parent_id == first
    got = cp.get(first)
    assert (got.state, got.metadata, got.tags, got.parent_id, got.branch) == (
        {"step": 1},
        {"by": "planner"},
        ["start"],
        None,
        "main",
    )
    assert cp.restore(second) == {"step": 2}
    assert got.size == len('{"step":1}') and not got.compressed
    with pytest.raises(memstore.NotFoundError):
        cp.get("nope")


def test_branch_history_and_diff_after_saves_on_each_side(cp: memstore.Checkpoints) -> None:
    a1 = cp.save("t", {"plan": ["search"], "step": 1})
    a2 = cp.save("t", {"plan": ["search", "read"], "step": 2})
    a3 = cp.save("t", {"plan": ["search", "read", "answer"], "step": 3})
    assert cp.branch(a2, name="alt") == "alt"
    b1 = cp.save("t", {"plan": ["search", "ask user"], "step": 3, "asked": True}, branch="alt")
    b2 = cp.save("t", {"plan": ["search", "ask user"], "step": 4, "asked": True}, branch="alt")
    a4 = cp.save("t", {"plan": ["search", "read", "answer"], "step": 4, "done": True})
    assert cp.get(b1).parent_id == a2
    assert [c.id for c in cp.history("t")] == [a4, a3, a2, a1]
    assert [c.id for c in cp.history("t", branch="alt")] == [b2, b1, a2, a1]
    assert [c.id for c in cp.history("t", branch="alt", before=b1)] == [a2, a1]
    assert [c.id for c in cp.history("t", limit=2)] == [a4, a3]
    assert {b["name"]: b["latest_id"] for b in cp.branches("t")} == {"main": a4, "alt": b2}
    assert cp.diff(a3, b2) == {
        "added": {"asked": True},
        "removed": {"plan[2]": "answer"},
        "changed": {"plan[1]": {"old": "read", "new": "ask user"}, "step": {"old": 3, "new": 4}},
    }
    assert cp.diff(b1) == {  # with its parent, a2
        "added": {"asked": True},
        "removed": {},
        "changed": {"plan[1]": {"old": "read", "new": "ask user"}, "step": {"old": 2, "new": 3}},
    }
    assert cp.diff(a1)["added"] == {"plan": ["search"], "step": 1}  # a first checkpoint: from {}
    with pytest.raises(memstore.ConflictError):
        cp.branch(a1, name="alt")


def test_state_diff_paths() -> None:
    diff = memstore.state_diff(
        {"a": {"b": [1, {"c": 2}]}, "t": 1}, {"a": {"b": [1, {"c": 3}, 4]}, "t": "1"}
    )
    assert diff == {
        "added": {"a.b[2]": 4},
        "removed": {},
        "changed": {"a.b[1].c": {"old": 2, "new": 3}, "t": {"old": 1, "new": "1"}},
    }
    assert memstore.state_diff(1, 2) == {
        "added": {},
        "removed": {},
        "changed": {"$": {"old": 1, "new": 2}},
    }
    assert memstore.state_diff({"x": 1}, {"x": 1}) == {"added": {}, "removed": {}, "changed": {}}


def test_find_by_tags_time_and_state(cp: memstore.Checkpoints) -> None:
    ids = [
        cp.save(
            "t",
            {"step": i, "tool": "web" if i % 2 else "sql"},
            tags=["even"] if i % 2 == 0 else [],
            metadata={"agent": f"a{i % 3}"},
        )
        for i in range(6)
    ]
    cp.save("other", {"step": 1})
    assert [c.id for c in cp.find("t", tags=["even"])] == [ids[4], ids[2], ids[0]]
    assert [c.id for c in cp.find("t", where={"state.tool": "web", "state.step": {"$gt": 1}})] == [
        ids[5],
        ids[3],
    ]
    assert [c.id for c in cp.find("t", where={"metadata.agent": "a0"})] == [ids[3], ids[0]]
    assert [c.id for c in cp.find("t", before=ids[2])] == [ids[1], ids[0]]
    with pytest.raises(memstore.QueryError):
        cp.find("t", where={"step": 1})


def test_large_states_are_compressed_and_still_found(
    file_store: memstore.Store, db_path: Path
) -> None:
    cp = file_store.checkpoints()
    rnd = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "tool", "call"]
    state = {"messages": [" ".join(rnd.choices(words, k=50)) for _ in range(400)], "mark": "big"}
    big = cp.save("t", state)
    got = cp.get(big)
    assert got.compressed and got.size > memstore.COMPRESS_ABOVE and got.state == state
    assert [c.id for c in cp.find("t", where={"state.mark": "big"})] == [big]
    raw = (
        sqlite3.connect(db_path)
        .execute("SELECT state IS NULL, length(state_zlib), size FROM memstore_checkpoints")
        .fetchone()
    )
    assert raw[0] == 1 and raw[1] < raw[2] / 3


def test_retention_keeps_tagged_and_branch_points(cp: memstore.Checkpoints) -> None:
    main = [cp.save("t", {"i": i}, tags=["keep"] if i == 1 else []) for i in range(6)]
    cp.branch(main[2], name="alt")
    alt = cp.save("t", {"alt": True}, branch="alt")
    removed = cp.cleanup("t", keep_last=3)  # per thread, across branches: alt, main[5], main[4]
    # main[0] and main[3] go; main[1] is tagged, main[2] is where "alt" grows from
    assert removed == 2
    remaining = {c.id for c in cp.find("t")}
    assert remaining == {main[1], main[2], main[4], main[5], alt}
    assert cp.get(main[4]).parent_id is None  # its parent went: it starts its history now
    assert cp.get(alt).parent_id == main[2]
    assert [c.id for c in cp.history("t", branch="alt")] == [alt, main[2], main[1]]
    assert cp.check() == []
    assert cp.cleanup("t", keep_last=0, keep_tagged=False, force=True) == 5
    assert cp.find("t") == []


def test_retention_by_age(file_store: memstore.Store) -> None:
    cp = file_store.checkpoints()
    old, new = cp.save("t", {"v": 1}), cp.save("t", {"v": 2})
    file_store.connection.execute(
        "UPDATE memstore_checkpoints SET created_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
        (old,),
    )
    assert cp.cleanup("t", older_than=timedelta(days=1)) == 1
    assert [c.id for c in cp.find("t")] == [new]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.save("t", {1, 2}), memstore.ValidationError),
        (lambda c: c.save("t", {"x": float("nan")}), memstore.ValidationError),
        (lambda c: c.save("t", {}, parent="missing"), memstore.NotFoundError),
        (lambda c: c.save("t", {}, checkpoint_id="x", parent="x"), memstore.ValidationError),
        (lambda c: c.save("t", {}, checkpoint_id="c1"), memstore.ConflictError),
        (lambda c: c.save("other", {}, parent="c1"), memstore.ValidationError),
        (lambda c: c.save("", {}), memstore.ValidationError),
        (lambda c: c.save("t", {}, tags="x"), memstore.ValidationError),
        (lambda c: c.save("t", {}, tags=["a\x00b"]), memstore.ValidationError),
        (lambda c: c.branch("missing", name="b"), memstore.NotFoundError),
        (lambda c: c.restore("missing"), memstore.NotFoundError),
        (lambda c: c.diff("c1", "missing"), memstore.NotFoundError),
        (lambda c: c.cleanup("t", keep_last=-1), memstore.ValidationError),
    ],
)
def test_bad_input_writes_nothing(cp: memstore.Checkpoints, call: Any, error: type) -> None:
    cp.save("t", {"v": 1}, checkpoint_id="c1")
    with pytest.raises(error):
        call(cp)
    assert [c.id for c in cp.find("t")] == ["c1"] and cp.find("other") == []


def test_cycles_cannot_be_made_even_by_hand(file_store: memstore.Store) -> None:
    cp = file_store.checkpoints()
    a = cp.save("t", {"v": 1})
    b = cp.save("t", {"v": 2})
    file_store.connection.execute(
        "UPDATE memstore_checkpoints SET parent_id = ? WHERE id = ?", (b, a)
    )
    assert [c.id for c in cp.history("t")][:2] == [b, a]  # the walk is bounded, not endless


def test_a_parent_cycle_made_by_hand_is_walked_once_and_reported(store: memstore.Store) -> None:
    cp = store.checkpoints()
    ids = [cp.save("t", {"step": n, "big": "x" * 1000}) for n in range(5)]
    # ids[0] <- ids[1] <- ... <- ids[4]; now make ids[0]'s parent ids[3]: a cycle of four.
    sql(store, "UPDATE memstore_checkpoints SET parent_id = ? WHERE id = ?", (ids[3], ids[0]))
    started = time.monotonic()
    assert [c.id for c in cp.history("t", limit=1)] == [ids[4]]
    walked = [c.id for c in cp.history("t")]
    assert time.monotonic() - started < 5
    assert walked == [ids[4], ids[3], ids[2], ids[1], ids[0]]  # each once, nearest first
    problems = cp.check()
    assert len(problems) == 1 and "form a cycle" in problems[0]
    assert store.check() == problems


def test_history_and_find_filter_and_limit_in_sql(store: memstore.Store) -> None:
    cp = store.checkpoints()
    ids = [
        cp.save("t", {"n": n}, tags=["even"] if n % 2 == 0 else [], metadata={"n": n})
        for n in range(10)
    ]
    assert [c.state["n"] for c in cp.history("t", tags=["even"], limit=2)] == [8, 6]
    assert [c.state["n"] for c in cp.history("t", before=ids[5], limit=3)] == [4, 3, 2]
    assert [c.state["n"] for c in cp.find("t", tags=["even"], before=ids[5])] == [4, 2, 0]
    assert [c.state["n"] for c in cp.find("t", where={"metadata.n": {"$gte": 7}}, limit=2)] == [
        9,
        8,
    ]
    assert cp.find("t", tags=["even", "odd"]) == []


def test_saves_to_one_thread_on_many_connections_keep_one_line(store_url: str) -> None:
    """A save's parent is the branch's newest checkpoint: saves on many connections at once
    must each find the one saved before (on PostgreSQL two took the same parent; on a
    file, two saved in the same millisecond left the older the "newest"), so that the
    history walks back through every one."""
    with memstore.Store(store_url) as store:
        store.checkpoints().save("t", {"step": "start"})

    def work(store: memstore.Store, n: int) -> None:
        checkpoints = store.checkpoints()
        for i in range(15):
            checkpoints.save("t", {"step": f"{n}-{i}"})

    on_connections(store_url, work)
    with memstore.Store(store_url) as store:
        history = store.checkpoints().history("t")
        assert len(history) == 61
        assert history[-1].state == {"step": "start"}
        parents = [c.parent_id for c in history]
        assert len(set(parents)) == 61  # one child each: a line, no fork
        assert store.checkpoints().latest("t") == history[0]
        assert store.check() == []
