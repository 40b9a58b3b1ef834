"""MemstoreSaver, proven by LangGraph's own conformance suite and by real graphs."""

from __future__ import annotations

import asyncio
import functools
import operator
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import memstore
from memstore_langgraph import MemstoreSaver, MemstoreStore

from .conftest import memstore_cli
from .dbinfo import on_postgres, other_tool, requests, statements


class SyncPath(MemstoreSaver):
    """Runs LangGraph's async conformance suite through the sync methods."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(  # type: ignore[override]
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.prune(thread_ids, strategy=strategy)


@pytest.mark.parametrize("path", ["memory", "file", "postgres"])
@pytest.mark.parametrize("kind", [MemstoreSaver, SyncPath], ids=["async", "sync"])
async def test_langgraph_conformance_suite(
    kind: type[MemstoreSaver], path: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    made = 0
    server = request.getfixturevalue("postgres_server") if path == "postgres" else None

    async def factory() -> AsyncIterator[MemstoreSaver]:
        nonlocal made
        made += 1
        if server is not None:  # a fresh database for each saver, as a fresh file
            where = server.new_database()
        else:
            where = ":memory:" if path == "memory" else str(tmp_path / f"cp{made}.db")
        async with kind(where) as saver:
            yield saver
        if server is not None:
            server.drop(where)

    registered = checkpointer_test(name=f"memstore-{kind.__name__}-{path}")(factory)
    report = await validate(registered)
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}
    assert {name for name, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.passed_all()
    assert sum(r.tests_passed for r in report.results.values()) >= 80


# -- a real graph: interrupts, resume, time travel -------------------------------


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    approved: bool


def build_graph(checkpointer: MemstoreSaver, store: MemstoreStore | None = None) -> Any:
    def plan(state: State) -> dict[str, Any]:
        return {"steps": ["plan"]}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "approve the plan?"})
        memory = get_store()
        if memory is not None:  # long-term memory: every answer ever given
            memory.put(("answers",), str(uuid.uuid4()), {"answer": answer})
        return {"steps": [f"asked:{answer}"], "approved": answer == "yes"}

    def act(state: State) -> dict[str, Any]:
        return {"steps": ["act" if state["approved"] else "stop"]}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("ask", ask)
    builder.add_node("act", act)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=checkpointer, store=store)


def test_graph_with_interrupt_resume_and_time_travel(db_path: Path) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    with MemstoreSaver(db_path) as saver:
        graph = build_graph(saver)
        first = graph.invoke({"steps": [], "approved": False}, config)
        assert first["__interrupt__"][0].value == {"question": "approve the plan?"}
        assert graph.get_state(config).next == ("ask",)

    # A new process would see the same: reopen the file, with a store in it too.
    with MemstoreSaver(db_path) as saver, MemstoreStore(db_path) as store:
        graph = build_graph(saver, store)
        done = graph.invoke(Command(resume="yes"), config)
        assert done["steps"] == ["plan", "asked:yes", "act"]
        history = list(graph.get_state_history(config))
        assert len(history) >= 4
        # Time travel: go back to the checkpoint before the question and answer otherwise.
        before_ask = next(s for s in history if s.next == ("ask",))
        replay = graph.invoke(None, before_ask.config)  # a fork that asks again
        assert replay["__interrupt__"][0].value == {"question": "approve the plan?"}
        forked = graph.invoke(Command(resume="no"), config)
        assert forked["steps"][-2:] == ["asked:no", "stop"]
        assert graph.get_state(config).values["steps"][-1] == "stop"
        # An update_state fork, as LangGraph's time-travel guide does.
        updated = graph.update_state(before_ask.config, {"steps": ["edited"]})
        assert graph.get_state(updated).values["steps"][-1] == "edited"
        # The store is not rewound by time travel: it remembers both answers.
        answers = sorted(i.value["answer"] for i in store.search(("answers",)))
        assert answers == ["no", "yes"]

    # The checkpoints are in memstore's own tables, readable by stock sqlite3.
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM memstore_lg_checkpoints WHERE thread_id = 't1'"
        ).fetchone()
        assert count == len(list(MemstoreSaver(db_path).list(config)))
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_async_graph_with_interrupt_and_resume(store_url: str) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "a1"}}
    async with MemstoreSaver(store_url) as saver:
        graph = build_graph(saver)
        first = await graph.ainvoke({"steps": [], "approved": False}, config)
        assert "__interrupt__" in first
        done = await graph.ainvoke(Command(resume="yes"), config)
        assert done["steps"] == ["plan", "asked:yes", "act"]
        states = [s async for s in graph.aget_state_history(config)]
        assert states[0].values["steps"] == ["plan", "asked:yes", "act"]


async def test_many_threads_in_parallel(store_url: str) -> None:
    async with MemstoreSaver(store_url) as saver:
        graph = build_graph(saver)

        async def run(n: int) -> list[str]:
            config: RunnableConfig = {"configurable": {"thread_id": f"p{n}"}}
            await graph.ainvoke({"steps": [], "approved": False}, config)
            result = await graph.ainvoke(Command(resume="yes" if n % 2 else "no"), config)
            return list(result["steps"])

        results = await asyncio.gather(*(run(n) for n in range(20)))
        assert all(r[-1] == ("act" if n % 2 else "stop") for n, r in enumerate(results))
        assert len({t.config["configurable"]["thread_id"] for t in saver.list(None)}) == 20


def test_sync_graph_from_many_threads(store_url: str) -> None:
    saver = MemstoreSaver(store_url)
    graph = build_graph(saver)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            config: RunnableConfig = {"configurable": {"thread_id": f"s{n}"}}
            graph.invoke({"steps": [], "approved": False}, config)
            graph.invoke(Command(resume="yes"), config)
        except BaseException as err:  # reported below
            errors.append(err)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for n in range(8):
        state = graph.get_state({"configurable": {"thread_id": f"s{n}"}})
        assert state.values["steps"] == ["plan", "asked:yes", "act"]
    saver.close()


# -- the saver's own contract ----------------------------------------------------


@pytest.fixture
def saver(store_url: str) -> Iterator[MemstoreSaver]:
    with MemstoreSaver(store_url) as opened:
        yield opened


def put(
    saver: MemstoreSaver,
    thread: str,
    values: dict[str, Any],
    versions: dict[str, Any],
    new: dict[str, Any],
    parent: RunnableConfig | None = None,
    **metadata: Any,
) -> RunnableConfig:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6(clock_seq=-1))
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    return saver.put(config, checkpoint, {"source": "loop", "step": 0, **metadata}, new)


def test_values_are_written_once_per_version(saver: MemstoreSaver) -> None:
    """Values once per version in memstore_lg_blobs; small ones (the step, a short label)
    inside each checkpoint's row; a channel without a value at its new version, nowhere."""
    big = "x" * 100_000
    one = {"doc": "1", "n": "1", "items": "1", "gone": "1"}
    first = put(saver, "t", {"doc": big, "n": 1, "items": [1]}, one, one)
    two = {"doc": "1", "n": "2", "items": "2", "gone": "2"}
    values = {"doc": big, "n": 2, "items": [1, 2]}
    second = put(saver, "t", values, two, {"n": "2", "items": "2", "gone": "2"}, first)
    conn = saver.store.connection
    rows = "SELECT channel, version FROM memstore_lg_blobs ORDER BY 1, 2"
    assert conn.execute(rows).fetchall() == [("doc", "1"), ("items", "1"), ("items", "2")]
    got = saver.get_tuple(second)
    assert got is not None and got.checkpoint["channel_values"] == values
    assert got.parent_config == first
    older = saver.get_tuple(first)
    assert older is not None and older.checkpoint["channel_values"] == {
        "doc": big,
        "n": 1,
        "items": [1],
    }
    saver.prune(["t"])  # the first checkpoint's items=[1] is no longer needed; doc is
    assert conn.execute(rows).fetchall() == [("doc", "1"), ("items", "2")]
    again = saver.get_tuple(second)
    assert again is not None and again.checkpoint["channel_values"] == values
    saver.delete_thread("t")
    for table in ("memstore_lg_checkpoints", "memstore_lg_blobs", "memstore_lg_writes"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]


