"""Messages indexed for search in batches (sql/0008): never missed, never twice, whoever writes.

memstore_fts_progress says up to which message id memstore_messages_fts is
complete. These tests write messages with memstore and behind its back (the
stdlib's sqlite3, as another tool would), and check after each step that a
search finds exactly the live messages and FTS5's integrity check passes.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import memstore

PENDING = memstore.PENDING_MESSAGES_SQL


def pending(store: memstore.Store) -> int:
    return int(store.connection.execute(PENDING).fetchall()[0][0])


def found(conv: memstore.Conversations, word: str) -> list[int]:
    return sorted(hit.record.position for hit in conv.search(word, limit=1000))


def chat(path: Path, *words: str) -> tuple[memstore.Store, memstore.Conversations]:
    """An open store whose thread "t" has one user message per word."""
    store = memstore.Store(path)
    conv = store.conversations()
    conv.create_thread("t")
    for word in words:
        conv.add_message("t", "user", word)
    return store, conv


def other_tool(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_add_message_indexes_every_hundred_and_search_sees_the_rest(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        conv = store.conversations()
        conv.create_thread("t")
        for i in range(memstore.INDEX_MESSAGES_EVERY - 1):
            conv.add_message("t", "user", f"word{i} common")
        assert pending(store) == 1
        indexed = store.connection.execute("SELECT count(*) FROM memstore_messages_fts_docsize")
        assert indexed.fetchall() == [(0,)]
        conv.add_message("t", "user", "the hundredth common")  # indexes the waiting ones
        assert pending(store) == 0
        conv.add_message("t", "user", "one more common")
        assert pending(store) == 1
        assert len(conv.search("common", limit=500)) == memstore.INDEX_MESSAGES_EVERY + 1
        assert pending(store) == 0 and store.check() == []


def test_close_indexes_what_waits(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        conv = store.conversations()
        conv.create_thread("t")
        conv.add_message("t", "user", "written just before closing")
    conn = other_tool(db_path)
    assert conn.execute(PENDING).fetchall() == [(0,)]
    hits = conn.execute(
        "SELECT rowid FROM memstore_messages_fts WHERE memstore_messages_fts MATCH 'closing'"
    ).fetchall()
    assert len(hits) == 1
    conn.close()


def test_deleted_messages_leave_the_index_in_batches(db_path: Path) -> None:
    """An indexed message deleted (an undo, a trim, a thread deleted) waits in
    memstore_messages_fts_gone; searches never find it, and the next catch-up, or close,
    takes it out of the index."""
    store, conv = chat(db_path, "heron", "egret", "bittern")
    assert found(conv, "egret") == [2]  # all three indexed now
    conv.pop_message("t")
    conv.trim("t", keep_last=1)  # "heron" goes
    assert store.connection.execute(PENDING).fetchall() == [(1,)]
    conn = other_tool(db_path)
    gone = conn.execute("SELECT content FROM memstore_messages_fts_gone ORDER BY id")
    assert [row[0] for row in gone] == ["heron", "bittern"]
    assert conv.search("bittern") == [] and found(conv, "egret") == [2]
    assert conn.execute("SELECT count(*) FROM memstore_messages_fts_gone").fetchone() == (0,)
    conv.delete_thread("t")
    store.close()  # the thread's last message leaves the index at close
    assert conn.execute(PENDING).fetchall() == [(0,)]
    assert conn.execute("SELECT count(*) FROM memstore_messages_fts_docsize").fetchone() == (0,)
    conn.execute(
        "INSERT INTO memstore_messages_fts (memstore_messages_fts) VALUES ('integrity-check')"
    )
    conn.close()


def test_other_tools_writes_stay_in_step(db_path: Path) -> None:
    store, conv = chat(db_path, "first0", "first1", "first2")
    assert found(conv, "first0") == [1]  # indexed now: ids 1-3
    conv.add_message("t", "user", "waiting")  # id 4, not indexed yet
    conn = other_tool(db_path)
    conn.execute(
        "INSERT INTO memstore_messages (thread_id, position, role, content, created_at) "
        "VALUES ('t', 5, 'user', 'from another tool', '2026-11-22T00:00:00.000000Z')"
    )
    conn.execute("UPDATE memstore_messages SET content = 'edited indexed' WHERE position = 2")
    conn.execute("UPDATE memstore_messages SET content = 'edited waiting' WHERE position = 4")
    conn.execute("DELETE FROM memstore_messages WHERE position = 3")
    conn.close()
    assert store.check() == []
    assert found(conv, "edited") == [2, 4]
    assert found(conv, "tool") == [5]
    assert conv.search("first1") == [] and conv.search("waiting NOT edited") == []
    assert conv.thread("t").message_count == 4
    store.close()


def test_an_id_sqlite_reuses_is_indexed(db_path: Path) -> None:
    """Deleting the newest messages lets SQLite give their ids again: indexed at once."""
    store, conv = chat(db_path, "alpha", "beta", "gamma")
    assert found(conv, "gamma") == [3]  # ids 1-3 indexed
    conn = other_tool(db_path)
    conn.execute("DELETE FROM memstore_messages WHERE position >= 2")
    conn.execute(
        "INSERT INTO memstore_messages (thread_id, position, role, content, created_at) "
        "VALUES ('t', 2, 'user', 'delta', '2026-11-22T00:00:00.000000Z')"
    )
    assert conn.execute("SELECT max(id) FROM memstore_messages").fetchone() == (2,)  # reused
    conn.close()
    assert found(conv, "delta") == [2]
    assert conv.search("beta") == [] and conv.search("gamma") == []
    assert store.check() == []
    store.close()


def test_an_explicit_id_below_the_mark_is_indexed_at_once(db_path: Path) -> None:
    store, conv = chat(db_path, "one", "two", "three")
    conn = other_tool(db_path)
    conn.execute("DELETE FROM memstore_messages WHERE id = 2")
    found(conv, "one")  # catches up: every id up to 3 is indexed
    conn.execute(
        "INSERT INTO memstore_messages (id, thread_id, position, role, content, created_at) "
        "VALUES (2, 't', 9, 'user', 'refilled', '2026-11-22T00:00:00.000000Z')"
    )
    conn.close()
    assert pending(store) == 0  # nothing waits, yet the row is in the index
    assert found(conv, "refilled") == [9] and store.check() == []
    store.close()


def test_check_reports_and_repair_restores_a_lost_mark(db_path: Path) -> None:
    store, conv = chat(db_path, "kept")
    store.connection.execute("DELETE FROM memstore_fts_progress")
    assert any("memstore_fts_progress" in p for p in store.check())
    assert "rebuilt the full-text index memstore_messages_fts" in store.repair()
    assert store.check() == [] and found(conv, "kept") == [1]
    conv.add_message("t", "user", "kept again")
    assert found(conv, "kept") == [1, 2]
    store.close()


def test_a_version_7_file_starts_with_every_message_indexed(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    for version, path in memstore._migrations():
        if version <= 7:
            conn.executescript(path.read_text())
    conn.execute(f"PRAGMA application_id = {memstore.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 7")
    conn.execute("INSERT INTO memstore_threads (id) VALUES ('t')")
    for position, word in enumerate(("old", "older"), start=1):
        conn.execute(
            "INSERT INTO memstore_messages (thread_id, position, role, content) "
            "VALUES ('t', ?, 'user', ?)",
            (position, word),
        )
    conn.close()
    with memstore.Store(db_path) as store:
        assert store.schema_version == memstore.SCHEMA_VERSION and pending(store) == 0
        conv = store.conversations()
        assert found(conv, "older") == [2] and store.check() == []


# One step: memstore adds or pops, or another tool inserts, edits or deletes, or a search
# catches up.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2)),
        st.tuples(st.just("insert"), st.integers(0, 2)),
        st.tuples(st.just("edit"), st.integers(0, 50)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("delete newest"), st.integers(1, 3)),
        st.tuples(st.just("pop"), st.integers(0, 2)),
        st.tuples(st.just("search"), st.just(0)),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_any_mix_of_writers_keeps_search_exact(
    tmp_path: Path, steps: list[tuple[str, int]]
) -> None:
    path = tmp_path / f"mix-{abs(hash(tuple(steps)))}-{time.monotonic_ns()}.db"
    store = memstore.Store(path)
    conv = store.conversations()
    for t in range(3):
        conv.create_thread(f"t{t}")
    conn = other_tool(path)
    words: dict[int, str] = {}  # message id -> its one word
    for serial, (op, n) in enumerate(steps):
        word = f"w{serial}x"
        if op == "add":
            conv.add_message(f"t{n}", "user", word)
        elif op == "insert":
            conn.execute(
                "INSERT INTO memstore_messages (thread_id, position, role, content, created_at) "
                "SELECT ?, coalesce(max(position), 0) + 1, 'user', ?, "
                "'2026-11-22T00:00:00.000000Z' FROM memstore_messages WHERE thread_id = ?",
                (f"t{n}", word, f"t{n}"),
            )
        elif op == "edit" and words:
            target = sorted(words)[n % len(words)]
            conn.execute("UPDATE memstore_messages SET content = ? WHERE id = ?", (word, target))
        elif op == "delete" and words:
            conn.execute(
                "DELETE FROM memstore_messages WHERE id = ?", (sorted(words)[n % len(words)],)
            )
        elif op == "delete newest":
            conn.execute(
                "DELETE FROM memstore_messages WHERE id IN "
                "(SELECT id FROM memstore_messages ORDER BY id DESC LIMIT ?)",
                (n,),
            )
        elif op == "pop":
            conv.pop_message(f"t{n}")
        elif op == "search":
            conv.search("nothing")
        words = dict(conn.execute("SELECT id, content FROM memstore_messages").fetchall())
    for message_id, word in words.items():
        hits = conv.search(word)
        assert [h.record.content for h in hits] == [word], (message_id, word)
    conv.search("nothing")  # after a catch-up, the index holds the live messages, no others
    total = conn.execute("SELECT count(*) FROM memstore_messages_fts_docsize").fetchone()[0]
    assert total == len(words)
    assert conn.execute("SELECT count(*) FROM memstore_messages_fts_gone").fetchone() == (0,)
    assert store.check() == []
    conn.close()
    store.close()


def test_closing_a_store_that_only_read_takes_no_write_lock(db_path: Path) -> None:
    writer, _ = chat(db_path, "waiting for the index")
    reader = memstore.Store(db_path, timeout=0.1)
    assert reader.conversations().messages("t")[0].content == "waiting for the index"
    writer.connection.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    start = time.monotonic()
    reader.close()
    assert time.monotonic() - start < 0.1
    writer.connection.execute("COMMIT")
    writer.close()  # it wrote messages: it indexes them
    with memstore.Store(db_path) as store:
        assert pending(store) == 0
