"""memstore on PostgreSQL against what a PostgreSQL expert would hand-write, on one server.

    python bench/bench_postgres.py               # paired ratios at N = 20,000 records
    python bench/bench_postgres.py --url postgresql://...   # a server of your own

The server is Debian's PostgreSQL started for the run (tests/postgres.py) with its
default, durable settings: fsync, synchronous_commit and full_page_writes on, on
127.0.0.1 (TCP). The expert's code is psycopg 3 on a schema made for the workload:
the record as jsonb, generated columns for what is filtered, ordered and searched,
one compound index (kind, ts DESC), a GIN index on a generated tsvector, and each
write one autocommitted statement. memstore gets the collection a user would
declare: ``fields={"kind": str, "ts": str}, fts=["summary"],
indexes=[("kind", "-ts")]``. memstore on a SQLite file (WAL, synchronous=NORMAL:
not durable against power loss, as PostgreSQL here is) runs the same workloads in the
same run, for scale.

Each workload runs --runs times, the three alternately, each on fresh tables; the
ratio of each pair is the other's time / memstore-on-PostgreSQL's time (above 1.00:
memstore on PostgreSQL is faster), and the median of those ratios is reported.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import postgres  # noqa: E402

import memstore  # noqa: E402

EXPERT_SCHEMA = """
DROP TABLE IF EXISTS docs;
CREATE TABLE docs (
    key        text PRIMARY KEY,
    body       jsonb NOT NULL,
    kind       text GENERATED ALWAYS AS (body->>'kind') STORED,
    ts         text GENERATED ALWAYS AS (body->>'ts') STORED,
    search     tsvector GENERATED ALWAYS AS
               (to_tsvector('simple', coalesce(body->>'summary', ''))) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX docs_kind_ts ON docs (kind, ts DESC);
CREATE INDEX docs_search ON docs USING gin (search);
"""
UPSERT = (
    "INSERT INTO docs (key, body) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
    "SET body = excluded.body, updated_at = now()"
)
WORDS = ["timeout", "retry", "search", "tool", "error", "plan"]
WORDS += ["agent", "memory", "answer", "cache", "user", "model"]
KINDS = ["error", "info", "warn", "debug"]


def record(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "kind": rng.choice(KINDS),
        "ts": f"2026-11-{1 + i % 28:02}T{i % 24:02}:{i % 60:02}:00Z",
        "summary": " ".join(rng.choices(WORDS, k=6)) + f" item{i}",
        "payload": {"n": i, "tags": rng.sample(WORDS, 2)},
    }


class Expert:
    name = "expert (psycopg)"

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(EXPERT_SCHEMA)

    def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        with self.conn.cursor() as cur, self.conn.transaction():
            cur.executemany(UPSERT, [(k, psycopg.types.json.Jsonb(r)) for k, r in rows])
        self.conn.execute("ANALYZE docs")

    def put(self, key: str, data: dict[str, Any]) -> None:
        self.conn.execute(UPSERT, (key, psycopg.types.json.Jsonb(data)))

    def get(self, key: str) -> Any:
        return self.conn.execute("SELECT body FROM docs WHERE key = %s", (key,)).fetchone()

    def query(self, kind: str) -> list[Any]:
        return self.conn.execute(
            "SELECT body FROM docs WHERE kind = %s ORDER BY ts DESC LIMIT 10", (kind,)
        ).fetchall()

    def search(self, word: str) -> list[Any]:
        return self.conn.execute(
            "SELECT key, body FROM docs, plainto_tsquery('simple', %s) AS q "
            "WHERE search @@ q ORDER BY ts_rank(search, q) DESC LIMIT 10",
            (word,),
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


class Memstore:
    def __init__(self, where: str, name: str) -> None:
        self.name = name
        self.store = memstore.Store(where)
        if "notes" in self.store:
            self.store.drop_collection("notes")
        self.notes = self.store.collection(
            "notes", fields={"kind": str, "ts": str}, fts=["summary"], indexes=[("kind", "-ts")]
        )

    def load(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        self.notes.put_many(rows)

    def put(self, key: str, data: dict[str, Any]) -> None:
        self.notes.put(key, data)

    def get(self, key: str) -> Any:
        return self.notes.get(key)

    def query(self, kind: str) -> list[Any]:
        return self.notes.query({"kind": kind}, order_by="-ts", limit=10)

    def search(self, word: str) -> list[Any]:
        return self.notes.search(word, limit=10)

    def close(self) -> None:
        self.store.close()


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def workloads(n: int, ops: int) -> dict[str, Callable[[Any], Callable[[], Any]]]:
    rng = random.Random(7)
    rows = [(f"k{i}", record(i, rng)) for i in range(n)]
    keys = [f"k{rng.randrange(n)}" for _ in range(ops)]
    new = [(f"new{i}", record(n + i, rng)) for i in range(ops)]

    def single_puts(side: Any) -> Callable[[], Any]:
        return lambda: [side.put(k, r) for k, r in new]

    return {
        "load (put_many / executemany)": lambda side: lambda: side.load(rows),
        "single put (durable)": single_puts,
        "get by key": lambda side: lambda: [side.get(k) for k in keys],
        "filter + order + limit": lambda side: (
            lambda: [side.query(KINDS[i % 4]) for i in range(ops)]
        ),
        "full-text search": lambda side: (
            lambda: [side.search(WORDS[i % 12]) for i in range(ops // 4)]
        ),
    }


@contextmanager
def bench_database(given: str | None) -> Iterator[str]:
    """The database to run on: ``given`` (--url), or one on a server started for the run
    with PostgreSQL's durable defaults, stopped and removed after."""
    if given:
        yield given
        return
    server, home = postgres.start(durable=True)
    try:
        server.admin("CREATE DATABASE bench")
        yield server.url("bench")
    finally:
        server.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def server_settings(url: str, names: Sequence[str]) -> dict[str, str]:
    """The server's settings a benchmark states with its figures."""
    with psycopg.connect(url) as probe:
        return {s: probe.execute(f"SHOW {s}").fetchone()[0] for s in names}  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="records loaded")
    parser.add_argument("--ops", type=int, default=2_000, help="operations per timed workload")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", help="an existing server's database (default: start one)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="memstore-bench-")
    ratios: dict[str, dict[str, list[float]]] = {}
    with bench_database(args.url) as url:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        settings = server_settings(url, names)
        print(f"PostgreSQL {settings}; N = {args.n:,}, {args.ops:,} operations, {args.runs} runs")
        for run in range(args.runs):
            file = f"{folder}/run{run}.db"
            sides = [
                lambda: Memstore(url, "memstore on PostgreSQL"),
                lambda: Expert(url),
                lambda: Memstore(file, "memstore on SQLite"),  # noqa: B023 (called in the loop)
            ]
            times: dict[str, dict[str, float]] = {}
            order = sides if run % 2 == 0 else [sides[0], *reversed(sides[1:])]
            for make in order:
                side = make()
                for label, work in workloads(args.n, args.ops).items():
                    times.setdefault(label, {})[side.name] = timed(work(side))
                side.close()
            for label, by_side in times.items():
                ours = by_side["memstore on PostgreSQL"]
                for other in ("expert (psycopg)", "memstore on SQLite"):
                    ratios.setdefault(label, {}).setdefault(other, []).append(by_side[other] / ours)
            puts = times["single put (durable)"]
            print(
                f"run {run + 1}, single puts: "
                + ", ".join(f"{k} {v:.3f} s" for k, v in puts.items())
            )
        print("\n| workload | expert / memstore-PG | memstore-SQLite / memstore-PG |")
        print("|---|---:|---:|")
        for label, by_other in ratios.items():
            print(
                f"| {label} | {statistics.median(by_other['expert (psycopg)']):.2f} "
                f"| {statistics.median(by_other['memstore on SQLite']):.2f} |"
            )


if __name__ == "__main__":
    main()