def test_checkpoints_written_before_small_values_moved_inline_still_read(
    saver: MemstoreSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose checkpoints kept every value in memstore_lg_blobs (and an 'empty' row
    for a channel without a value), as before 2026-12-04, reads as it did, also where a
    newer checkpoint shares their versions."""
    import memstore_langgraph

    versions = {"n": "1", "label": "1", "items": "1", "none": "1"}
    with monkeypatch.context() as old_layout:
        old_layout.setattr(memstore_langgraph, "_inlined", lambda value: False)
        first = put(saver, "t", {"n": 1, "label": "a", "items": [1]}, versions, versions)
    saver.store.connection.execute(
        "INSERT INTO memstore_lg_blobs (thread_id, checkpoint_ns, channel, version, type) "
        "VALUES ('t', '', 'none', '1', 'empty')"
    )
    assert len(saver.store.connection.execute("SELECT * FROM memstore_lg_blobs").fetchall()) == 4
    newer = {**versions, "items": "2"}
    second = put(saver, "t", {"n": 1, "label": "a", "items": [1, 2]}, newer, {"items": "2"}, first)
    for config, items in ((first, [1]), (second, [1, 2])):
        got = saver.get_tuple(config)
        assert got is not None
        assert got.checkpoint["channel_values"] == {"n": 1, "label": "a", "items": items}
    assert [t.checkpoint["channel_values"]["items"] for t in saver.list(None)] == [[1, 2], [1]]


def test_values_of_every_kind_round_trip(saver: MemstoreSaver) -> None:
    values = {
        "bytes": b"\x00\xff raw",
        "none": None,
        "nested": {"a": [1, 2.5, {"b": None}], "when": datetime(2026, 11, 22, tzinfo=UTC)},
        "text": "ünïcödé \u2603",
    }
    versions = {k: "1" for k in values}
    stored = put(saver, "kinds", values, versions, versions)
    got = saver.get_tuple(stored)
    assert got is not None
    assert got.checkpoint["channel_values"] == values


def test_list_filters_before_and_limit(saver: MemstoreSaver) -> None:
    parent = None
    made = []
    for step in range(250):  # more than a page
        parent = put(saver, "t", {}, {}, {}, parent, step=step, tag={"even": step % 2 == 0})
        made.append(parent["configurable"]["checkpoint_id"])
    put(saver, "other", {}, {}, {}, step=0)
    ids = [t.checkpoint["id"] for t in saver.list({"configurable": {"thread_id": "t"}})]
    assert ids == made[::-1]
    assert len(list(saver.list(None))) == 251
    assert [t.metadata["step"] for t in saver.list(None, filter={"step": 7})] == [7]
    evens = list(saver.list(None, filter={"tag": {"even": True}}, limit=3))
    assert [t.metadata["step"] for t in evens] == [248, 246, 244]
    before = {"configurable": {"checkpoint_id": made[10]}}
    older = list(saver.list({"configurable": {"thread_id": "t"}}, before=before))
    assert [t.checkpoint["id"] for t in older] == made[:10][::-1]
    assert list(saver.list(None, filter={"step": "7"})) == []  # types are not mixed
    assert list(saver.list(None, limit=0)) == []
    with pytest.raises(memstore.ValidationError):
        list(saver.list(None, limit=-1))


def test_list_holds_nothing_between_items(saver: MemstoreSaver, store_url: str) -> None:
    parent = None
    for step in range(300):
        parent = put(saver, "t", {}, {}, {}, parent, step=step)
    listing = saver.list(None)
    next(listing)
    assert saver.store._engine.idle(saver.store.connection)  # no transaction is open
    writer = threading.Thread(target=put, args=(saver, "from-a-thread", {}, {}, {}))
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive()  # the store's lock is free too
    # Another connection can write, and so can this saver.
    other_tool(store_url, "DELETE FROM memstore_lg_checkpoints WHERE metadata LIKE '%\"step\": 0}'")
    put(saver, "t2", {}, {}, {})
    assert len(list(listing)) == 298  # later pages see the delete (new ones sort first)


def test_pending_writes_keep_the_first_and_replace_special_channels(
    saver: MemstoreSaver,
) -> None:
    stored = put(saver, "t", {}, {}, {})
    saver.put_writes(stored, [("a", 1), ("b", 2)], "task-1")
    saver.put_writes(stored, [("a", 100)], "task-1")  # a retry: the first write stands
    saver.put_writes(stored, [("__error__", "first")], "task-2")
    saver.put_writes(stored, [("__error__", "second")], "task-2")
    got = saver.get_tuple(stored)
    assert got is not None
    assert got.pending_writes == [
        ("task-1", "a", 1),
        ("task-1", "b", 2),
        ("task-2", "__error__", "second"),
    ]


def test_bad_input_gets_memstore_errors_and_changes_nothing(saver: MemstoreSaver) -> None:
    stored = put(saver, "t", {"a": 1}, {"a": "1"}, {"a": "1"})
    with pytest.raises(memstore.ValidationError):
        saver.get_tuple({"configurable": {}})
    with pytest.raises(memstore.ValidationError):
        saver.get_tuple({})  # type: ignore[typeddict-item]
    with pytest.raises(memstore.ValidationError):
        saver.put_writes({"configurable": {"thread_id": "t"}}, [("a", 1)], "task")
    with pytest.raises(memstore.ValidationError):
        saver.prune(["t"], strategy="everything")
    with pytest.raises(memstore.ValidationError):
        saver.prune("t")  # type: ignore[arg-type]
    with pytest.raises(memstore.ValidationError):
        saver.delete_for_runs("run-1")  # type: ignore[arg-type]
    with pytest.raises(memstore.ValidationError):
        list(saver.list(None, filter={'a"b': 1}))
    with pytest.raises(memstore.ValidationError):
        saver.copy_thread("t", "t")
    with pytest.raises(memstore.ValidationError):
        put(saver, "t", {}, {}, {}, stored, bad=object())
    got = saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert got is not None and got.config == stored
    assert got.checkpoint["channel_values"] == {"a": 1}
    assert saver.store.check() == []


def test_shares_an_open_store(store_url: str) -> None:
    with memstore.Store(store_url) as store:
        saver = MemstoreSaver(store)
        put(saver, "t", {}, {}, {})
        saver.close()  # leaves the store open
        assert store.stats()["bytes"] > 0
        assert len(list(MemstoreSaver(store).list(None))) == 1
        with pytest.raises(memstore.ValidationError):
            MemstoreSaver(store, timeout=1)


def test_from_conn_string(store_url: str) -> None:
    with MemstoreSaver.from_conn_string(str(store_url)) as saver:
        put(saver, "t", {}, {}, {})
    with MemstoreSaver.from_conn_string(str(store_url)) as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is not None


async def test_checkpoints_show_in_the_explorer(db_path: Path) -> None:
    from datasette.app import Datasette

    with MemstoreSaver(db_path) as saver:
        graph = build_graph(saver)
        graph.invoke({"steps": [], "approved": False}, {"configurable": {"thread_id": "seen-1"}})
    ds = Datasette([str(db_path)])
    await ds.invoke_startup()
    overview = await ds.client.get("/-/memstore")
    assert overview.status_code == 200
    assert "LangGraph checkpoints" in overview.text
    table = await ds.client.get("/agent/memstore_lg_checkpoints.json?_shape=array")
    assert table.status_code == 200
    rows = table.json()
    assert rows and {r["thread_id"] for r in rows} == {"seen-1"}
    assert {r["run_id"] is None or isinstance(r["run_id"], str) for r in rows} == {True}
    info = memstore_cli("info", db=db_path).stdout
    assert f"memstore_lg_checkpoints: {len(rows)} rows" in info


def test_export_and_import_carry_the_checkpoints(tmp_path: Path) -> None:
    source, copy = tmp_path / "a.db", tmp_path / "b.db"
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    with MemstoreSaver(source) as saver:
        build_graph(saver).invoke({"steps": [], "approved": False}, config)
        saver.store.export(tmp_path / "export")
        assert saver.store.stats()["layers"]["memstore_lg_checkpoints"] >= 3
        want = [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(config)]
    with MemstoreSaver(copy) as saver:
        saver.store.import_(tmp_path / "export")
        assert [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(config)] == want
        done = build_graph(saver).invoke(Command(resume="yes"), config)
        assert done["steps"] == ["plan", "asked:yes", "act"]


async def test_alist_holds_nothing_between_items(db_path: Path) -> None:
    async with MemstoreSaver(db_path) as saver:
        parent = None
        for step in range(150):
            parent = put(saver, "t", {}, {}, {}, parent, step=step)
        listing = saver.alist(None)
        await listing.__anext__()
        assert saver.store.connection.get_autocommit()  # no transaction is open
        await asyncio.wait_for(asyncio.to_thread(put, saver, "other", {}, {}, {}), 10)
        with sqlite3.connect(db_path, timeout=0.1) as other:  # no transaction is open
            other.execute("DELETE FROM memstore_lg_checkpoints WHERE thread_id = 't'")
        assert [item async for item in listing] != []  # the first page was read already
        assert [i.config["configurable"]["thread_id"] async for i in saver.alist(None)] == ["other"]


GRAPH_PROCESS = """
import sys
sys.path[:0] = sys.argv[3].split("|")
from langgraph.types import Command
from tests.test_langgraph import build_graph
from memstore_langgraph import MemstoreSaver, MemstoreStore

path, n = sys.argv[1], int(sys.argv[2])
with MemstoreSaver(path) as saver, MemstoreStore(path) as store:
    graph = build_graph(saver, store)
    for t in range(10):
        config = {"configurable": {"thread_id": f"p{n}-{t}"}}
        graph.invoke({"steps": [], "approved": False}, config)
        graph.invoke(Command(resume="yes"), config)
"""


def test_graphs_in_several_processes_share_one_file(store_url: str) -> None:
    """Real processes, one file: every checkpoint and store item of each lands whole."""
    import subprocess
    import sys

    from .conftest import MODULE_DIRS

    MemstoreSaver(store_url).close()  # created once, so the processes only open it
    paths = "|".join(str(p) for p in MODULE_DIRS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GRAPH_PROCESS, str(store_url), str(n), paths],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with MemstoreSaver(store_url) as saver, MemstoreStore(store_url) as store:
        graph = build_graph(saver, store)
        for n in range(3):
            for t in range(10):
                state = graph.get_state({"configurable": {"thread_id": f"p{n}-{t}"}})
                assert state.values["steps"] == ["plan", "asked:yes", "act"]
        assert len(store.search(("answers",), limit=100)) == 30
        assert saver.store.check() == []


def test_a_put_and_its_writes_are_one_statement_each_on_postgresql(
    store: memstore.Store,
) -> None:
    """A checkpoint with a value of its own row (in a WITH) and its pending writes (one
    VALUES list) are a statement each on PostgreSQL, which then sends no BEGIN and no
    COMMIT (four statements each before); SQLite has no INSERT in WITH, and its
    transaction costs no round trip. A special write (an error) and a regular one take
    a statement each, in one transaction."""
    from langgraph.checkpoint.base import empty_checkpoint

    saver = MemstoreSaver(store)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    puts, writes = [], []
    for step in range(8):  # PostgreSQL prepares statements after a few runs
        checkpoint = {**empty_checkpoint(), "id": f"0{step:02d}"}
        checkpoint["channel_versions"] = {"a": str(step), "b": "1"}
        checkpoint["channel_values"] = {"a": ["x" * 300, step], "b": "x"}
        new = {"a": str(step), "b": "1"} if step else {"a": "0"}
        put = functools.partial(saver.put, config, checkpoint, {}, new)
        puts.append(statements(store, lambda put=put: config.update(put())))
        batch = [("a", step), ("b", ["y"] * step)]
        write = functools.partial(saver.put_writes, config, batch, "task")
        writes.append(statements(store, write))
    assert puts[-1] == (1 if on_postgres(store) else 4)  # BEGIN, values, checkpoint, COMMIT
    assert writes[-1] == (1 if on_postgres(store) else 3)  # BEGIN, the writes, COMMIT
    # An error replaces an earlier one; ("c", 1) is at place 1, where ("b", ...) is kept.
    saver.put_writes(config, [("__error__", "e"), ("c", 1)], "task")
    got = saver.get_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"] == {"a": ["x" * 300, 7], "b": "x"}
    assert [(w[1], w[2]) for w in got.pending_writes] == [
        ("__error__", "e"),
        ("a", 7),
        ("b", ["y"] * 7),
    ]


@pytest.mark.parametrize("large", [True, False])
def test_a_checkpoint_and_a_page_of_them_are_one_request(
    store: memstore.Store, large: bool
) -> None:
    """With their channel values and pending writes: one round trip on PostgreSQL (one
    statement, as LangGraph's own saver); on SQLite, where a few simple statements are
    cheaper than one that combines them, three in a read transaction (five), or two
    (four) when every value is small enough to be in its checkpoint's row."""
    from langgraph.checkpoint.base import empty_checkpoint

    def value(step: int) -> Any:
        return [step] if large else step

    saver = MemstoreSaver(store)
    thread = config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    for step in range(12):
        checkpoint = {**empty_checkpoint(), "id": f"0{step:02d}"}
        checkpoint["channel_versions"] = {"a": str(step), "b": "1"}
        checkpoint["channel_values"] = {"a": value(step), "b": "x"}
        config = saver.put(config, checkpoint, {"step": step}, {"a": str(step), "b": "1"})
        saver.put_writes(config, [("a", step), ("b", "x")], "task")
    for _ in range(6):  # PostgreSQL prepares statements after a few runs
        saver.get_tuple(thread)
        list(saver.list(thread, limit=10))
    got: list[Any] = []
    one = 1 if on_postgres(store) else 5 if large else 4
    assert requests(store, lambda: got.append(saver.get_tuple(thread))) == one
    assert got[0].checkpoint["channel_values"] == {"a": value(11), "b": "x"}
    assert len(got[0].pending_writes) == 2
    assert requests(store, lambda: got.append(list(saver.list(thread, limit=10)))) == one
    assert [t.metadata["step"] for t in got[1]] == list(range(11, 1, -1))
    assert [t.checkpoint["channel_values"]["a"] for t in got[1]] == [
        value(step) for step in range(11, 1, -1)
    ]
