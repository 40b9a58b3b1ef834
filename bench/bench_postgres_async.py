"""Many coroutines on PostgreSQL: AsyncStore(workers=n) against psycopg_pool's async pool.

    python bench/bench_postgres_async.py                  # 16 coroutines, 3 runs
    python bench/bench_postgres_async.py --url postgresql://...   # a server of yours

An async web server or agent runtime runs many requests' calls at once on one event
loop. The yardstick is what a PostgreSQL expert would write for that: psycopg_pool's
AsyncConnectionPool of --workers connections, and bench_postgres.py's schema and
statements (jsonb, a generated column and index for the filtered field, each
statement autocommitted). memstore: AsyncStore(url, workers=--workers), and, to show
what the workers are for, AsyncStore(url) with its one worker (every call in turn).
Each of --tasks coroutines reads --ops records by key, then writes --ops records
(durable commits), then runs --ops // 4 filtered queries.

The server is Debian's PostgreSQL started for the run (tests/postgres.py) with its
durable defaults, on 127.0.0.1. The sides alternate, each on fresh tables; the ratio
is the expert's time / memstore's (above 1.00: memstore is faster), the median of
the runs'.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
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
EXPERT = "expert (AsyncConnectionPool)"


class Expert:
    name = EXPERT

    def __init__(self, url: str, workers: int) -> None:
        self.url, self.workers = url, workers

    async def open(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(EXPERT_SCHEMA)
        self.pool = psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=self.workers,
            max_size=self.workers,
            kwargs={"autocommit": True},
            open=False,
        )
        await self.pool.open(wait=True)

    async def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        async with self.pool.connection() as conn, conn.cursor() as cur, conn.transaction():
            await cur.executemany(UPSERT, [(k, Jsonb(r)) for k, r in rows])
            await cur.execute("ANALYZE docs")

    async def get(self, key: str) -> Any:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT body FROM docs WHERE key = %s", (key,))
            return await cur.fetchone()

    async def put(self, key: str, data: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(UPSERT, (key, Jsonb(data)))

    async def query(self, kind: str) -> Any:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT body FROM docs WHERE kind = %s ORDER BY ts DESC LIMIT 10", (kind,)
            )
            return await cur.fetchall()

    async def close(self) -> None:
        await self.pool.close()


class Memstore:
    def __init__(self, url: str, workers: int) -> None:
        self.url, self.workers = url, workers
        self.name = f"AsyncStore, {workers} worker{'s' if workers > 1 else ''}"

    async def open(self) -> None:
        self.store = await memstore.AsyncStore.open(self.url, workers=self.workers)
        if await self.store.run(lambda: "notes" in self.store.store):
            await self.store.drop_collection("notes")
        self.notes = await self.store.collection(
            "notes", fields={"kind": str, "ts": str}, indexes=[("kind", "-ts")]
        )

    async def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        await self.notes.put_many(rows)
        await self.store.run(lambda: self.store.store._fetch("ANALYZE notes"))

    async def get(self, key: str) -> Any:
        return await self.notes.get(key, None)

    async def put(self, key: str, data: dict[str, Any]) -> None:
        await self.notes.put(key, data)

    async def query(self, kind: str) -> Any:
        return await self.notes.query({"kind": kind}, order_by="-ts", limit=10)

    async def close(self) -> None:
        await self.store.close()


async def run_tasks(side: Any, tasks: int, ops: int, part: str) -> float:
    """Seconds for every coroutine to do its share of one workload."""
    rng = random.Random(11)
    jobs = []
    for t in range(tasks):
        keys = [f"k{rng.randrange(N)}" for _ in range(ops)]
        new = [(f"t{t}-{i}", record(N + i, rng)) for i in range(ops)]

        async def job(keys: list[str] = keys, new: list[Any] = new) -> None:
            if part == "get by key":
                for key in keys:
                    await side.get(key)
            elif part == "single put (durable)":
                for key, data in new:
                    await side.put(key, data)
            else:
                for i in range(ops // 4):
                    await side.query(KINDS[i % 4])

        jobs.append(job)
    began = time.perf_counter()
    await asyncio.gather(*(job() for job in jobs))
    return time.perf_counter() - began


PARTS = ("get by key", "single put (durable)", "filter + order + limit")


async def bench(url: str, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    rows = [(f"k{i}", record(i, random.Random(i))) for i in range(N)]
    times: dict[str, dict[str, list[float]]] = {}
    makers = [
        lambda: Expert(url, args.workers),
        lambda: Memstore(url, args.workers),
        lambda: Memstore(url, 1),
    ]
    for run in range(args.runs):
        for make in makers[run % 3 :] + makers[: run % 3]:
            side = make()
            await side.open()
            await side.load(rows)
            for part in PARTS:
                seconds = await run_tasks(side, args.tasks, args.ops, part)
                times.setdefault(part, {}).setdefault(side.name, []).append(seconds)
            await side.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16, help="coroutines at once")
    parser.add_argument("--workers", type=int, default=4, help="connections, both sides")
    parser.add_argument("--ops", type=int, default=300, help="operations per coroutine")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="an existing server's database (default: start one)")
    args = parser.parse_args()
    with bench_database(args.url) as url:
        names = ("server_version", "fsync", "synchronous_commit", "max_connections")
        settings = server_settings(url, names)
        times = asyncio.run(bench(url, args))
    workers, one = f"AsyncStore, {args.workers} workers", "AsyncStore, 1 worker"
    print(
        f"PostgreSQL {settings}; {args.tasks} coroutines x {args.ops} ops, "
        f"{args.workers} connections; {args.runs} runs"
    )
    print()
    print(
        f"| workload | {EXPERT} | {workers} | {one} "
        f"| expert / {args.workers} workers | expert / 1 worker |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for part, by_side in times.items():
        expert, many, single = by_side[EXPERT], by_side[workers], by_side[one]
        print(
            f"| {part} | {statistics.median(expert):.3f} s | {statistics.median(many):.3f} s "
            f"| {statistics.median(single):.3f} s "
            f"| {statistics.median(e / m for e, m in zip(expert, many, strict=True)):.2f} "
            f"| {statistics.median(e / s for e, s in zip(expert, single, strict=True)):.2f} |"
        )


if __name__ == "__main__":
    main()
