"""The append-only event log: sequence numbers, idempotency, reading, replay, search, retention."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import memstore

from .conftest import run_processes, run_python
from .dbinfo import sql


def count_kinds(state: dict[str, int], event: memstore.Event) -> dict[str, int]:
    return {**state, event.kind: state.get(event.kind, 0) + 1}


def test_append_gives_gap_free_sequence_numbers(store: memstore.Store) -> None:
    log = store.event_log("agent-1")
    assert log.last_seq() == 0
    seqs = [log.append({"kind": "tool_call", "payload": {"i": i}}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert log.last_seq() == 5 and len(log) == 5
    other = store.event_log("agent-2")
    assert other.append({"kind": "x"}) == 1
    assert store.event_logs() == ["agent-1", "agent-2"]
    assert log.append_many([{"kind": "a"}, {"kind": "b"}]) == [6, 7]


def test_event_fields_round_trip(store: memstore.Store) -> None:
    log = store.event_log("l")
    log.append(
        {
            "id": "e1",
            "kind": "decision",
            "payload": {"choice": "retry", "n": [1, 2]},
            "at": "2026-11-20T10:00:00+01:00",
        }
    )
    event = log.get("e1")
    assert event == log.read()[0]
    assert (event.seq, event.id, event.kind, event.payload) == (
        1,
        "e1",
        "decision",
        {"choice": "retry", "n": [1, 2]},
    )
    assert event.at == "2026-11-20T09:00:00.000000Z"
    assert event.recorded_at.endswith("Z")
    log.append({"kind": "plain", "at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert log.read()[1].at == "2026-01-01T00:00:00.000000Z" and len(log.read()[1].id) == 26


def test_idempotent_append(store: memstore.Store) -> None:
    log = store.event_log("l")
    assert log.append({"id": "e1", "kind": "k", "payload": {"a": 1, "b": 2}}) == 1
    log.append({"kind": "other"})
    assert log.append({"id": "e1", "kind": "k", "payload": {"b": 2, "a": 1}}) == 1
    with pytest.raises(memstore.ConflictError, match="different content"):
        log.append({"id": "e1", "kind": "k", "payload": {"a": 2}})
    with pytest.raises(memstore.ConflictError):
        log.append({"id": "e1", "kind": "other-kind", "payload": {"a": 1, "b": 2}})
    assert log.last_seq() == 2 and len(log) == 2


def test_retry_after_crash_is_idempotent(store_url: str) -> None:
    code = """
