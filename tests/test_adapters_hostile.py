"""Hostile input at the framework adapters' doors: a memstore error, and nothing stored changes.

The adapters share a store holding a little of every layer (tests/test_hostile.py's), plus
a checkpoint, a store item, bytes, a cached generation, a chat history and a session.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.outputs import Generation
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.store.base import PutOp, SearchOp

import memstore
from memstore_agents import MemstoreSession
from memstore_langchain import MemstoreByteStore, MemstoreCache, MemstoreChatMessageHistory
from memstore_langgraph import MemstoreSaver, MemstoreStore

from .conftest import ROOT
from .test_hostile import (  # noqa: F401 (fixtures)
    BIG,
    fingerprint,
    full_store,
    pg_fingerprint,
    pg_full_store,
)

SURROGATE = "\ud800"
WRITES_AT: Any = {"configurable": {"thread_id": "t", "checkpoint_id": "x"}}


class Adapters:
    def __init__(self, store: memstore.Store) -> None:
        self.store = store
        self.saver = MemstoreSaver(store)
        self.items = MemstoreStore(store)
        self.semantic = MemstoreStore(
            store, collection="semantic", index={"dims": 2, "embed": self.embed, "model": "toy"}
        )
        self.bytes = MemstoreByteStore(store)
        self.cache = MemstoreCache(store)
        self.history = MemstoreChatMessageHistory("h", store)
        self.session = MemstoreSession("s", store)

    @staticmethod
    def embed(texts: list[str]) -> list[Any]:
        """A toy embedding, hostile on cue: texts ask for what they get."""
        out: list[Any] = []
        for text in texts:
            if "nan" in text:
                out.append([float("nan"), 0.0])
            elif "3d" in text:
                out.append([1.0, 0.0, 0.0])
            else:
                out.append([float(len(text)), 1.0])
        return out

    def checkpoint(
        self, thread: Any = "t", ns: Any = "", values: Any = None, **metadata: Any
    ) -> Any:
        cp = empty_checkpoint()
        new = {channel: "1" for channel in values or {}}
        cp["channel_values"], cp["channel_versions"] = dict(values or {}), new
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        return self.saver.put(config, cp, {"source": "loop", "step": 0, **metadata}, new)


@pytest.fixture
def adapters(full_store: memstore.Store) -> Iterator[Adapters]:  # noqa: F811
    made = Adapters(full_store)
    made.checkpoint()
    made.items.put(("users", "a"), "k", {"v": 1})
    made.semantic.put(("docs",), "d", {"text": "hello"})
    made.bytes.mset([("k", b"v")])
    made.cache.update("p", "llm", [Generation(text="g")])
    made.history.add_messages([HumanMessage("hi")])
    asyncio.run(made.session.add_items([{"role": "user", "content": "hi"}]))
    yield made


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


CASES: dict[str, Callable[[Adapters], Any]] = {
    "semantic put, embedding nan": lambda a: a.semantic.put(("docs",), "d", {"text": "nan"}),
    "semantic put, embedding of 3": lambda a: a.semantic.put(("docs",), "d", {"text": "3d"}),
    "semantic search, query nan": lambda a: a.semantic.search(("docs",), query="nan"),
    "semantic search, limit 2**64": lambda a: a.semantic.search(("docs",), query="x", limit=BIG),
    "semantic put, index paths int": lambda a: a.semantic.put(("docs",), "d", {}, index=[1]),
    # the checkpointer
    "saver thread surrogate": lambda a: a.checkpoint(thread=SURROGATE),
    "saver namespace int": lambda a: a.checkpoint(ns=5),
    "saver metadata object": lambda a: a.checkpoint(bad=object()),
    "saver metadata nan": lambda a: a.checkpoint(bad=float("nan")),
    "saver get surrogate": lambda a: a.saver.get_tuple({"configurable": {"thread_id": SURROGATE}}),
    "saver list filter big": lambda a: list(a.saver.list(None, filter={"step": BIG})),
    "saver filter surrogate": lambda a: list(a.saver.list(None, filter={SURROGATE: 1})),
    "saver writes surrogate": lambda a: a.saver.put_writes(
        {"configurable": {"thread_id": "t", "checkpoint_id": "x"}}, [("c", 1)], SURROGATE
    ),
    "saver copy surrogate": lambda a: a.saver.copy_thread("t", SURROGATE),
    "saver list config str": lambda a: list(a.saver.list("t")),
    "saver list before int": lambda a: list(a.saver.list(None, before={"configurable": 5})),
    "saver put checkpoint str": lambda a: a.saver.put(WRITES_AT, "x", {}, {}),
    "saver put no id": lambda a: a.saver.put(WRITES_AT, {"channel_versions": {}}, {}, {}),
    "saver put versions int": lambda a: a.saver.put(
        WRITES_AT, {**empty_checkpoint(), "channel_versions": 5}, {}, {}
    ),
    "saver put new_versions list": lambda a: a.saver.put(WRITES_AT, empty_checkpoint(), {}, [1]),
    "saver put metadata list": lambda a: a.saver.put(WRITES_AT, empty_checkpoint(), [], {}),
    "saver writes int": lambda a: a.saver.put_writes(WRITES_AT, 5, "w"),
    "saver write not a pair": lambda a: a.saver.put_writes(WRITES_AT, [("a",)], "w"),
    "saver write channel int": lambda a: a.saver.put_writes(WRITES_AT, [(5, 1)], "w"),
    "saver write task_path int": lambda a: a.saver.put_writes(WRITES_AT, [("a", 1)], "w", 5),
    "saver value int past 64 bits": lambda a: a.checkpoint(values={"ok": 1, "n": 2**100}),
    "saver value object": lambda a: a.checkpoint(values={"big": [1] * 300, "o": object()}),
    "saver write object": lambda a: a.saver.put_writes(
        {"configurable": {"thread_id": "t", "checkpoint_id": "x"}}, [("c", 1), ("d", object())], "w"
    ),
    # the LangGraph store
    "store key surrogate": lambda a: a.items.put(("users",), SURROGATE, {"v": 1}),
    "store label surrogate": lambda a: a.items.batch([PutOp(("u", SURROGATE), "k", {"v": 1})]),
    "store value nan": lambda a: a.items.put(("users",), "k2", {"v": float("nan")}),
    "store value int key": lambda a: a.items.put(("users",), "k2", {"v": {1: 2}}),
    "store ttl huge": lambda a: a.items.put(("users",), "k2", {"v": 1}, ttl=10**400),
    "store search limit big": lambda a: a.items.batch([SearchOp(("users",), limit=BIG)]),
    "store put namespace str": lambda a: a.items.put("users", "k2", {"v": 1}),
    "store put namespace empty": lambda a: a.items.put((), "k2", {"v": 1}),
    "store put label int": lambda a: a.items.put(("users", 1), "k2", {"v": 1}),
    "store aput label dot": lambda a: run(a.items.aput(("a.b",), "k2", {"v": 1})),
    "store get namespace none": lambda a: a.items.get(None, "k"),
    "store aget namespace str": lambda a: run(a.items.aget("users", "k")),
    "store delete namespace int": lambda a: a.items.delete(5, "k"),
    "store adelete label empty": lambda a: run(a.items.adelete(("",), "k")),
    "store search prefix str": lambda a: a.items.search("users"),
    "store asearch prefix none": lambda a: run(a.items.asearch(None)),
    "store list prefix str": lambda a: a.items.list_namespaces(prefix="users"),
    "store alist max_depth str": lambda a: run(a.items.alist_namespaces(max_depth="1")),
    "store list max_depth 0": lambda a: a.items.list_namespaces(max_depth=0),
    "store batch none": lambda a: a.items.batch(None),
    "store abatch str": lambda a: run(a.items.abatch("ops")),
    "store filter big": lambda a: a.items.search(("users",), filter={"v": BIG}),
    "store filter operator": lambda a: a.items.search(("users",), filter={"v": {"$where": 1}}),
    "store query long": lambda a: a.items.search(("users",), query="word " * 3000),
    # the byte store
    "bytes key surrogate": lambda a: a.bytes.mset([(SURROGATE, b"x")]),
    "bytes prefix surrogate": lambda a: list(a.bytes.yield_keys(prefix=SURROGATE)),
    "bytes value str": lambda a: a.bytes.mset([("k", "text")]),
    "bytes namespace surrogate": lambda a: MemstoreByteStore(a.store, namespace=SURROGATE).mset(
        [("k", b"x")]
    ),
    "bytes pairs int": lambda a: a.bytes.mset(5),
    # the LLM cache
    "cache generations int": lambda a: a.cache.update("p", "llm", 5),
    "cache generation str": lambda a: a.cache.update("p", "llm", ["g"]),
    "cache prompt surrogate": lambda a: a.cache.update(SURROGATE, "llm", [Generation(text="g")]),
    "cache text surrogate": lambda a: a.cache.update("p", "llm", [Generation(text=SURROGATE)]),
    # the chat history
    "history id surrogate": lambda a: MemstoreChatMessageHistory(SURROGATE, a.store).add_messages(
        [HumanMessage("x")]
    ),
    "history content surrogate": lambda a: a.history.add_messages([HumanMessage(SURROGATE)]),
    "history messages int": lambda a: a.history.add_messages(5),
    # the Agents SDK session
    "session id surrogate": lambda a: run(
        MemstoreSession(SURROGATE, a.store).add_items([{"role": "user", "content": "x"}])
    ),
    "session item surrogate": lambda a: run(
        a.session.add_items([{"role": "user", "content": SURROGATE}])
    ),
    "session limit big": lambda a: run(a.session.get_items(limit=BIG)),
    "session limit float": lambda a: run(a.session.get_items(limit=2.5)),
    "session branch turn big": lambda a: run(a.session.create_branch_from_turn(BIG)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_a_memstore_error_and_changes_nothing(
    adapters: Adapters, name: str
) -> None:
    before = fingerprint(adapters.store)
    with pytest.raises(memstore.MemstoreError) as caught:
        CASES[name](adapters)
    assert str(caught.value)
    assert fingerprint(adapters.store) == before
    assert adapters.store.check() == []


def test_lookups_of_what_cannot_be_stored_find_nothing(adapters: Adapters) -> None:
    """A key no write could have stored is simply not found, and nothing changes."""
    before = fingerprint(adapters.store)
    assert adapters.bytes.mget([SURROGATE]) == [None]
    assert adapters.cache.lookup(SURROGATE, "llm") is None
    assert adapters.items.search(("users",), query=SURROGATE) == []
    adapters.saver.delete_for_runs([SURROGATE])
    assert len(list(adapters.saver.list(None, limit=BIG))) == 1
    assert fingerprint(adapters.store) == before


@pytest.mark.parametrize("module", ["memstore_langgraph", "memstore_langchain", "memstore_agents"])
def test_the_adapters_use_memstores_public_api_only(module: str) -> None:
    source = (ROOT / "adapters" / f"{module}.py").read_text()
    assert not re.search(r"\b(memstore|store|items|conversations|cache)\._", source)
    # Core conventions come from the core: its clock (SQL_NOW, live_clause) and its
    # calls for a collection's rows (touch), not copies of them.
    assert "strftime(" not in source
    assert not re.search(r"UPDATE \{self\._table\}", source)


@pytest.fixture
def pg_adapters(pg_full_store: memstore.Store) -> Iterator[Adapters]:  # noqa: F811
    made = Adapters(pg_full_store)
    made.checkpoint()
    made.items.put(("users", "a"), "k", {"v": 1})
    made.semantic.put(("docs",), "d", {"text": "hello"})
    made.bytes.mset([("k", b"v")])
    made.cache.update("p", "llm", [Generation(text="g")])
    made.history.add_messages([HumanMessage("hi")])
    asyncio.run(made.session.add_items([{"role": "user", "content": "hi"}]))
    yield made


# Every case: a surrogate is as hostile to PostgreSQL's text as to SQLite's.
ON_POSTGRES = list(CASES)


@pytest.mark.parametrize("name", ON_POSTGRES)
def test_hostile_input_to_the_adapters_on_postgresql(pg_adapters: Adapters, name: str) -> None:
    before = pg_fingerprint(pg_adapters.store)
    with pytest.raises(memstore.MemstoreError) as caught:
        CASES[name](pg_adapters)
    assert str(caught.value) and not isinstance(caught.value, memstore.UnsupportedError)
    assert pg_fingerprint(pg_adapters.store) == before
    assert pg_adapters.store.check() == []
