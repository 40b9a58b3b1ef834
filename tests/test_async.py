"""AsyncStore: the sync API as awaitables on a worker thread, shared by many coroutines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import memstore


@pytest.fixture(params=["memory", "file"])
async def astore(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[memstore.AsyncStore]:
    path = ":memory:" if request.param == "memory" else str(tmp_path / "agent.db")
    async with memstore.AsyncStore(path) as opened:
        yield opened


async def test_every_layer_through_the_async_api(astore: memstore.AsyncStore) -> None:
    notes = await astore.collection("notes", fields={"kind": str}, fts=["text"])
    await notes.put("n1", {"kind": "todo", "text": "buy milk"})
    key = await notes.add({"kind": "idea", "text": "async memstore"})
    assert await notes.get("n1") == {"kind": "todo", "text": "buy milk"}
    assert await notes.count({"kind": "idea"}) == 1
    assert [h.key for h in await notes.search("async")] == [key]
    assert [r.key async for r in notes.rows(order_by="key")] == sorted(["n1", key])
    assert notes.name == "notes"
    with pytest.raises(memstore.NotFoundError):
        await notes.get("missing")

    log = await astore.event_log("audit")
    assert await log.append({"kind": "started"}) == 1
    await log.append_many([{"kind": "step"}, {"kind": "done"}])
    assert [e.kind async for e in log.stream()] == ["started", "step", "done"]
    assert [e.seq for e in await log.tail(2)] == [2, 3]

    chat = await astore.conversations()
    thread = await chat.create_thread(title="hello")
    await chat.add_message(thread, "user", "hi", usage={"input_tokens": 3})
    await chat.add_message(thread, "assistant", "hello!", usage={"output_tokens": 5})
    assert [m.content for m in await chat.messages(thread)] == ["hi", "hello!"]
    assert (await chat.usage(thread))["output_tokens"] == 5

    cps = await astore.checkpoints()
    first = await cps.save("t1", {"step": 1})
    await cps.save("t1", {"step": 2})
    assert await cps.restore(first) == {"step": 1}
    assert (await cps.latest("t1")).state == {"step": 2}

    graph = await astore.graph("facts")
    await graph.add_node("alice", "person")
    await graph.add_node("lyon", "city")
    await graph.add_edge("alice", "lyon", "lives_in")
    assert [n.id for n in await graph.neighbors("alice")] == ["lyon"]

    cache = await astore.cache("llm", ttl=60)
    await cache.set("q", {"a": 1})
    assert await cache.get("q") == {"a": 1}
    assert await cache.ttl == 60.0

    assert await astore.check() == []
    assert "collections" in await astore.stats()
    assert await astore.schema_version == memstore.SCHEMA_VERSION


async def test_errors_are_memstores_and_change_nothing(astore: memstore.AsyncStore) -> None:
    notes = await astore.collection("notes", fields={"n": int})
    await notes.put("a", {"n": 1})
    with pytest.raises(memstore.ValidationError):
        await notes.put("a", {"n": "not a number"})
    with pytest.raises(memstore.ValidationError):
        await notes.put("b", {1, 2})
    with pytest.raises(memstore.QueryError):
        await notes.query({"n": {"$nope": 1}})
    assert await notes.get("a") == {"n": 1}
    assert await notes.count() == 1
    cache = await astore.cache("c")
    with pytest.raises(AttributeError, match=r"cache\.get"):
        cache.memoize  # noqa: B018
    with pytest.raises(AttributeError):
        astore.no_such_method  # noqa: B018


async def test_opening_errors_surface_on_open(tmp_path: Path) -> None:
    with pytest.raises(memstore.MemstoreError):
        async with memstore.AsyncStore(tmp_path / "missing" / "dir" / "a.db"):
            pass
    with pytest.raises(memstore.ValidationError):
        await memstore.AsyncStore.open(tmp_path / "a.db", synchronous="sometimes")
    failed = memstore.AsyncStore(tmp_path / "a.db", timeout=-1)
    with pytest.raises(memstore.ValidationError):
        await failed.collection("notes")
    with pytest.raises(memstore.ValidationError):  # still the reason, not "closed"
        await failed.collection("notes")
    failed._thread.join(timeout=5)
    assert not failed._thread.is_alive()  # the worker did not stay behind
    with memstore.Store(tmp_path / "b.db") as store, pytest.raises(memstore.ValidationError):
        memstore.AsyncStore(store, timeout=1)


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = await memstore.AsyncStore.open(tmp_path / "a.db")
    notes = await store.collection("notes")
    await notes.put("a", {})
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(memstore.MemstoreError, match="closed"):
        await notes.get("a")
    with memstore.Store(tmp_path / "a.db") as reopened:
        assert reopened.collection("notes").get("a") == {}


@pytest.mark.parametrize("workers", [1, 4])
async def test_many_concurrent_writers_lose_nothing(store_url: str, workers: int) -> None:
    """30 coroutines' writes, and read-modify-write blocks that take turns (with four
    workers, on four connections: on PostgreSQL the blocks are exclusive): nothing lost."""
    async with memstore.AsyncStore(store_url, workers=workers, timeout=30) as store:
        notes = await store.collection("notes", fields={"w": int})
        counters = await store.collection("counters")
        await counters.put("hits", {"n": 0})

        async def writer(w: int) -> None:
            for i in range(20):
                await notes.put(f"w{w}-{i}", {"w": w, "i": i})
                # read-modify-write: only correct if no other coroutine interleaves
                async with store.transaction():
                    current = await counters.get("hits")
                    await asyncio.sleep(0)  # give the others every chance to interleave
                    await counters.put("hits", {"n": current["n"] + 1})

        await asyncio.gather(*(writer(w) for w in range(30)))
        assert await notes.count() == 600
        assert [await notes.count({"w": w}) for w in range(30)] == [20] * 30
        assert await counters.get("hits") == {"n": 600}
    with memstore.Store(store_url) as sync:
        assert sync.check() == []


async def test_other_coroutines_wait_for_a_transaction(astore: memstore.AsyncStore) -> None:
    log = await astore.event_log("order")
    inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with astore.transaction():
            await log.append({"kind": "tx-1"})
            inside.set()
            await release.wait()
            await log.append({"kind": "tx-2"})

    async def outsider() -> None:
        await inside.wait()
        await log.append({"kind": "outside"})

    task, other = asyncio.create_task(holder()), asyncio.create_task(outsider())
    await inside.wait()
    await asyncio.sleep(0.05)
    assert not other.done()  # waiting for the transaction, not running inside it
    release.set()
    await asyncio.gather(task, other)
    assert [e.kind for e in await log.read()] == ["tx-1", "tx-2", "outside"]


async def test_tasks_started_inside_a_transaction_run_in_it(astore: memstore.AsyncStore) -> None:
    notes = await astore.collection("notes")
    with pytest.raises(RuntimeError):
        async with astore.transaction():
            await asyncio.gather(*(notes.put(f"k{i}", {"i": i}) for i in range(10)))
            assert await notes.count() == 10
            raise RuntimeError("undo all ten")
    assert await notes.count() == 0


async def test_nested_transactions_roll_back_only_their_block(
    astore: memstore.AsyncStore,
) -> None:
    notes = await astore.collection("notes")
    async with astore.transaction():
        await notes.put("outer", {})
        with pytest.raises(ValueError):
            async with astore.transaction():
                await notes.put("inner", {})
                raise ValueError("inner only")
        await notes.put("after", {})
    assert sorted(await notes.keys()) == ["after", "outer"]


async def test_cancelled_transaction_is_rolled_back(tmp_path: Path) -> None:
    async with memstore.AsyncStore(tmp_path / "a.db") as store:
        notes = await store.collection("notes", fts=["text"])
        await notes.put("kept", {"text": "before"})
        started = asyncio.Event()

        async def half_done() -> None:
            async with store.transaction():
                await notes.put("kept", {"text": "changed"})
                await notes.put("new", {"text": "half"})
                started.set()
                await asyncio.sleep(60)
                await notes.put("never", {"text": "x"})

        task = asyncio.create_task(half_done())
        await started.wait()
        waiting = asyncio.create_task(notes.put("other", {"text": "waits for the block"}))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await waiting
        assert sorted(await notes.keys()) == ["kept", "other"]
        assert await notes.get("kept") == {"text": "before"}
        assert [h.key for h in await notes.search("half")] == []
        assert await store.check() == []


async def test_cancelled_in_the_middle_of_a_large_write(tmp_path: Path) -> None:
    """Cancelled while the worker is writing: the write finishes, then the block rolls back."""
    async with memstore.AsyncStore(tmp_path / "a.db") as store:
        notes = await store.collection("notes", fields={"i": int}, fts=["text"])
        await notes.put("kept", {"i": -1, "text": "kept"})
        writing = threading.Event()

        def records() -> Iterator[dict[str, Any]]:  # consumed on the worker thread
            writing.set()
            for i in range(50_000):
                yield {"i": i, "text": f"record {i}"}

        async def load() -> None:
            async with store.transaction():
                await notes.put("first", {"i": -2, "text": "first"})
                await notes.put_many(records(), key=lambda r: str(r["i"]))

        task = asyncio.create_task(load())
        await asyncio.to_thread(writing.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await notes.keys() == ["kept"]
        assert [h.key for h in await notes.search("record")] == []
        assert await store.check() == []


async def test_cancelling_a_waiting_transaction_never_begins_it(
    astore: memstore.AsyncStore,
) -> None:
    notes = await astore.collection("notes")
    inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with astore.transaction():
            await notes.put("a", {})
            inside.set()
            await release.wait()

    async def second() -> None:
        async with astore.transaction():
            await notes.put("b", {})

    first = asyncio.create_task(holder())
    await inside.wait()
    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await first
    assert await notes.keys() == ["a"]
    async with astore.transaction():  # the worker is not left inside a transaction
        await notes.put("c", {})
    assert sorted(await notes.keys()) == ["a", "c"]


async def test_a_cancelled_call_runs_only_if_it_had_started(astore: memstore.AsyncStore) -> None:
    notes = await astore.collection("notes")
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        notes.store.collection("notes").put("slow", {})
        return "done"

    running = asyncio.create_task(astore.run(slow))
    await asyncio.to_thread(started.wait, 5)  # the worker is inside slow()
    queued = asyncio.create_task(notes.put("queued", {}))
    await asyncio.sleep(0.02)
    queued.cancel()  # it has not started: it never runs
    running.cancel()  # it has started: it runs on, its result dropped
    release.set()
    for task in (queued, running):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await notes.keys() == ["slow"]
    assert await astore.run(lambda: "next") == "next"  # the worker goes on


def test_a_call_outliving_its_event_loop_leaves_the_worker_working(tmp_path: Path) -> None:
    store = memstore.AsyncStore(str(tmp_path / "agent.db"))
    release = threading.Event()

    async def leave_one_running() -> None:
        await store.run(lambda: None)  # opened
        asyncio.get_running_loop().create_task(store.run(release.wait, 5))
        await asyncio.sleep(0.01)

    asyncio.run(leave_one_running())  # the loop closes while the call runs
    release.set()
    time.sleep(0.1)  # the call ends, and its result finds the loop closed
    assert store._thread.is_alive()  # a dead worker would leave every later call waiting

    async def later() -> Any:
        try:
            return await store.run(lambda: "still here")
        finally:
            await store.close()

    assert asyncio.run(later()) == "still here"


async def test_event_loop_stays_responsive_during_a_large_put_many(tmp_path: Path) -> None:
    # Proved by handshakes, not by timing gaps (a loaded machine stalls any thread):
    # at three points in the load, the records' generator (run by put_many) waits
    # until a task on the loop answers. Had put_many run on the loop, no task could
    # answer before the load ended, and the generator's wait would time out.
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    asked: list[int] = []  # appended to by the loop, when it runs
    answered = {at: threading.Event() for at in (10_000, 50_000, 90_000)}
    threads: set[int] = set()

    def records() -> Iterator[dict[str, Any]]:
        for i in range(100_000):
            threads.add(threading.get_ident())
            if i in answered:
                loop.call_soon_threadsafe(asked.append, i)
                assert answered[i].wait(10), f"the loop did not answer at record {i}"
            yield {"i": i, "text": f"note number {i} about things"}

    async def answer() -> None:
        for at, event in answered.items():
            while at not in asked:
                await asyncio.sleep(0.001)
            event.set()

    async with memstore.AsyncStore(tmp_path / "a.db") as store:
        notes = await store.collection("notes", fields={"i": int}, fts=["text"])
        answering = asyncio.create_task(answer())
        assert await notes.put_many(records(), key=lambda r: str(r["i"])) == 100_000
        await answering
        assert await notes.count() == 100_000
        assert len(await notes.search("things", limit=5)) == 5
    assert all(event.is_set() for event in answered.values())
    assert threads and loop_thread not in threads


async def test_wraps_a_store_shared_with_threads(db_path: Path) -> None:
    with memstore.Store(db_path) as sync:
        sync.collection("notes")
        store = memstore.AsyncStore(sync)
        notes = await store.collection("notes")

        def thread_writer() -> None:
            for i in range(200):
                sync.collection("notes").put(f"sync-{i}", {"i": i})

        worker = threading.Thread(target=thread_writer)
        worker.start()
        await asyncio.gather(*(notes.put(f"async-{i}", {"i": i}) for i in range(200)))
        await asyncio.to_thread(worker.join)
        assert await notes.count() == 400
        await store.close()
        assert sync.collection("notes").count() == 400  # close() left the given store open


def test_one_store_used_from_event_loops_in_several_threads(db_path: Path) -> None:
    store = memstore.AsyncStore(db_path)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        async def main() -> None:
            notes = await store.collection("notes")
            for i in range(50):
                async with store.transaction():
                    await notes.put(f"{n}-{i}", {"n": n})

        try:
            asyncio.run(main())
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    async def count() -> int:
        notes = await store.collection("notes")
        n = int(await notes.count())
        await store.close()
        return n

    assert asyncio.run(count()) == 200


async def test_stopping_an_async_iteration_early(astore: memstore.AsyncStore) -> None:
    notes = await astore.collection("notes")
    await notes.put_many({f"k{i:04d}": {"i": i} for i in range(1000)})
    rows = notes.rows(order_by="key")
    seen = []
    async for row in rows:
        seen.append(row.key)
        if len(seen) == 3:
            break
    await rows.aclose()
    assert seen == ["k0000", "k0001", "k0002"]
    await notes.delete_where({})  # nothing left holding the table
    assert await notes.count() == 0


# -- AsyncStore(workers=n): several connections, calls at once --------------------


async def test_workers_run_calls_at_once_each_on_its_own_store(store_url: str) -> None:
    """Three calls inside at the same moment (a barrier each: with one worker the first
    would wait for the others for ever, its timeout), on three Stores."""
    async with memstore.AsyncStore(store_url, workers=3) as astore:
        assert astore.workers == 3 and "workers=3" in repr(astore)
        together = threading.Barrier(3, timeout=10)

        def inside() -> int:
            together.wait()
            return id(astore.store)  # the store of the worker running this

        stores = await asyncio.gather(*(astore.run(inside) for _ in range(3)))
        assert len(set(stores)) == 3


async def test_a_blocked_worker_holds_up_no_other_coroutine(store_url: str) -> None:
    async with memstore.AsyncStore(store_url, workers=2) as astore:
        notes = await astore.collection("notes", fields={"n": int})
        release = threading.Event()
        blocked = asyncio.create_task(astore.run(release.wait, 10))
        await notes.put_many([(str(n), {"n": n}) for n in range(600)])
        assert await notes.count({"n": {"$gte": 300}}) == 300
        seen = [row.record["n"] async for row in notes.rows(order_by="n")]  # 3 batches
        assert seen == list(range(600))
        assert not blocked.done()  # all of that ran beside the call still blocking a worker
        release.set()
        assert await blocked is True


async def test_a_transaction_keeps_to_its_worker_while_others_read_what_was_committed(
    store_url: str,
) -> None:
    async with memstore.AsyncStore(store_url, workers=3) as astore:
        notes = await astore.collection("notes", fields={"n": int})
        await notes.put("a", {"n": 1})
        inside, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with astore.transaction():
                await notes.put("a", {"n": 2})
                # Tasks it starts run inside it, on its worker, and see its writes.
                await asyncio.gather(*(notes.put(f"t{i}", {"n": i}) for i in range(10)))
                assert await notes.count() == 11
                with pytest.raises(RuntimeError):
                    async with astore.transaction():
                        await notes.delete("a")
                        raise RuntimeError("only the inner block")
                assert await notes.get("a") == {"n": 2}
                inside.set()
                await release.wait()
                raise RuntimeError("undo it all")

        task = asyncio.create_task(holder())
        await inside.wait()
        # Meanwhile, on the other workers: what was committed, not the block's writes
        # (with one worker these would wait for the block, which waits for them).
        assert await asyncio.wait_for(notes.get("a"), 10) == {"n": 1}
        assert await asyncio.wait_for(notes.count(), 10) == 1
        release.set()
        with pytest.raises(RuntimeError, match="undo it all"):
            await task
        assert await notes.get("a") == {"n": 1} and await notes.count() == 1


async def test_closing_closes_every_workers_store(pg_url: str) -> None:
    import psycopg

    def connections() -> int:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            )

    astore = await memstore.AsyncStore.open(pg_url, workers=3)
    together = threading.Barrier(3, timeout=10)
    await asyncio.gather(*(astore.run(together.wait) for _ in range(3)))
    assert connections() == 3
    await astore.close()
    deadline = time.monotonic() + 10  # a server process ends a moment after its client
    while connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections() == 0
    with pytest.raises(memstore.MemstoreError, match="closed"):
        await astore.run(lambda: None)


@pytest.mark.parametrize("workers", [0, -1, True, 2.0, "2", None])
def test_bad_workers_are_refused(tmp_path: Path, workers: Any) -> None:
    with pytest.raises(memstore.ValidationError, match="workers"):
        memstore.AsyncStore(tmp_path / "a.db", workers=workers)


async def test_workers_need_a_database_each_can_open(tmp_path: Path) -> None:
    with pytest.raises(memstore.ValidationError, match="memory"):
        memstore.AsyncStore(":memory:", workers=2)
    with memstore.Store(tmp_path / "a.db") as store:
        with pytest.raises(memstore.ValidationError, match="open Store"):
            memstore.AsyncStore(store, workers=2)
        async with memstore.AsyncStore(store) as wrapped:  # one worker: as before
            assert wrapped.workers == 1
