"""memstore_agents and memstore_langchain against the frameworks' own SQLite classes.

    pip install langchain-community          # LangChain's SQLite classes live there
    python bench/bench_frameworks.py         # 3 paired runs
    python bench/bench_frameworks.py --runs 1 --scale 0.2
    python bench/bench_frameworks.py --only session --runs 7
    taskset -c 0 python bench/bench_frameworks.py --only session   # every thread on one core

The async classes hop to a thread for every call, on both sides; on a
machine with few cores, where the OS runs that thread against the event
loop moves single runs a lot (BENCHMARKS.md). Holding the process on one
core takes that out.

The yardsticks, each with its defaults, as a user gets them:

- the Agents SDK's ``SQLiteSession`` (WAL, ``synchronous=FULL``, Python's
  sqlite3), against ``MemstoreSession(..., synchronous="full")``: the same
  durability. 2,000 turns of ``add_items`` (a user and an assistant item),
  then 2,000 ``get_items(limit=20)`` and 500 ``pop_item``.
- langchain-community's ``SQLiteCache`` (SQLAlchemy) against
  ``MemstoreCache``: 2,000 updates, 2,000 hits, 2,000 misses.
- langchain-community's ``SQLChatMessageHistory`` (SQLAlchemy) against
  ``MemstoreChatMessageHistory``: 1,000 turns of ``add_messages`` (human +
  AI), then 100 reads of the last 20 messages (``messages[-20:]``).
- langchain-community's ``SQLStore`` (SQLAlchemy) against
  ``MemstoreByteStore``: 20,000 values of 1 KiB set in batches of 100,
  read back in batches of 100, and every key listed.

LangChain's SQLAlchemy classes open SQLite in its default rollback-journal
mode with ``synchronous=FULL``. memstore runs with ``synchronous="full"``
against every one of them, so both sides survive power loss; memstore's
journal is its WAL. Ratio = theirs / memstore's, median of paired runs:
above 1, memstore is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents import SQLiteSession
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import Generation

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain-community announces its sunset on import
    from langchain_community.cache import SQLiteCache
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from langchain_community.storage import SQLStore

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / p) for p in (".", "plugins", "cli", "demo", "legacy", "adapters", "mcp_server")
]
from bench_core import alternating  # noqa: E402

from memstore_agents import MemstoreSession  # noqa: E402
from memstore_langchain import (  # noqa: E402
    MemstoreByteStore,
    MemstoreCache,
    MemstoreChatMessageHistory,
)

Timings = dict[str, float]


def session_work(session: Any, turns: int) -> Timings:
    async def run() -> Timings:
        took: Timings = {}
        started = time.perf_counter()
        for i in range(turns):
            await session.add_items(
                [
                    {"role": "user", "content": f"question {i} about the trip to Lyon"},
                    {
                        "role": "assistant",
                        "content": f"answer {i}: the night train leaves at 22:10",
                    },
                ]
            )
        took["add_items"] = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(turns):
            assert len(await session.get_items(limit=20)) == 20
        took["get_items(limit=20)"] = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(turns // 4):
            assert await session.pop_item() is not None
        took["pop_item"] = time.perf_counter() - started
        return took

    return asyncio.run(run())


def cache_work(cache: Any, n: int) -> Timings:
    took: Timings = {}
    llm = "model=gpt-x temperature=0"
    started = time.perf_counter()
    for i in range(n):
        cache.update(f"prompt {i}: plan a trip", llm, [Generation(text=f"plan {i}")])
    took["update"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        assert cache.lookup(f"prompt {i}: plan a trip", llm) is not None
    took["lookup hit"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        assert cache.lookup(f"unseen {i}", llm) is None
    took["lookup miss"] = time.perf_counter() - started
    return took


def history_work(history: Any, turns: int) -> Timings:
    took: Timings = {}
    started = time.perf_counter()
    for i in range(turns):
        history.add_messages([HumanMessage(f"question {i}"), AIMessage(f"answer {i}")])
    took["add_messages"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(100):
        assert len(history.messages[-20:]) == 20
    took["read messages"] = time.perf_counter() - started
    return took


def bytes_work(store: Any, n: int) -> Timings:
    took: Timings = {}
    value = os.urandom(1024)
    keys = [f"doc-{i:06d}" for i in range(n)]
    started = time.perf_counter()
    for start in range(0, n, 100):
        store.mset([(k, value) for k in keys[start : start + 100]])
    took["mset"] = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, n, 100):
        assert store.mget(keys[start : start + 100])[0] == value
    took["mget"] = time.perf_counter() - started
    started = time.perf_counter()
    assert sum(1 for _ in store.yield_keys(prefix="doc-")) == n
    took["yield_keys"] = time.perf_counter() - started
    return took


def compare(
    runs: int,
    work: Path,
    name: str,
    theirs: Callable[[Path], Timings],
    mine: Callable[[Path], Timings],
) -> list[tuple[str, str, float, float, float]]:
    times: dict[str, dict[str, list[float]]] = {}
    for run, side in alternating(runs):
        path = work / f"{name}-{side}-{run}.db"
        for part, seconds in (theirs if side == "theirs" else mine)(path).items():
            times.setdefault(part, {"theirs": [], "mine": []})[side].append(seconds)
    rows = []
    for part, got in times.items():
        ratios = [t / m for t, m in zip(got["theirs"], got["mine"], strict=True)]
        theirs_s, mine_s = statistics.median(got["theirs"]), statistics.median(got["mine"])
        rows.append((name, part, theirs_s, mine_s, statistics.median(ratios)))
        print(
            f"{name:28} {part:20} {theirs_s:8.3f}s  memstore {mine_s:8.3f}s  "
            f"ratio {rows[-1][4]:5.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="paired runs per workload")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument(
        "--only",
        choices=["session", "cache", "history", "bytes"],
        action="append",
        help="run only these workloads (repeatable; default: all)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memstore-frameworks-"))
    turns, cached, docs = int(2000 * args.scale), int(2000 * args.scale), int(20000 * args.scale)

    def sdk_session(path: Path) -> Timings:
        session = SQLiteSession("bench", path)
        try:
            return session_work(session, turns)
        finally:
            session.close()

    def memstore_session(path: Path) -> Timings:
        session = MemstoreSession("bench", path, synchronous="full")
        try:
            return session_work(session, turns)
        finally:
            session.close()

    def sql_history(path: Path) -> Timings:
        return history_work(
            SQLChatMessageHistory("bench", connection=f"sqlite:///{path}"), turns // 2
        )

    def memstore_history(path: Path) -> Timings:
        with MemstoreChatMessageHistory("bench", path, synchronous="full") as history:
            return history_work(history, turns // 2)

    def sql_store(path: Path) -> Timings:
        store = SQLStore(namespace="bench", db_url=f"sqlite:///{path}")
        store.create_schema()
        return bytes_work(store, docs)

    def memstore_bytes(path: Path) -> Timings:
        with MemstoreByteStore(path, namespace="bench", synchronous="full") as store:
            return bytes_work(store, docs)

    def memstore_cache(path: Path) -> Timings:
        with MemstoreCache(path, synchronous="full") as cache:
            return cache_work(cache, cached)

    workloads: dict[str, tuple[str, Callable[[Path], Timings], Callable[[Path], Timings]]] = {
        "session": ("Agents SDK SQLiteSession", sdk_session, memstore_session),
        "cache": (
            "LangChain SQLiteCache",
            lambda path: cache_work(SQLiteCache(database_path=str(path)), cached),
            memstore_cache,
        ),
        "history": ("LangChain SQLChatMessageHistory", sql_history, memstore_history),
        "bytes": ("LangChain SQLStore", sql_store, memstore_bytes),
    }
    results = []
    for key, (name, theirs, mine) in workloads.items():
        if not args.only or key in args.only:
            results += compare(args.runs, work, name, theirs, mine)
    print()
    print(f"{args.runs} paired runs, scale {args.scale}; Python {sys.version.split()[0]}")
    print()
    print("| framework class | operation | theirs | memstore | theirs / memstore |")
    print("|---|---|---:|---:|---:|")
    for name, part, theirs_s, mine_s, ratio in results:
        print(f"| {name} | {part} | {theirs_s:.3f} s | {mine_s:.3f} s | {ratio:.2f} |")


if __name__ == "__main__":
    main()
