"""StorePool: stores for many threads at once, on a file and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import memstore

from .dbinfo import other_tool


def test_threads_hold_stores_at_once_and_write_every_record(store_url: str) -> None:
    """Four threads inside their blocks at the same moment (a barrier in the block: with
    one shared store they would wait for each other for ever), then each writes its
    records; the pool opened no more stores than its size."""
    with memstore.StorePool(store_url, size=4, timeout=30) as pool:
        with pool.store() as store:
            store.collection("notes", fields={"t": int})
        together = threading.Barrier(4, timeout=10)
        failed: list[BaseException] = []

        def work(t: int) -> None:
            try:
                with pool.store() as store:
                    together.wait()
                    notes = store.collection("notes")
                    for i in range(25):
                        notes.put(f"{t}-{i}", {"t": t})
                for i in range(25, 50):  # a store a call: taken and given back each time
                    with pool.store() as store:
                        store.collection("notes").put(f"{t}-{i}", {"t": t})
            except BaseException as err:
                failed.append(err)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failed == []
        assert "4/4 open" in repr(pool)
        with pool.store() as store:
            notes = store.collection("notes")
            assert notes.count() == 200
            assert [notes.count({"t": t}) for t in range(4)] == [50] * 4
            assert store.check() == []


def test_a_pool_in_use_makes_the_next_thread_wait_then_busy(tmp_path: Path) -> None:
    with memstore.StorePool(tmp_path / "a.db", size=1, wait=0.2) as pool:
        with pool.store():
            started = time.monotonic()
            taken: list[BaseException] = []

            def other() -> None:
                try:
                    with pool.store():
                        pass
                except memstore.BusyError as err:
                    taken.append(err)

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
            assert len(taken) == 1 and "all 1 stores" in str(taken[0])
            assert 0.15 <= time.monotonic() - started < 5
        given_back = threading.Event()

        def holder() -> None:
            with pool.store():
                given_back.wait(5)
                time.sleep(0.05)

        thread = threading.Thread(target=holder)
        thread.start()
        time.sleep(0.05)
        given_back.set()
        with pool.store() as store:  # waits for the holder's store, then gets it
            assert store.collections() == []
        thread.join()


def test_closing_closes_idle_stores_now_and_the_others_as_they_come_back(
    tmp_path: Path,
) -> None:
    pool = memstore.StorePool(tmp_path / "a.db", size=2)
    with pool.store() as held:
        with pool.store() as idle_later:
            pass
        pool.close()
        assert idle_later._conn is None
        held.collection("notes").put("a", {})  # still its thread's until its block ends
    assert held._conn is None
    with pytest.raises(memstore.MemstoreError, match="closed"), pool.store():
        pass
    pool.close()  # twice: nothing more to do
    with memstore.Store(tmp_path / "a.db") as store:
        assert store["notes"].keys() == ["a"]


def test_a_store_given_back_closed_or_in_a_transaction_is_not_handed_out(
    tmp_path: Path,
) -> None:
    with memstore.StorePool(tmp_path / "a.db", size=2) as pool:
        with pool.store() as first:
            first.close()
        with pool.store() as second:
            assert second is not first and second._conn is not None
            block = second.transaction()
            block.__enter__()  # entered by hand, never left
            second.collection("notes").put("a", {})
        with pool.store() as third:
            assert third is not second and third.collection("notes").keys() == []
        assert "1/2 open" in repr(pool)


def test_a_pooled_store_whose_connection_was_lost_connects_again(pg_url: str) -> None:
    with memstore.StorePool(pg_url, size=1) as pool:
        with pool.store() as store:
            store.collection("notes").put("a", {})
            pid = store.connection.info.backend_pid
        other_tool(pg_url, "SELECT pg_terminate_backend(?)", [pid])
        with pool.store() as store, pytest.raises(memstore.MemstoreError, match="again"):
            store.collection("notes").get("a")
        with pool.store() as store:
            assert store.collection("notes").get("a") == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size must be"),
        ({"size": True}, "size must be"),
        ({"wait": -1}, "wait must be"),
        ({"wait": float("nan")}, "wait must be"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(memstore.ValidationError, match=message):
        memstore.StorePool(tmp_path / "a.db", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "a.db").exists()


def test_a_memory_store_cannot_be_pooled_and_a_bad_path_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(memstore.ValidationError, match="memory"):
        memstore.StorePool(":memory:")
    with pytest.raises(memstore.MemstoreError, match="does not exist"):
        memstore.StorePool(tmp_path / "missing" / "a.db")
