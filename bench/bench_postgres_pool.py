"""Many threads on PostgreSQL: memstore's StorePool against psycopg_pool and an expert's SQL.

    python bench/bench_postgres_pool.py                  # 8 threads, 3 runs
    python bench/bench_postgres_pool.py --url postgresql://...   # a server of yours

A web server or a worker process runs its agents' calls on many threads. The
yardstick is what a PostgreSQL expert would write for that: psycopg_pool's
ConnectionPool of --threads connections, and bench_postgres.py's schema and
statements (jsonb, a generated column and index for the filtered field, each
statement autocommitted). memstore: a StorePool of --threads stores, a store
taken for each call; and, to show what the pool is for, one Store shared by every
thread (its calls one at a time). Each thread reads --ops records by key, then
writes --ops records (durable commits), then runs --ops // 4 filtered queries.

The server is Debian's PostgreSQL started for the run (tests/postgres.py) with its
durable defaults, on 127.0.0.1. The sides alternate, each on fresh tables; the
ratio is the expert's time / memstore's (above 1.00: memstore is faster), the
median of the runs'.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
from bench_postgres import (  # noqa: E402
    EXPERT_SCHEMA,
    KINDS,
    UPSERT,
    bench_database,
    record,
    server_settings,
)

import memstore  # noqa: E402

N = 20_000


class Expert:
    name = "expert (psycopg_pool)"

    def __init__(self, url: str, threads: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(EXPERT_SCHEMA)
        self.pool = psycopg_pool.ConnectionPool(
            url, min_size=threads, max_size=threads, kwargs={"autocommit": True}, open=True
        )
        self.pool.wait()

    def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur, conn.transaction():
            cur.executemany(UPSERT, [(k, Jsonb(r)) for k, r in rows])
            cur.execute("ANALYZE docs")

    def get(self, key: str) -> Any:
        with self.pool.connection() as conn:
            return conn.execute("SELECT body FROM docs WHERE key = %s", (key,)).fetchone()

    def put(self, key: str, data: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(UPSERT, (key, Jsonb(data)))

    def query(self, kind: str) -> Any:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT body FROM docs WHERE kind = %s ORDER BY ts DESC LIMIT 10", (kind,)
            ).fetchall()

    def close(self) -> None:
        self.pool.close()


class Memstore:
    def __init__(self, url: str, threads: int, shared: bool) -> None:
        self.name = "memstore, one shared Store" if shared else "memstore StorePool"
        self.shared = memstore.Store(url) if shared else None
        self.pool = None if shared else memstore.StorePool(url, size=threads)
        with self.store() as store:
            if "notes" in store:
                store.drop_collection("notes")
            store.collection("notes", fields={"kind": str, "ts": str}, indexes=[("kind", "-ts")])

    @contextmanager
    def store(self) -> Iterator[memstore.Store]:
        if self.pool is None:
            assert self.shared is not None
            yield self.shared
        else:
            with self.pool.store() as store:
                yield store

    def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        with self.store() as store:
            store.collection("notes").put_many(rows)
            store._fetch("ANALYZE notes")

    def get(self, key: str) -> Any:
        with self.store() as store:
            return store.collection("notes").get(key, None)

    def put(self, key: str, data: dict[str, Any]) -> None:
        with self.store() as store:
            store.collection("notes").put(key, data)

    def query(self, kind: str) -> Any:
        with self.store() as store:
            return store.collection("notes").query({"kind": kind}, order_by="-ts", limit=10)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.shared is not None:
            self.shared.close()


def run_threads(side: Any, threads: int, ops: int, part: str) -> float:
    """Seconds for every thread to do its share of one workload."""
    rng = random.Random(11)
    work: list[Callable[[], Any]] = []
    for t in range(threads):
        keys = [f"k{rng.randrange(N)}" for _ in range(ops)]
        new = [(f"t{t}-{i}", record(N + i, rng)) for i in range(ops)]
        if part == "get by key":
            work.append(lambda keys=keys: [side.get(k) for k in keys])
        elif part == "single put (durable)":
            work.append(lambda new=new: [side.put(k, r) for k, r in new])
        else:
            work.append(lambda: [side.query(KINDS[i % 4]) for i in range(ops // 4)])
    start = threading.Barrier(threads + 1)

    def body(job: Callable[[], Any]) -> None:
        start.wait()
        job()

    running = [threading.Thread(target=body, args=(job,)) for job in work]
    for thread in running:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in running:
        thread.join()
    return time.perf_counter() - began


PARTS = ("get by key", "single put (durable)", "filter + order + limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ops", type=int, default=500, help="operations per thread")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="an existing server's database (default: start one)")
    args = parser.parse_args()
    rows = [(f"k{i}", record(i, random.Random(i))) for i in range(N)]
    times: dict[str, dict[str, list[float]]] = {}
    with bench_database(args.url) as url:
        names = ("server_version", "fsync", "synchronous_commit", "max_connections")
        settings = server_settings(url, names)
        makers = [
            lambda: Expert(url, args.threads),
            lambda: Memstore(url, args.threads, shared=False),
            lambda: Memstore(url, args.threads, shared=True),
        ]
        for run in range(args.runs):
            for make in makers[run % 3 :] + makers[: run % 3]:
                side = make()
                side.load(rows)
                for part in PARTS:
                    seconds = run_threads(side, args.threads, args.ops, part)
                    times.setdefault(part, {}).setdefault(side.name, []).append(seconds)
                side.close()
    print(f"PostgreSQL {settings}; {args.threads} threads x {args.ops} ops; {args.runs} runs")
    print()
    print(
        "| workload | expert (psycopg_pool) | StorePool | one shared Store "
        "| expert / StorePool | expert / shared Store |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for part, by_side in times.items():
        expert = by_side["expert (psycopg_pool)"]
        pooled, shared = by_side["memstore StorePool"], by_side["memstore, one shared Store"]
        print(
            f"| {part} | {statistics.median(expert):.3f} s | {statistics.median(pooled):.3f} s "
            f"| {statistics.median(shared):.3f} s "
            f"| {statistics.median(e / p for e, p in zip(expert, pooled, strict=True)):.2f} "
            f"| {statistics.median(e / s for e, s in zip(expert, shared, strict=True)):.2f} |"
        )


if __name__ == "__main__":
    main()
