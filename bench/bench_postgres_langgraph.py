"""memstore_langgraph on PostgreSQL against LangGraph's own PostgreSQL classes, on one server.

    python bench/bench_postgres_langgraph.py                 # 100,000 store items, 3 runs
    python bench/bench_postgres_langgraph.py --url postgresql://...   # a server of yours

The yardstick is what LangGraph ships for PostgreSQL (langgraph-checkpoint-postgres):
``PostgresSaver`` for checkpoints and ``PostgresStore`` for the store, each on a
connection of its own (autocommit, as their docs set it up). The workloads are
bench_langgraph.py's: a chat agent's checkpoints (put with two pending writes, then
get_tuple and list of the last 10), and a store of items in 1,000 user namespaces
(loaded in batches, then single puts, gets and filtered searches of one namespace).

The server is Debian's PostgreSQL started for the run (tests/postgres.py) with its
default, durable settings, on 127.0.0.1. Each run gives each side a fresh database;
the sides alternate; ratio = LangGraph's time / memstore's (above 1: memstore is
faster), the median of the runs'.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.store.postgres import PostgresStore
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "adapters"), str(ROOT / "bench")]
import postgres  # noqa: E402
from bench_langgraph import (  # noqa: E402
    THREADS,
    load,
    read_saver,
    run_saver,
    script,
    store_items,
    store_work,
)

from memstore_langgraph import MemstoreSaver, MemstoreStore  # noqa: E402


@contextmanager
def langgraphs(kind: Any, url: str) -> Iterator[Any]:
    """LangGraph's PostgresSaver or PostgresStore, set up as their documentation does."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        made = kind(conn)
        made.setup()
        yield made


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="store items (default 100,000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="an existing server's database URL (its server is used)")
    args = parser.parse_args()
    home = None
    if args.url:
        server = postgres.Server(args.url)
    else:
        server, home = postgres.start(durable=True)
    server.prepare()  # the template memstore's databases are copies of
    plan, items = script(), store_items(args.items)
    times: dict[str, dict[str, list[float]]] = {}
    try:
        for run in range(args.runs):
            # memstore's store without its full-text index (fts=False) is a third side:
            # PostgresStore has none.
            sides = ["theirs", "mine", "mine, fts=False"]
            for side in sides[run % 3 :] + sides[: run % 3]:
                url = server.new_database()
                mine = side != "theirs"
                got = times.setdefault
                if side == "mine, fts=False":
                    with MemstoreStore(url, fts=False) as store:
                        got("store load, fts=False", {}).setdefault("mine", []).append(
                            timed(lambda store=store: load(store, items))
                        )
                        seconds = store_work(store, random.Random(run))["put"]
                        got("store put, fts=False", {}).setdefault("mine", []).append(seconds)
                    server.drop(url)
                    continue
                with MemstoreSaver(url) if mine else langgraphs(PostgresSaver, url) as saver:
                    got("checkpoint put", {}).setdefault(side, []).append(
                        timed(lambda saver=saver: run_saver(saver, plan))
                    )
                    got("checkpoint get+list", {}).setdefault(side, []).append(
                        timed(lambda saver=saver: read_saver(saver))
                    )
                with MemstoreStore(url) if mine else langgraphs(PostgresStore, url) as store:
                    got("store load", {}).setdefault(side, []).append(
                        timed(lambda store=store: load(store, items))
                    )
                    for part, seconds in store_work(store, random.Random(run)).items():
                        got(f"store {part}", {}).setdefault(side, []).append(seconds)
                server.drop(url)
        for part in ("load", "put"):  # against the same runs of PostgresStore
            times[f"store {part}, fts=False"]["theirs"] = times[f"store {part}"]["theirs"]
        with psycopg.connect(server.url(server.template)) as probe:
            settings = {
                s: probe.execute(f"SHOW {s}").fetchone()[0]  # type: ignore[index]
                for s in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }
    finally:
        server.stop()
        if home is not None:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
    what = {
        "checkpoint put": f"{len(plan) * len(plan[0]):,} checkpoints with 2 writes each",
        "checkpoint get+list": f"{THREADS * 10} get_tuple + list(limit=10)",
        "store load": f"{len(items):,} items, batches of 1,000",
        "store put": "2,000 single puts",
        "store get": "2,000 gets",
        "store search": "500 searches of one namespace, 2-field filter, top 10",
        "store load, fts=False": "the same load, memstore without the full-text index",
        "store put, fts=False": "the same puts, memstore without the full-text index",
    }
    print(f"PostgreSQL {settings}; {args.runs} runs")
    print()
    print("| workload | what | LangGraph's | theirs | memstore | theirs / memstore |")
    print("|---|---|---|---:|---:|---:|")
    for name, got in times.items():
        ratio = statistics.median(t / m for t, m in zip(got["theirs"], got["mine"], strict=True))
        theirs = "PostgresSaver" if name.startswith("checkpoint") else "PostgresStore"
        print(
            f"| {name} | {what[name]} | {theirs} | {statistics.median(got['theirs']):.3f} s "
            f"| {statistics.median(got['mine']):.3f} s | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
