"""memstore_langgraph against LangGraph's own SQLite classes, in the same run.

    python bench/bench_langgraph.py                  # 100,000 store items, 3 paired runs
    python bench/bench_langgraph.py --items 20000 --runs 1

The yardstick is what LangGraph ships for SQLite: ``SqliteSaver`` and
``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite) for checkpoints,
``SqliteStore`` for the store. Both sides write a file of their own in WAL
mode with the same durability (``synchronous=NORMAL``: memstore's default,
set on LangGraph's connections too).

- Checkpoints: a chat agent's threads, each step a checkpoint whose
  ``messages`` channel grows by one message (about 300 bytes) and whose
  ``step`` channel changes, with two pending writes; ``put`` (with
  ``put_writes``), ``get_tuple`` of each thread's latest and ``list``
  of its last 10, sync and async. Puts and reads are timed on a saver
  already open; opening a new file (each side's setup) is a row of its own.
  The same again with a ``context`` channel of 50 KB set at the first step
  and never changed (a document the agent works on): the state shape where
  writing each value once per version, as memstore does, pays.
- Store: 100,000 items in 1,000 namespaces ``("users", "u0042")``, loaded
  in batches, then single puts, gets, and searches of one user's namespace
  with a filter on two value fields.

Each workload runs --runs times, the two sides alternately on fresh files;
ratio = LangGraph's time / memstore's time (above 1: memstore is faster),
and the table gives the median ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.base import PutOp
from langgraph.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / p) for p in (".", "plugins", "cli", "demo", "legacy", "adapters", "mcp_server")
]
from bench_core import alternating, medians, paired  # noqa: E402

import memstore  # noqa: E402
from memstore_langgraph import MemstoreSaver, MemstoreStore  # noqa: E402

THREADS, STEPS = 20, 50


def script(
    context: int = 0,
) -> list[list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[Any]]]]:
    """Per thread, per step: (checkpoint, metadata, new_versions, writes); with a
    ``context`` channel of that many bytes, set at step 0 and never changed, if above 0."""
    rnd = random.Random(7)
    words = [
        "plan",
        "search",
        "tool",
        "answer",
        "user",
        "retry",
        "cache",
        "budget",
        "model",
        "context",
        "window",
    ]
    document = "".join(rnd.choice("abcdefghij klmnop") for _ in range(context))
    threads = []
    for _ in range(THREADS):
        messages: list[dict[str, Any]] = []
        steps = []
        for step in range(STEPS):
            text = " ".join(rnd.choice(words) for _ in range(40))
            messages = [*messages, {"role": "user" if step % 2 else "ai", "content": text}]
            checkpoint = empty_checkpoint()
            checkpoint["id"] = str(uuid6(clock_seq=-1))
            checkpoint["channel_values"] = {"messages": messages, "step": step, "goal": "trip"}
            versions = {"messages": f"{step + 1:032}.0", "step": f"{step + 1:032}.0"}
            first = {"goal": f"{1:032}.0"}  # the channels set at step 0 only
            if context:
                checkpoint["channel_values"]["context"] = document
                first["context"] = f"{1:032}.0"
            checkpoint["channel_versions"] = {**versions, **first}
            new = dict(versions) if step else {**versions, **first}
            metadata = {"source": "loop", "step": step, "parents": {}}
            writes = [("messages", {"role": "ai", "content": text}), ("step", step + 1)]
            steps.append((checkpoint, metadata, new, writes))
        threads.append(steps)
    return threads


def run_saver(saver: Any, plan: list[Any]) -> None:
    for t, steps in enumerate(plan):
        config: dict[str, Any] = {"configurable": {"thread_id": f"t{t}", "checkpoint_ns": ""}}
        for checkpoint, metadata, new, writes in steps:
            config = saver.put(config, checkpoint, metadata, new)
            saver.put_writes(config, writes, "task-1")


def read_saver(saver: Any, rounds: int = 10) -> None:
    for _ in range(rounds):
        for t in range(THREADS):
            config = {"configurable": {"thread_id": f"t{t}", "checkpoint_ns": ""}}
            assert saver.get_tuple(config) is not None
            assert len(list(saver.list(config, limit=10))) == 10


async def arun_saver(saver: Any, plan: list[Any]) -> None:
    for t, steps in enumerate(plan):
        config: dict[str, Any] = {"configurable": {"thread_id": f"t{t}", "checkpoint_ns": ""}}
        for checkpoint, metadata, new, writes in steps:
            config = await saver.aput(config, checkpoint, metadata, new)
            await saver.aput_writes(config, writes, "task-1")


async def aread_saver(saver: Any, rounds: int = 10) -> None:
    for _ in range(rounds):
        for t in range(THREADS):
            config = {"configurable": {"thread_id": f"t{t}", "checkpoint_ns": ""}}
            assert await saver.aget_tuple(config) is not None
            assert len([c async for c in saver.alist(config, limit=10)]) == 10


@contextmanager
def sqlite_saver(path: Path) -> Iterator[SqliteSaver]:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(conn)
    saver.setup()
    try:
        yield saver
    finally:
        conn.close()


def store_items(n: int) -> list[PutOp]:
    rnd = random.Random(3)
    kinds = ["preference", "fact", "episode", "instruction"]
    return [
        PutOp(
            ("users", f"u{i % 1000:04d}"),
            f"m{i:07d}",
            {
                "kind": rnd.choice(kinds),
                "score": rnd.randint(0, 9),
                "text": f"memory {i} about " + " ".join(rnd.sample(kinds, 2)),
            },
        )
        for i in range(n)
    ]


@contextmanager
def sqlite_store(path: Path) -> Iterator[SqliteStore]:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    store = SqliteStore(conn)
    store.setup()
    try:
        yield store
    finally:
        conn.close()


def load(store: Any, items: list[PutOp]) -> None:
    for start in range(0, len(items), 1000):
        store.batch(items[start : start + 1000])


def store_work(store: Any, rnd: random.Random) -> dict[str, float]:
    """Seconds spent on 2,000 single puts, 2,000 gets and 500 filtered searches."""
    took: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(2000):
        store.put(("users", f"u{rnd.randrange(1000):04d}"), f"new{i}", {"kind": "fact", "score": 5})
    took["put"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(2000):
        i = rnd.randrange(100_000)
        store.get(("users", f"u{i % 1000:04d}"), f"m{i:07d}")
    took["get"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(500):
        namespace = ("users", f"u{rnd.randrange(1000):04d}")
        store.search(namespace, filter={"kind": "fact", "score": {"$gte": 5}}, limit=10)
    took["search"] = time.perf_counter() - started
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="store items (default 100,000)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs per workload")
    parser.add_argument(
        "--only", choices=["checkpoints", "store"], help="run one half of the workloads"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memstore-langgraph-"))
    plan = script()
    items = store_items(args.items)
    results = []

    def report(name: str, what: str, theirs: str, timing: tuple[float, float, float]) -> None:
        results.append((name, what, theirs, *timing))
        print(
            f"{name:36} {theirs:18} {timing[0]:8.3f}s  memstore {timing[1]:8.3f}s  "
            f"ratio {timing[2]:5.2f}",
            flush=True,
        )

    def savers(
        shape: list[Any], label: str
    ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
        """Seconds to open a new file, to put ``shape``'s checkpoints, and to read them:
        per side, per run, the sides alternating."""
        opens: dict[str, list[float]] = {"theirs": [], "mine": []}
        puts: dict[str, list[float]] = {"theirs": [], "mine": []}
        reads: dict[str, list[float]] = {"theirs": [], "mine": []}
        for run, side in alternating(args.runs):
            path = work / f"saver-{label}-{side}-{run}.db"
            started = time.perf_counter()
            with (sqlite_saver if side == "theirs" else MemstoreSaver)(path) as saver:
                opens[side].append(time.perf_counter() - started)
                started = time.perf_counter()
                run_saver(saver, shape)
                puts[side].append(time.perf_counter() - started)
                started = time.perf_counter()
                read_saver(saver)
                reads[side].append(time.perf_counter() - started)
        return opens, puts, reads

    def checkpoints() -> None:
        n = THREADS * STEPS
        opens, puts, reads = savers(plan, "chat")
        report(
            "checkpoint put", f"{n:,} checkpoints with 2 writes each", "SqliteSaver", medians(puts)
        )
        report(
            "checkpoint get+list",
            f"{THREADS * 10} get_tuple + list(limit=10)",
            "SqliteSaver",
            medians(reads),
        )
        report("checkpoint new file", "open a new file, set up", "SqliteSaver", medians(opens))
        _, puts, reads = savers(script(context=50_000), "context")
        report(
            "checkpoint put, 50 KB unchanged",
            "the same with a 50 KB channel set once",
            "SqliteSaver",
            medians(puts),
        )
        report(
            "checkpoint get+list, 50 KB unchanged",
            "the same with a 50 KB channel set once",
            "SqliteSaver",
            medians(reads),
        )

        async def async_side(path: Path, mine: bool) -> float:
            if mine:
                async with MemstoreSaver(path) as saver:
                    await arun_saver(saver, plan)
                    started = time.perf_counter()
                    await aread_saver(saver)
                    return time.perf_counter() - started
            async with aiosqlite.connect(path) as conn:
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                saver = AsyncSqliteSaver(conn)
                await saver.setup()
                await arun_saver(saver, plan)
                started = time.perf_counter()
                await aread_saver(saver)
                return time.perf_counter() - started

        put_times: dict[str, list[float]] = {"theirs": [], "mine": []}
        aread: dict[str, list[float]] = {"theirs": [], "mine": []}
        for run, side in alternating(args.runs):
            started = time.perf_counter()
            reading = asyncio.run(async_side(work / f"async-{side}-{run}.db", side == "mine"))
            put_times[side].append(time.perf_counter() - started - reading)
            aread[side].append(reading)
        for name, got in (("async put", put_times), ("async get+list", aread)):
            report(
                name, "the same, through aput/aget_tuple/alist", "AsyncSqliteSaver", medians(got)
            )

    def store() -> None:
        def theirs_load(path: Path) -> None:
            with sqlite_store(path) as store:
                load(store, items)

        def mine_load(path: Path) -> None:
            with MemstoreStore(path) as store:
                load(store, items)

        report(
            "store load",
            f"{len(items):,} items, batches of 1,000",
            "SqliteStore",
            paired(args.runs, work, theirs_load, mine_load),
        )

        parts: dict[str, dict[str, list[float]]] = {}
        for run, side in alternating(args.runs):
            path = work / f"store-{side}-{run}.db"
            opener = sqlite_store if side == "theirs" else MemstoreStore
            with opener(path) as store:
                load(store, items)
                for part, seconds in store_work(store, random.Random(run)).items():
                    parts.setdefault(part, {"theirs": [], "mine": []})[side].append(seconds)
        # The same puts into a store without the full-text index (fts=False), against the
        # same runs of SqliteStore.
        nofts: list[float] = []
        for run in range(args.runs):
            with MemstoreStore(work / f"store-nofts-{run}.db", fts=False) as store:
                load(store, items)
                nofts.append(store_work(store, random.Random(run))["put"])
        parts["put, fts=False"] = {"theirs": parts["put"]["theirs"], "mine": nofts}
        what = {
            "put, fts=False": "the same, memstore without the full-text index",
            "put": "2,000 single puts",
            "get": "2,000 gets",
            "search": "500 searches of one namespace, 2-field filter, top 10",
        }
        for part, got in parts.items():
            report(
                f"store {part}",
                f"{what[part]} at {len(items):,} items",
                "SqliteStore",
                medians(got),
            )

    if args.only != "store":
        checkpoints()
    if args.only != "checkpoints":
        store()
    print()
    print(
        f"{args.runs} paired runs; SQLite {memstore.apsw.sqlite_lib_version()} (memstore), "
        f"{sqlite3.sqlite_version} (LangGraph's sqlite3); Python {sys.version.split()[0]}"
    )
    print()
    print("| workload | what | LangGraph's | theirs | memstore | theirs / memstore |")
    print("|---|---|---|---:|---:|---:|")
    for name, what, theirs, t, m, r in results:
        print(f"| {name} | {what} | {theirs} | {t:.3f} s | {m:.3f} s | {r:.2f} |")


if __name__ == "__main__":
    main()
