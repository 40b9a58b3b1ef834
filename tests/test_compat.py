"""The file works with ordinary SQLite tools: stdlib sqlite3 (3.40), the CLI, sqlite-utils."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import sqlite_utils

import memstore


@pytest.fixture
def built(db_path: Path) -> Path:
    """A store file with every kind of schema object memstore makes."""
    with memstore.Store(db_path) as store:
        events = store.collection(
            "events",
            fields={
                "event_type": str,
                "agent_id": str,
                "duration": float,
                "ok": bool,
                "n": int,
                "payload.user": str,
            },
            fts=["summary", "payload.text"],
            ttl=timedelta(days=30),
        )
        events.put_many(
            [
                {
                    "id": f"e{i}",
                    "event_type": "error" if i % 2 else "info",
                    "agent_id": "a1",
                    "duration": i / 10,
                    "ok": bool(i % 3),
                    "n": i,
                    "summary": f"tool timeout number {i}",
                    "payload": {"user": "u1", "text": "retry later"},
                }
                for i in range(200)
            ],
            key="id",
        )
        events.put("single", {"event_type": "info", "summary": "one more timeout"})
        store.collection("notes").put("n1", {"text": "plain collection"})
        log = store.event_log("agent-1")
        log.append({"id": "ev1", "kind": "tool_call", "payload": {"tool": "search"}})
        log.snapshot({"calls": 1})
        conv = store.conversations()
        conv.create_thread("t1", tags=["x"])
        conv.add_message("t1", "user", "hello from memstore")
        branch = conv.branch("t1")
        conv.add_message(branch, "assistant", "branch reply", usage={"input_tokens": 3})
        conv.merge(branch)
        cp = store.checkpoints()
        first = cp.save("t1", {"step": 1})
        cp.branch(first, name="alt")
        cp.save("t1", {"step": 2, "big": ["x" * 100] * 1000}, branch="alt")  # compressed
        g = store.graph("facts")
        g.add_node("a", "person")
        g.add_node("b", "person")
        g.add_edge("a", "b", "knows")
        g.set_profile("agent", {"style": "terse"})
        store.cache("llm").set("k", {"v": 1}, ttl=60)
        kept = store.collection("kept", history=True)
        kept.put("k", {"v": 1})
        kept.put("k", {"v": 2})
    return db_path


def test_stdlib_is_sqlite_340() -> None:
    # The point of this file: what Python 3.11 ships. A newer stdlib SQLite would
    # make these tests pass for files that 3.40 cannot read.
    assert sqlite3.sqlite_version_info[:2] <= (3, 40), sqlite3.sqlite_version


def test_stdlib_reads_everything(built: Path) -> None:
    conn = sqlite3.connect(built)
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == memstore.APPLICATION_ID
    names = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")
    ]
    for name in names:
        conn.execute(f'SELECT * FROM "{name}" LIMIT 5').fetchall()
    rows = conn.execute(
        "SELECT key, event_type, duration, payload__user FROM events "
        "WHERE event_type = 'error' ORDER BY n LIMIT 2"
    ).fetchall()
    assert rows == [("e1", "error", 0.1, "u1"), ("e3", "error", 0.3, "u1")]
    hits = conn.execute(
        "SELECT events.key FROM events_fts JOIN events ON events.id = events_fts.rowid "
        "WHERE events_fts MATCH 'timeout' ORDER BY rank"
    ).fetchall()
    assert len(hits) == 201


def test_schema_uses_nothing_newer_than_340(built: Path) -> None:
    sql = " ".join(
        r[0] or "" for r in sqlite3.connect(built).execute("SELECT sql FROM sqlite_schema")
    )
    for newer in [
        "jsonb",
        "->>",
        "->",
        "unixepoch",
        "octet_length",
        "json_pretty",
        "contentless_delete",
        "secure-delete",
        "locale",
        "timediff",
        "concat_ws",
        "strict",
    ]:
        assert newer not in sql.lower(), newer
    assert 'content="events"' in sql


def test_stdlib_writes_to_memory_layers(built: Path) -> None:
    conn = sqlite3.connect(built)
    with conn:
        conn.execute(
            "INSERT INTO memstore_events (log, seq, event_id, kind, at, payload) "
            "VALUES ('agent-1', 2, 'ev2', 'note', '2026-11-21T00:00:00.000000Z', ?)",
            ('{"text": "stdlib event"}',),
        )
        conn.execute(
            "INSERT INTO memstore_messages (thread_id, position, role, content) "
            "VALUES ('t1', 99, 'user', 'stdlib message')"
        )
    conn.close()
    with memstore.Store(built) as store:
        assert [h.key for h in store.event_log("agent-1").search("stdlib")] == ["ev2"]
        assert [h.key for h in store.conversations().search("stdlib")] == ["t1"]
        assert store.check() == []


def test_stdlib_writes_history_and_graph(built: Path) -> None:
    conn = sqlite3.connect(built)
    with conn:
        conn.execute("UPDATE kept SET body = '{\"v\": 3}' WHERE key = 'k'")
        conn.execute("INSERT INTO memstore_nodes (graph, id, kind) VALUES ('facts', 'c', 'tool')")
        conn.execute(
            "INSERT INTO memstore_edges (graph, source, target, relation) "
            "VALUES ('facts', 'b', 'c', 'uses')"
        )
    conn.close()
    with memstore.Store(built) as store:
        assert [v.record for v in store.collection("kept").history("k")] == [
            {"v": 1},
            {"v": 2},
            {"v": 3},
        ]
        assert [n.id for n in store.graph("facts").neighbors("a", depth=2)] == ["b", "c"]
        assert store.checkpoints().latest("t1", branch="alt").compressed  # type: ignore[union-attr]
        assert store.check() == []


def test_stdlib_writes_keep_fts_in_step(built: Path) -> None:
    conn = sqlite3.connect(built)
    with conn:
        conn.execute(
            "INSERT INTO events (key, body) VALUES ('std-1', ?)",
            (json.dumps({"event_type": "error", "summary": "written by stdlib sqlite3"}),),
        )
        conn.execute(
            "UPDATE events SET body = json_set(body, '$.summary', 'rewritten elsewhere') "
            "WHERE key = 'e2'"
        )
        conn.execute("DELETE FROM events WHERE key = 'e4'")
        conn.execute("INSERT INTO notes (key, body) VALUES ('n2', '{\"a\": 1}')")
        # every collection table takes a row from stock SQLite: generated columns, indexes,
        # CHECK constraints and triggers all evaluate under 3.40
        for (name,) in conn.execute("SELECT name FROM _memstore_collections").fetchall():
            conn.execute(f'INSERT INTO "{name}" (body) VALUES (\'{{"probe": true}}\')')
    conn.close()
    with memstore.Store(built) as store:
        events = store.collection("events")
        assert events.get("std-1")["summary"] == "written by stdlib sqlite3"
        assert [h.key for h in events.search("stdlib")] == ["std-1"]
        assert [h.key for h in events.search("rewritten")] == ["e2"]
        assert "e4" not in {h.key for h in events.search("timeout", limit=500)}
        row = next(events.rows({"key": "std-1"}))
        assert row.created_at.endswith("000Z") and row.created_at == row.updated_at
        assert events.count({"probe": True}) == 1
        assert store.check() == []


def test_sqlite_utils_insert_is_found_by_memstore(built: Path) -> None:
    db = sqlite_utils.Database(built)
    assert {"events", "notes", "_memstore_collections"} <= set(db.table_names())
    assert db["events"].detect_fts() == "events_fts"
    db["events"].insert(
        {
            "key": "su-1",
            "body": json.dumps({"agent_id": "a9", "summary": "inserted via sqlite-utils"}),
        }
    )
    assert db["events"].count == 202
    assert [r["key"] for r in db["events"].search("sqlite")] == ["su-1"]
    db.conn.close()
    with memstore.Store(built) as store:
        events = store.collection("events")
        assert events.get("su-1") == {"agent_id": "a9", "summary": "inserted via sqlite-utils"}
        assert [h.key for h in events.search("sqlite", where={"agent_id": "a9"})] == ["su-1"]
        assert store.check() == []


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 command-line shell")
def test_sqlite3_cli_reads_and_writes(built: Path) -> None:
    script = (
        "PRAGMA integrity_check;"
        "SELECT count(*) FROM events_fts WHERE events_fts MATCH 'timeout';"
        "INSERT INTO events (key, body) VALUES ('cli-1', '{\"summary\": \"from the shell\"}');"
    )
    result = subprocess.run(
        ["sqlite3", str(built), script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "201"]
    with memstore.Store(built) as store:
        assert [h.key for h in store.collection("events").search("shell")] == ["cli-1"]
        assert store.check() == []


def test_memstore_reopens_after_stdlib_vacuum(built: Path) -> None:
    conn = sqlite3.connect(built)
    conn.execute("VACUUM")
    conn.close()
    with memstore.Store(built) as store:
        assert store.check() == []
        assert len(store.collection("events").search("timeout", limit=500)) == 201
