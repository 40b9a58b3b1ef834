"""store.transaction(): nesting, rollback on any exception, BEGIN IMMEDIATE."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import memstore

from .dbinfo import on_connections, other_tool


class Boom(Exception):
    pass


def test_exception_rolls_back_everything(store: memstore.Store) -> None:
    a, b = store.collection("a", fts=["t"]), store.collection("b")
    a.put("before", {"t": "kept"})
    with pytest.raises(Boom), store.transaction():
        a.put("x", {"t": "gone"})
        a.put_many([(f"k{i}", {"t": "bulk gone"}) for i in range(200)])
        b.put("y", {})
        a.delete("before")
        with store.transaction():
            b.put("z", {})
        raise Boom
    assert a.keys() == ["before"] and b.keys() == []
    assert [h.key for h in a.search("kept")] == ["before"]
    assert a.search("gone") == []
    assert store.check() == []


def test_nested_block_rolls_back_alone_when_caught(store: memstore.Store) -> None:
    notes = store.collection("notes")
    with store.transaction():
        notes.put("outer", {})
        with pytest.raises(Boom), store.transaction():
            notes.put("inner", {})
            raise Boom
        notes.put("after", {})
    assert sorted(notes.keys()) == ["after", "outer"]


def test_memstore_errors_inside_roll_back(store: memstore.Store) -> None:
    notes = store.collection("notes")
    with pytest.raises(memstore.ValidationError), store.transaction():
        notes.put("a", {})
        notes.put("b", {"bad": {1}})
    assert notes.count() == 0


def test_outer_transaction_is_immediate(db_path: Path) -> None:
    with memstore.Store(db_path) as store, memstore.Store(db_path, timeout=0.05) as other:
        store.collection("notes")
        with store.transaction(), pytest.raises(memstore.BusyError):
            other.collection("notes").put("x", {})
        other.collection("notes").put("x", {})


def test_commit_is_visible_only_after_block(db_path: Path) -> None:
    with memstore.Store(db_path) as store, memstore.Store(db_path) as reader:
        notes = store.collection("notes")
        with store.transaction():
            notes.put("a", {})
            assert reader.collection("notes").count() == 0
        assert reader.collection("notes").count() == 1


def test_threads_share_a_store(file_store: memstore.Store) -> None:
    notes = file_store.collection("notes", fts=["text"])
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                with file_store.transaction():
                    notes.put(f"{n}-{i}", {"text": f"thread {n}"})
                    notes.count()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert notes.count() == 200 and notes.check() == []


def test_raw_connection_transaction_is_respected(store: memstore.Store) -> None:
    notes = store.collection("notes")
    conn = store.connection
    conn.execute("BEGIN")
    notes.put("a", {})
    conn.execute("ROLLBACK")
    assert notes.count() == 0


def test_no_commit_on_interrupt(store: memstore.Store) -> None:
    notes = store.collection("notes")
    with pytest.raises(KeyboardInterrupt), store.transaction():
        notes.put("a", {})
        raise KeyboardInterrupt
    assert notes.count() == 0
    assert store._engine.idle(store.connection)


def test_driver_errors_are_translated(store: memstore.Store) -> None:
    store.collection("notes")
    with pytest.raises(memstore.MemstoreError) as info, store.transaction():
        store._fetch("INSERT INTO no_such_table VALUES (1)")
    assert isinstance(info.value.__cause__, store._engine.errors)


def test_a_lost_connection_is_a_memstore_error_and_loses_nothing_committed(pg_url: str) -> None:
    """The server ends the connection (a restart, a failover, an administrator): the next
    call raises memstore's error, never the driver's; the one after connects again
    (test_engines.py); closing the store works either way."""
    with memstore.Store(pg_url) as store:
        notes = store.collection("notes")
        notes.put("a", {"n": 1})
        (pid,) = store._fetch("SELECT pg_backend_pid()")[0]
        with store.transaction(immediate=False):  # its COMMIT's result is left for later
            assert notes.get("a") == {"n": 1}
        other_tool(pg_url, "SELECT pg_terminate_backend(?)", [pid])
        with pytest.raises(memstore.MemstoreError):
            notes.put("b", {"n": 2})
        with store.transaction():
            notes.put("c", {"n": 3})
        assert notes.get("a") == {"n": 1}
        (pid,) = store._fetch("SELECT pg_backend_pid()")[0]
        other_tool(pg_url, "SELECT pg_terminate_backend(?)", [pid])
    with memstore.Store(pg_url) as store:
        assert store["notes"].keys(order_by="key") == ["a", "c"]


def test_a_block_of_one_write_is_atomic_however_it_ends(store_url: str) -> None:
    """On PostgreSQL a block holding one write sends it alone, autocommitted (its BEGIN is
    held back until a second statement or a read): what it does must not differ."""
    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        with store.transaction():
            notes.put("a", {"n": 1})
        with pytest.raises(RuntimeError), store.transaction():
            notes.put("b", {"n": 2})
            raise RuntimeError("the caller's own error: the write is dropped")
        with pytest.raises(memstore.ValidationError), store.transaction():
            store._fetch('INSERT INTO "notes" (key, body) VALUES (?, ?)', ["c", "not json"])
        with store.transaction():
            notes.put("d", {"n": 4})
            assert notes.get("d") == {"n": 4}  # a read after the held write sees it
            with store.transaction():  # a savepoint sends what was held first
                notes.put("e", {"n": 5})
        assert notes.keys(order_by="key") == ["a", "d", "e"]
    with memstore.Store(store_url) as other:
        assert other["notes"].keys(order_by="key") == ["a", "d", "e"]


def test_what_follows_a_block_that_only_read_sees_and_is_seen(store_url: str) -> None:
    """On PostgreSQL a block that only read ends with a COMMIT nobody waits for: a write
    right after it (in a block or not), another connection's read of that write, a
    stream and a close must all behave as if it had been waited for."""
    with memstore.Store(store_url) as store:
        notes = store.collection("notes", fields={"n": int})
        notes.put_many([(f"k{i}", {"n": i}) for i in range(300)])
        with store.transaction(immediate=False):
            assert notes.get("k1") == {"n": 1}
        store._fetch('UPDATE "notes" SET body = ? WHERE key = ?', ['{"n": -1}', "k1"])
        with memstore.Store(store_url) as other:  # seen at once by another connection
            assert other["notes"].get("k1") == {"n": -1}
        with store.transaction(immediate=False):
            assert notes.count({"n": {"$gte": 0}}) == 299
        with store.transaction(immediate=False):  # read blocks one after another
            assert notes.get("k2") == {"n": 2}
        assert len(list(notes.rows())) == 300  # a stream (a server-side cursor) after one
        with store.transaction(immediate=False):
            assert notes.get("k3") == {"n": 3}
        notes.put("new", {"n": 1000})
        assert notes.get("new") == {"n": 1000}
        with store.transaction(immediate=False):
            notes.get("k4")
    with memstore.Store(store_url) as store:  # closed right after a read block: all there
        assert len(store["notes"]) == 301


def test_read_modify_write_blocks_of_many_connections_lose_no_update(store_url: str) -> None:
    """SQLite has one writer: a block reads a counter and writes it plus one, and no other
    block of any connection comes between. On PostgreSQL, where writers run at once,
    the same blocks must not lose updates either (without the writers' lock, 55 of 200
    counted)."""
    with memstore.Store(store_url) as store:
        store.collection("counters").put("hits", {"n": 0})

    def work(store: memstore.Store, n: int) -> None:
        counters = store.collection("counters")
        for _ in range(25):
            with store.transaction():
                hits = counters.get("hits")["n"]
                time.sleep(0.001)  # every chance for another block to come between
                counters.put("hits", {"n": hits + 1})

    on_connections(store_url, work)
    with memstore.Store(store_url) as store:
        assert store.collection("counters").get("hits") == {"n": 100}


def test_an_exclusive_block_reads_what_the_one_before_it_wrote(store_url: str) -> None:
    """A block begun while another connection's is under way waits for it, then reads its
    writes; a block that waits longer than ``timeout`` raises BusyError, writing nothing."""
    with memstore.Store(store_url) as first, memstore.Store(store_url, timeout=0.2) as second:
        first.collection("notes").put("a", {"v": 1})
        inside, read = threading.Event(), []

        def later() -> None:
            inside.wait(10)
            with second.transaction():
                notes = second.collection("notes")
                read.append(notes.get("a"))
                notes.put("b", read[-1])

        with first.transaction():
            assert first["notes"].get("a") == {"v": 1}
            first["notes"].put("a", {"v": 2})
            with pytest.raises(memstore.BusyError), second.transaction():
                second.collection("notes").put("c", {"v": 0})
                second.collection("notes").get("a")  # on PostgreSQL the wait ends here
            thread = threading.Thread(target=later)
            thread.start()
            inside.set()
            time.sleep(0.1)  # the other block is waiting now (for 0.2 s at most)
        thread.join()
        assert read == [{"v": 2}]
        assert first["notes"].keys(order_by="key") == ["a", "b"]


def test_blocks_not_exclusive_run_at_once_on_postgresql(pg_url: str) -> None:
    """``exclusive=False``: two connections' write blocks inside at the same moment (a
    barrier in each: exclusive blocks would wait for each other past its timeout)."""
    with memstore.Store(pg_url) as store:
        store.collection("notes")
    together = threading.Barrier(2, timeout=10)

    def work(store: memstore.Store, n: int) -> None:
        with store.transaction(exclusive=False):
            notes = store.collection("notes")
            notes.put(f"t{n}", {"t": n})
            assert notes.count() == 1  # its own write, not the other's (uncommitted)
            together.wait()

    on_connections(pg_url, work, count=2)
    with memstore.Store(pg_url) as store:
        assert store["notes"].keys(order_by="key") == ["t0", "t1"]


def test_memstores_own_writes_do_not_wait_for_an_exclusive_block_on_postgresql(
    pg_url: str,
) -> None:
    """Only blocks opened as exclusive take turns: a put, a put_many, an event log's
    append and a conversation's message outside any block run beside one (on SQLite,
    with one writer, they would wait for it: BusyError after 0.2 s)."""
    with memstore.Store(pg_url) as first, memstore.Store(pg_url, timeout=0.2) as second:
        first.collection("notes")
        with first.transaction():
            first["notes"].put("a", {})
            first["notes"].get("a")  # the block's lock is taken by now
            notes = second.collection("notes")
            notes.put("b", {})
            notes.put_many([(f"k{i}", {}) for i in range(300)])
            second.event_log("audit").append({"kind": "seen"})
            second.conversations().add_messages(
                "t", [{"role": "user", "content": "hi"}], create=True
            )
        assert len(first["notes"]) == 302


def test_a_deferred_block_whose_snapshot_went_stale_cannot_write(store_url: str) -> None:
    """``immediate=False``: reads see one snapshot; once another connection has written
    (the same row, on PostgreSQL), the block's write raises BusyError and is undone."""
    with memstore.Store(store_url) as first, memstore.Store(store_url, timeout=0.2) as second:
        first.collection("notes").put("x", {"v": 1})
        notes = second.collection("notes")
        with pytest.raises(memstore.BusyError), second.transaction(immediate=False):
            assert notes.get("x") == {"v": 1}
            first["notes"].put("x", {"v": 2})
            assert notes.get("x") == {"v": 1}  # the snapshot
            notes.put("x", {"v": 3})
        assert notes.get("x") == {"v": 2}
