"""A collection's new rows wait for its full-text index in batches (sql/0013): every
search, check and close indexes them first, whoever wrote them, and the index stays
right whatever happens to a row while it waits."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore

MATCHES = "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH ?"


@pytest.fixture
def notes(store: memstore.Store) -> memstore.Collection:
    return store.collection("notes", fts=["text"])


def indexed(store: memstore.Store, word: str) -> int:
    return int(store.connection.execute(MATCHES, (word,)).fetchall()[0][0])


def test_puts_wait_and_a_search_indexes_them_first(notes: memstore.Collection) -> None:
    notes.put("a", {"text": "zeppelin"})
    notes.put("b", {"text": "zeppelin again"})
    assert indexed(notes.store, "zeppelin") == 0  # waiting: no FTS5 write per put
    assert sorted(h.key for h in notes.search("zeppelin")) == ["a", "b"]
    assert indexed(notes.store, "zeppelin") == 2
    assert notes.store.check() == []


def test_a_batch_is_indexed_every_fts_batch_writes(notes: memstore.Collection) -> None:
    for i in range(memstore.FTS_BATCH + 1):
        notes.put(f"k{i}", {"text": f"word w{i}"})
    assert indexed(notes.store, "word") == memstore.FTS_BATCH  # the last one waits


def test_other_tools_writes_are_indexed_at_once_unless_a_batch_is_open(
    file_store: memstore.Store,
) -> None:
    notes = file_store.collection("notes", fts=["text"])
    other = sqlite3.connect(file_store.path)
    other.execute("INSERT INTO notes (key, body) VALUES ('o1', '{\"text\": \"glider\"}')")
    other.commit()
    assert other.execute(MATCHES, ("glider",)).fetchall() == [(1,)]  # no batch: at once
    notes.put("m1", {"text": "glider too"})  # opens a batch
    other.execute("INSERT INTO notes (key, body) VALUES ('o2', '{\"text\": \"glider three\"}')")
    other.commit()
    assert other.execute(MATCHES, ("glider",)).fetchall() == [(1,)]
    with other:  # what a tool searching with its own SQL does first
        assert memstore.index_pending(other) == 1
    assert other.execute(MATCHES, ("glider",)).fetchall() == [(3,)]
    other.close()
    assert sorted(h.key for h in notes.search("glider")) == ["m1", "o1", "o2"]
    assert file_store.check() == []


def test_a_reader_in_another_process_finds_what_a_writer_has_not_indexed(
    file_store: memstore.Store,
) -> None:
    notes = file_store.collection("notes", fts=["text"])
    notes.put("a", {"text": "kestrel"})  # the writer stays open: its batch too
    code = (
        "import json, sys, memstore\n"
        "with memstore.Store(sys.argv[1]) as s:\n"
        "    print(json.dumps([h.key for h in s['notes'].search('kestrel')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, file_store.path], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == ["a"]


def test_close_indexes_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    with memstore.Store(path) as store:
        store.collection("notes", fts=["text"]).put("a", {"text": "osprey"})
    conn = sqlite3.connect(path)
    assert conn.execute(MATCHES, ("osprey",)).fetchall() == [(1,)]
    conn.close()


def test_a_search_while_another_writer_holds_the_file_finds_what_is_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "n.db"
    writer = memstore.Store(path)
    notes = writer.collection("notes", fts=["text"])
    notes.put("a", {"text": "heron"})
    notes.search("heron")  # indexed
    notes.put("b", {"text": "heron two"})  # waits, the writer still open
    holder = subprocess.Popen(  # another writer, in a process of its own (locks are per
        [  # process), holding the file for longer than the reader's timeout
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.readline()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with memstore.Store(path, timeout=0.05) as reader:
        assert [h.key for h in reader["notes"].search("heron")] == ["a"]
        assert reader["notes"].check() == []  # a row waiting is no fault of the index
    holder.communicate("done\n")
    assert sorted(h.key for h in notes.search("heron")) == ["a", "b"]
    writer.close()


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "delete", "other insert", "other update", "search"]),
        st.integers(0, 7),
        st.sampled_from(["red", "red blue", "blue", "green", "blue green"]),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_searches_agree_with_the_rows_whatever_waits(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str]]
) -> None:
    path = tmp_path_factory.mktemp("fts") / "n.db"
    with memstore.Store(path) as store:
        notes = store.collection("notes", fts=["text"])
        other = sqlite3.connect(path, isolation_level=None)
        model: dict[str, str] = {}
        for op, n, text in ops:
            key = f"k{n}"
            if op == "put":
                notes.put(key, {"text": text})
                model[key] = text
            elif op == "delete":
                notes.delete(key)
                model.pop(key, None)
            elif op == "other insert" and key not in model:
                other.execute(
                    "INSERT INTO notes (key, body) VALUES (?, ?)", (key, json.dumps({"text": text}))
                )
                model[key] = text
            elif op == "other update" and key in model:
                other.execute(
                    "UPDATE notes SET body = ? WHERE key = ?", (json.dumps({"text": text}), key)
                )
                model[key] = text
            elif op == "search":
                for word in ("red", "blue", "green"):
                    found = sorted(h.key for h in notes.search(word, limit=100))
                    assert found == sorted(k for k, t in model.items() if word in t.split())
        other.close()
        for word in ("red", "blue", "green"):
            found = sorted(h.key for h in notes.search(word, limit=100))
            assert found == sorted(k for k, t in model.items() if word in t.split())
        assert store.check() == []


def test_a_file_from_schema_12_is_upgraded(tmp_path: Path) -> None:
    """Its collections' FTS triggers index every row at once (no WHEN); the upgrade gives
    them their marks, and the batches start. Its CHECKs lose their IN lists, and deleted
    messages start leaving the index in batches."""
    path = tmp_path / "old.db"
    with memstore.Store(path) as store:
        store.collection("notes", fts=["text"]).put("a", {"text": "plover"})
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM memstore_fts_progress WHERE fts = 'notes_fts'")
    conn.execute("ALTER TABLE _memstore_collections DROP COLUMN time_indexes")
    for event in ("insert", "delete", "update"):
        conn.execute(f"DROP TRIGGER notes__fts_{event}")
    conn.execute(  # as schema 12 made it
        "CREATE TRIGGER notes__fts_insert AFTER INSERT ON notes BEGIN "
        "INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text); END"
    )
    conn.execute("CREATE INDEX memstore_messages__created_idx ON memstore_messages (created_at)")
    conn.execute("DROP TABLE memstore_messages_fts_gone")  # deleted messages left at once
    conn.execute("DROP TRIGGER memstore_messages__fts_delete")
    conn.execute("DROP TRIGGER memstore_messages__fts_insert")
    mark = "(SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')"
    conn.execute(
        "CREATE TRIGGER memstore_messages__fts_delete AFTER DELETE ON memstore_messages "
        f"WHEN old.id <= {mark} BEGIN INSERT INTO memstore_messages_fts "
        "(memstore_messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END"
    )
    conn.execute(
        "CREATE TRIGGER memstore_messages__fts_insert AFTER INSERT ON memstore_messages "
        f"WHEN new.id <= {mark} BEGIN INSERT INTO memstore_messages_fts (rowid, content) "
        "VALUES (new.id, new.content); END"
    )
    version = conn.execute("PRAGMA schema_version").fetchall()[0][0]
    conn.execute("PRAGMA writable_schema = ON")  # the CHECKs as schema 3 wrote them
    for table, (listed, compared) in memstore._CHECKS_WITHOUT_LISTS.items():
        conn.execute(
            "UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE name = ?",
            (compared, listed, table),
        )
    conn.execute(f"PRAGMA schema_version = {version + 1}")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("PRAGMA user_version = 12")
    conn.close()
    with memstore.Store(path) as store:
        assert store.schema_version == 13
        assert not store.connection.execute(
            "SELECT 1 FROM sqlite_schema WHERE name = 'memstore_messages__created_idx'"
        ).fetchall()
        for table, (listed, compared) in memstore._CHECKS_WITHOUT_LISTS.items():
            (sql,) = store.connection.execute(
                "SELECT sql FROM sqlite_schema WHERE name = ?", (table,)
            ).fetchall()[0]
            assert compared in sql and listed not in sql
        assert store.connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        notes = store["notes"]
        notes.put("b", {"text": "plover two"})
        assert indexed(store, "plover") == 1  # b waits
        assert sorted(h.key for h in notes.search("plover")) == ["a", "b"]
        assert store.check() == []
        chat = store.conversations()
        chat.add_messages("t", [{"role": "user", "content": "lapwing"}], create=True)
        assert [h.key for h in chat.search("lapwing")] == ["t"]  # indexed now
        chat.pop_message("t")  # leaves the index with the next catch-up
        assert store.connection.execute(
            "SELECT count(*) FROM memstore_messages_fts_gone"
        ).fetchall() == [(1,)]
        assert chat.search("lapwing") == [] and store.check() == []
    stock = sqlite3.connect(path)  # the rewritten CHECKs hold for other tools' writes
    for bad in (
        "INSERT INTO memstore_threads (id, status) VALUES ('u', 'lost')",
        "INSERT INTO memstore_messages (thread_id, position, role, created_at) "
        "VALUES ('t', 1, 'robot', '2026-01-01T00:00:00Z')",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            stock.execute(bad)
    stock.close()
