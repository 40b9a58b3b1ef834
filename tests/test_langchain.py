"""memstore_langchain, proven by langchain-tests' standard suites and by real runnables."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.caches import BaseCache
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.stores import BaseStore
from langchain_tests.integration_tests.base_store import BaseStoreAsyncTests, BaseStoreSyncTests
from langchain_tests.integration_tests.cache import AsyncCacheTestSuite, SyncCacheTestSuite

import memstore
from memstore_langchain import MemstoreByteStore, MemstoreCache, MemstoreChatMessageHistory

# -- langchain-tests' standard suites ---------------------------------------------


@pytest.fixture(params=["memory", "file", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the suites' adapters keep their data: each engine (a fresh database for
    PostgreSQL, from the suite's own server)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return ":memory:" if request.param == "memory" else str(tmp_path / "agent.db")


class TestByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, where: str) -> Iterator[BaseStore[str, bytes]]:
        with MemstoreByteStore(where) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00\xffbar", "büzz".encode()


class TestByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, where: str) -> Any:
        async with MemstoreByteStore(where) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00\xffbar", "büzz".encode()


class TestCacheSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, where: str) -> Iterator[BaseCache]:
        with MemstoreCache(where) as cache:
            yield cache


class TestCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, where: str) -> Any:
        async with MemstoreCache(where) as cache:
            yield cache


# -- the byte store ----------------------------------------------------------------


def test_byte_store_namespaces_prefixes_and_pages(db_path: Path) -> None:
    with (
        MemstoreByteStore(db_path, namespace="a") as a,
        MemstoreByteStore(db_path, namespace="b") as b,
    ):
        a.mset([(f"doc-{i:04d}", str(i).encode()) for i in range(1200)])
        a.mset([("ünï-1", b"x"), ("ünï-2", b"y"), ("üo", b"z"), ("doc", b"d")])
        b.mset([("doc-0001", b"other")])
        assert a.mget(["doc-0001", "missing", "doc-0001"]) == [b"1", None, b"1"]
        assert b.mget(["doc-0001", "doc-0002"]) == [b"other", None]
        keys = a.yield_keys(prefix="doc-")
        assert isinstance(keys, Iterator)
        assert list(keys) == [f"doc-{i:04d}" for i in range(1200)]  # three pages, in order
        assert list(a.yield_keys(prefix="ünï")) == ["ünï-1", "ünï-2"]
        assert len(list(a.yield_keys())) == 1204
        a.mdelete(["doc-0001", "nope"])
        assert a.mget(["doc-0001"]) == [None] and b.mget(["doc-0001"]) == [b"other"]
        a.mset([("k", b"1"), ("k", b"2")])  # the last value wins
        assert a.mget(["k"]) == [b"2"]
    with sqlite3.connect(db_path) as conn:  # stock SQLite reads the bytes back
        assert conn.execute(
            "SELECT value, size FROM memstore_kv WHERE namespace = 'a' AND key = 'k'"
        ).fetchone() == (b"2", 1)


def test_byte_store_refuses_bad_input_and_keeps_what_it_had(store_url: str) -> None:
    with MemstoreByteStore(store_url) as store:
        store.mset([("a", b"1")])
        with pytest.raises(memstore.ValidationError):
            store.mset([("b", b"2"), ("c", "not bytes")])  # type: ignore[list-item]
        with pytest.raises(memstore.ValidationError):
            store.mset([(1, b"2")])  # type: ignore[list-item]
        with pytest.raises(memstore.ValidationError):
            store.mget("a")  # type: ignore[arg-type]
        with pytest.raises(memstore.ValidationError):
            list(store.yield_keys(prefix=5))  # type: ignore[arg-type]
        with pytest.raises(memstore.ValidationError):
            MemstoreByteStore(store_url, namespace="")
        assert list(store.yield_keys()) == ["a"]
        assert store.store.check() == []


async def test_byte_store_async_generator_and_concurrency(store_url: str) -> None:
    async with MemstoreByteStore(store_url) as store:
        await asyncio.gather(*(store.amset([(f"k{i:04d}", bytes([i % 256]))]) for i in range(700)))
        keys = [k async for k in store.ayield_keys(prefix="k0")]
        assert keys == [f"k{i:04d}" for i in range(700)]
        assert await store.amget(["k0001", "k0699"]) == [b"\x01", bytes([699 % 256])]


async def test_byte_store_shows_in_the_explorer(db_path: Path) -> None:
    from datasette.app import Datasette

    with MemstoreByteStore(db_path, namespace="docs") as store:
        store.mset([("a", b"x" * 10)])
    ds = Datasette([str(db_path)])
    await ds.invoke_startup()
    assert "Key-value bytes" in (await ds.client.get("/-/memstore")).text
    rows = (await ds.client.get("/agent/memstore_kv.json?_shape=array")).json()
    assert [(r["namespace"], r["key"], r["size"]) for r in rows] == [("docs", "a", 10)]


def test_byte_store_exported_with_the_file(tmp_path: Path) -> None:
    with MemstoreByteStore(tmp_path / "a.db") as store:
        store.mset([("blob", bytes(range(256)))])
        store.store.export(tmp_path / "export")
    with memstore.Store(tmp_path / "b.db") as copy:
        copy.import_(tmp_path / "export")
        assert MemstoreByteStore(copy).mget(["blob"]) == [bytes(range(256))]


# -- the LLM cache -----------------------------------------------------------------


def test_cache_serves_a_real_model_and_counts_hits(store_url: str) -> None:
    with MemstoreCache(store_url) as cache:
        model = GenericFakeChatModel(messages=iter([AIMessage("first"), AIMessage("second")]))
        model.cache = cache
        assert model.invoke("hello").content == "first"
        assert model.invoke("hello").content == "first"  # from the cache, not the model
        assert model.invoke("another prompt").content == "second"
        stats = cache.cache.stats()
        assert stats["hits"] == 1 and stats["entries"] == 2
    with MemstoreCache(store_url) as cache:  # it survives a restart
        model = GenericFakeChatModel(messages=iter([AIMessage("never used")]))
        model.cache = cache
        assert model.invoke("hello").content == "first"


def test_cache_ttl_and_names(store_url: str) -> None:
    from langchain_core.outputs import Generation

    with (
        MemstoreCache(store_url, ttl=0.5) as short,
        MemstoreCache(store_url, name="other") as other,
    ):
        short.update("p", "llm", [Generation(text="x")])
        other.update("p", "llm", [Generation(text="y")])
        assert short.lookup("p", "llm") == [Generation(text="x")]
        time.sleep(0.7)
        assert short.lookup("p", "llm") is None
        assert other.lookup("p", "llm") == [Generation(text="y")]
        other.clear()
        assert other.lookup("p", "llm") is None
        with pytest.raises(memstore.ValidationError):
            other.clear(everything=True)


# -- the chat message history --------------------------------------------------------


def every_kind() -> list[BaseMessage]:
    return [
        SystemMessage("You plan trips."),
        HumanMessage("Book Lyon", id="h1", additional_kwargs={"lang": "en"}),
        AIMessage(
            "",
            tool_calls=[{"name": "book", "args": {"city": "Lyon"}, "id": "call-1"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
            response_metadata={"model_name": "gpt-x"},
        ),
        ToolMessage("booked", tool_call_id="call-1"),
        AIMessage([{"type": "text", "text": "Done: "}, {"type": "text", "text": "booked."}]),
    ]


def test_history_round_trips_every_kind_and_records_usage(store_url: str) -> None:
    with MemstoreChatMessageHistory("chat-1", store_url) as history:
        assert history.messages == []
        history.add_messages(every_kind())
        assert history.messages == every_kind()
    with memstore.Store(store_url) as store:
        chat = store.conversations()
        stored = chat.messages("chat-1")
        assert [m.role for m in stored] == ["system", "user", "assistant", "tool", "assistant"]
        assert stored[2].tool_calls[0]["name"] == "book" and stored[2].model == "gpt-x"
        assert chat.usage("chat-1")["input_tokens"] == 12
        assert [h.record.position for h in chat.search("Lyon", thread_id="chat-1")] == [2]
        chat.add_message("chat-1", "user", "added by memstore itself")
    with MemstoreChatMessageHistory("chat-1", store_url) as history:
        assert history.messages[-1] == HumanMessage("added by memstore itself")
        history.clear()
        assert history.messages == []
        history.clear()  # twice is fine


def test_history_adds_all_or_nothing(store_url: str) -> None:
    with MemstoreChatMessageHistory("chat-1", store_url) as history:
        history.add_messages([HumanMessage("kept")])
        with pytest.raises(memstore.ValidationError):
            history.add_messages([HumanMessage("lost"), "not a message"])  # type: ignore[list-item]
        with pytest.raises(memstore.ValidationError):
            history.add_messages([HumanMessage("lost", additional_kwargs={"not json": {1, 2}})])
        assert history.messages == [HumanMessage("kept")]
    with pytest.raises(memstore.ValidationError):
        MemstoreChatMessageHistory("", store_url)


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
def test_history_behind_a_runnable_with_memory(store_url: str) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("Hi Ada!"), AIMessage("You are Ada.")]))
    chain = RunnableWithMessageHistory(
        model, lambda session_id: MemstoreChatMessageHistory(session_id, store_url)
    )
    config = {"configurable": {"session_id": "ada"}}
    assert chain.invoke([HumanMessage("I am Ada")], config).content == "Hi Ada!"
    assert chain.invoke([HumanMessage("Who am I?")], config).content == "You are Ada."
    with MemstoreChatMessageHistory("ada", store_url) as history:
        assert [m.content for m in history.messages] == [
            "I am Ada",
            "Hi Ada!",
            "Who am I?",
            "You are Ada.",
        ]


async def test_history_async(store_url: str) -> None:
    async with MemstoreChatMessageHistory("chat-a", store_url) as history:
        await asyncio.gather(*(history.aadd_messages([HumanMessage(f"m{i}")]) for i in range(20)))
        assert sorted(m.content for m in await history.aget_messages()) == sorted(
            f"m{i}" for i in range(20)
        )
        await history.aclear()
        assert await history.aget_messages() == []