import os, sys, memstore
log = memstore.Store(sys.argv[1]).event_log("jobs")
log.append({"id": "job-1", "kind": "started", "payload": {"task": 7}})
os._exit(3)  # the append committed, then the process died before the caller saw it
"""
    assert run_python(code, store_url).returncode == 3
    with memstore.Store(store_url) as store:
        log = store.event_log("jobs")
        assert log.append({"id": "job-1", "kind": "started", "payload": {"task": 7}}) == 1
        assert log.append({"id": "job-2", "kind": "started", "payload": {"task": 8}}) == 2


def test_events_are_immutable_on_either_engine(store: memstore.Store) -> None:
    store.event_log("l").append({"id": "e1", "kind": "k", "payload": 1})
    with pytest.raises(memstore.ValidationError, match="immutable"):
        sql(store, "UPDATE memstore_events SET payload = '2'")
    assert store.event_log("l").get("e1").payload == 1


def test_events_are_immutable_even_from_other_tools(
    file_store: memstore.Store, db_path: Path
) -> None:
    file_store.event_log("l").append({"id": "e1", "kind": "k", "payload": 1})
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE memstore_events SET payload = '2'")
    conn.close()
    assert file_store.event_log("l").get("e1").payload == 1


def test_read_since_kinds_limit_and_tail(store: memstore.Store) -> None:
    log = store.event_log("l")
    for i in range(20):
        log.append({"kind": "even" if i % 2 == 0 else "odd", "payload": i})
    assert [e.seq for e in log.read(since=15)] == [16, 17, 18, 19, 20]
    assert [e.payload for e in log.read(kinds=["odd"], limit=3)] == [1, 3, 5]
    assert [e.seq for e in log.read(since=5, until=8)] == [6, 7, 8]
    assert [e.seq for e in log.tail(3)] == [18, 19, 20]
    assert sum(1 for _ in log.stream()) == 20
    with pytest.raises(memstore.ValidationError):
        log.read(since=-1)
    with pytest.raises(memstore.ValidationError):
        log.read(kinds="odd")


def test_replay_and_snapshots(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        log = store.event_log("l")
        for kind in ["a", "b", "a", "c", "a"]:
            log.append({"kind": kind})
        full = log.replay(count_kinds, {})
        assert full == {"a": 3, "b": 1, "c": 1}
        assert log.replay(count_kinds, {}, until=2) == {"a": 1, "b": 1}
        log.snapshot(log.replay(count_kinds, {}, until=4), 4)
        log.append({"kind": "b"})
    with memstore.Store(db_path) as store:  # after reopening: the same state
        log = store.event_log("l")
        seen: list[int] = []

        def tracking(state: dict[str, int], event: memstore.Event) -> dict[str, int]:
            seen.append(event.seq)
            return count_kinds(state, event)

        assert log.replay(tracking, {}) == {"a": 3, "b": 2, "c": 1}
        assert seen == [5, 6]  # started from the snapshot at 4
        assert log.replay(count_kinds, {}, use_snapshots=False) == {"a": 3, "b": 2, "c": 1}
        with pytest.raises(memstore.ValidationError):
            log.snapshot({}, 99)
        with pytest.raises(memstore.ValidationError):
            log.snapshot({1, 2})


def test_replay_refuses_a_history_with_holes(store: memstore.Store) -> None:
    log = store.event_log("l")
    for i in range(10):
        log.append({"kind": "k", "payload": i})
    assert log.cleanup(keep_last=4) == 6
    with pytest.raises(memstore.MemstoreError, match="removed by retention"):
        log.replay(count_kinds, {})
    log.snapshot({"k": 6}, 6)
    assert log.replay(count_kinds, {}) == {"k": 10}
    assert log.append({"kind": "k"}) == 11  # numbers are never reused


def test_search_events(store: memstore.Store) -> None:
    log = store.event_log("l")
    log.append(
        {"id": "e1", "kind": "tool_call", "payload": {"tool": "web", "query": "weather in Lyon"}}
    )
    log.append({"id": "e2", "kind": "error", "payload": {"message": "timeout calling web tool"}})
    store.event_log("other").append({"kind": "error", "payload": "timeout elsewhere"})
    assert [h.key for h in log.search("timeout")] == ["e2"]
    assert [h.key for h in log.search("web", kinds=["tool_call"])] == ["e1"]
    hit = log.search("lyon")[0]
    assert hit.record.seq == 1 and "[Lyon]" in hit.snippet
    with pytest.raises(memstore.QueryError):
        log.search('"open')


def test_retention_by_age(store: memstore.Store) -> None:
    log = store.event_log("l")
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    log.append({"kind": "old", "at": old})
    log.append({"kind": "new"})
    assert log.cleanup(older_than=timedelta(days=30)) == 1
    assert [e.kind for e in log.read()] == ["new"]


@pytest.mark.parametrize(
    "event",
    [
        {"kind": ""},
        {"payload": 1},
        {"kind": 5},
        {"kind": "k", "payload": {1, 2}},
        {"kind": "k", "payload": float("nan")},
        {"kind": "k", "payload": b"bytes"},
        {"kind": "k", "id": ""},
        {"kind": "k", "id": 7},
        {"kind": "k", "at": "yesterday"},
        {"kind": "k", "at": "2026-11-21T10:00:00"},  # no time zone
        {"kind": "k", "extra": 1},
        "not a dict",
    ],
)
def test_bad_events_are_refused(store: memstore.Store, event: Any) -> None:
    log = store.event_log("l")
    with pytest.raises(memstore.ValidationError):
        log.append(event)
    with pytest.raises(memstore.ValidationError):
        log.append_many([{"kind": "fine"}, event])
    assert log.last_seq() == 0 and len(log) == 0


# Each thread its own Store (a connection of its own); every event is appended twice, the
# second time as a retry would (the same id and content), racing the other writers.
WRITER = """
import sys, memstore

def work(t):
    writer = f"{sys.argv[2]}.{t}"
    with memstore.Store(sys.argv[1], timeout=30) as store:
        log = store.event_log("shared")
        for i in range(50):
            event = {"id": f"{writer}-{i}", "kind": "w", "payload": {"writer": writer}}
            first = log.append(event)
            assert log.append(event) == first  # idempotent
"""


def test_concurrent_appends_from_processes(store_url: str) -> None:
    """8 processes of 4 threads on as many connections: sequence numbers gap-free, in
    commit order, each writer's events in its order, retries idempotent."""
    run_processes(WRITER, store_url)
    with memstore.Store(store_url) as store:
        log = store.event_log("shared")
        events = log.read()
        assert [e.seq for e in events] == list(range(1, 8 * 4 * 50 + 1))
        assert log.last_seq() == len(events) == len({e.id for e in events})
        for writer in {e.id.rsplit("-", 1)[0] for e in events}:  # each keeps its order
            mine = [int(e.id.rsplit("-", 1)[1]) for e in events if e.id.startswith(writer + "-")]
            assert mine == list(range(50))
