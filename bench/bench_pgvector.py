"""memstore's vector search on PostgreSQL with pgvector, against a pgvector expert's code.

    python bench/bench_pgvector.py              # N = 20,000 vectors of 384 dimensions

One durable server (tests/postgres.py: Debian's PostgreSQL with the pgvector that
.ci/pgvector builds). The expert's table is what pgvector's README shows: ``id bigint
PRIMARY KEY, body jsonb, embedding vector(384)``, queried with ``ORDER BY embedding
<=> %s LIMIT 10``, exactly (no index) and through an HNSW index (m 16,
ef_construction 64, hnsw.ef_search 200, memstore's defaults). memstore: a collection
with ``vectors={"dim": 384, "model": "m"}`` (and ``"hnsw": True``) in a database with
the extension; and memstore in a database without it, where its own numpy index ranks
(for scale: the first query of a process loads every vector).

Each workload runs --runs times, the sides alternately; a ratio is the other side's
time / memstore-with-pgvector's (above 1.00: memstore is faster), the median of the
runs' ratios. Recall: the share of the exact 10 nearest that the approximate search
returns, over the queries (each a stored vector moved a little: near what is stored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import postgres  # noqa: E402

import memstore  # noqa: E402

DIM = 384


def vectors(n: int, seed: int) -> np.ndarray:
    """Clustered, as embeddings of related texts are: 200 centres and noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, DIM))
    return (centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, DIM))).astype(
        np.float32
    )


def text(v: np.ndarray) -> str:
    return "[" + ",".join(map(repr, v.astype(np.float64).tolist())) + "]"


class Expert:
    def __init__(self, url: str, hnsw: bool) -> None:
        self.name = "expert pgvector" + (" (HNSW)" if hnsw else "")
        self.hnsw = hnsw
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(
            "DROP TABLE IF EXISTS items; CREATE TABLE items (id bigint PRIMARY KEY, "
            f"body jsonb NOT NULL, embedding vector({DIM}) NOT NULL)"
        )

    def load(self, matrix: np.ndarray) -> None:
        with self.conn.cursor() as cur, self.conn.transaction():
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s::vector)",
                [(i, json.dumps({"i": i}), text(v)) for i, v in enumerate(matrix)],
            )
        if self.hnsw:
            self.conn.execute(
                "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
        self.conn.execute("ANALYZE items")

    def nearest(self, q: np.ndarray) -> list[int]:
        with self.conn.transaction():
            if self.hnsw:
                self.conn.execute("SET LOCAL hnsw.ef_search = 200")
            rows = self.conn.execute(
                "SELECT id, body, 1 - (embedding <=> %s::vector) FROM items "
                "ORDER BY embedding <=> %s::vector LIMIT 10",
                (text(q), text(q)),
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self.conn.close()


class Memstore:
    def __init__(self, url: str, name: str, hnsw: bool) -> None:
        self.name, self.url, self.hnsw = name, url, hnsw
        self.store = memstore.Store(url)
        self.items = self.store.collection("items", vectors={"dim": DIM, "model": "m"})

    def load(self, matrix: np.ndarray) -> None:
        self.items.put_many([(str(i), {"i": i}) for i in range(len(matrix))], vectors=matrix)
        if self.hnsw:  # declared after the load, as the expert builds theirs
            self.store.collection("items", vectors={"dim": DIM, "model": "m", "hnsw": True})
        self.store.optimize()
        self.store.close()  # queries come from a process that has loaded nothing yet
        self.store = memstore.Store(self.url)
        self.items = self.store["items"]

    def nearest(self, q: np.ndarray) -> list[int]:
        return [int(h.key) for h in self.items.nearest(q, k=10)]

    def close(self) -> None:
        self.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server, home = postgres.start(durable=True)
    try:
        server.admin("CREATE DATABASE probe")
        with psycopg.connect(server.url("probe"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            version = conn.execute("SELECT extversion FROM pg_extension").fetchall()
            settings = {
                s: conn.execute(f"SHOW {s}").fetchone()[0]  # type: ignore[index]
                for s in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }
        print(f"PostgreSQL {settings}, pgvector {version[-1][0]}")
        print(f"N = {args.n:,} vectors of {DIM} dimensions, {args.queries} queries, k = 10")
        matrix = vectors(args.n, 1)
        # Queries near what is stored, as an agent's are (a text like those it keeps).
        rng = np.random.default_rng(2)
        picked = matrix[rng.integers(0, args.n, args.queries)]
        queries = (picked + 0.3 * rng.standard_normal(picked.shape)).astype(np.float32)
        databases = iter(range(1_000_000))

        def database(pgvector: bool) -> str:
            """A fresh database for each side and run: no side reads another's dead rows."""
            name = f"run{next(databases)}"
            server.admin(f"CREATE DATABASE {name}")
            if pgvector:
                server.admin_in(name, "CREATE EXTENSION vector")
            return server.url(name)

        sides = [
            lambda: Memstore(database(True), "memstore, pgvector exact", False),
            lambda: Expert(database(True), False),
            lambda: Memstore(database(True), "memstore, pgvector HNSW", True),
            lambda: Expert(database(True), True),
            lambda: Memstore(database(False), "memstore, its own index", False),
        ]
        times: dict[str, dict[str, list[float]]] = {}
        found: dict[str, list[list[int]]] = {}
        for run in range(args.runs):
            for make in sides if run % 2 == 0 else [sides[0], *reversed(sides[1:])]:
                side = make()
                start = time.perf_counter()
                side.load(matrix)
                loaded = time.perf_counter()
                answers = [side.nearest(q) for q in queries]
                done = time.perf_counter()
                side.close()
                times.setdefault("load", {}).setdefault(side.name, []).append(loaded - start)
                times.setdefault("nearest", {}).setdefault(side.name, []).append(done - loaded)
                found[side.name] = answers
        exact = found["expert pgvector"]
        print("\n| side | load s | nearest ms/query | recall@10 |")
        print("|---|---:|---:|---:|")
        for name, answers in found.items():
            recall = statistics.mean(
                len(set(a) & set(e)) / 10 for a, e in zip(answers, exact, strict=True)
            )
            load = statistics.median(times["load"][name])
            each = statistics.median(times["nearest"][name]) / args.queries * 1000
            print(f"| {name} | {load:.2f} | {each:.2f} | {recall:.3f} |")
        pairs = [
            ("memstore, pgvector exact", "expert pgvector"),
            ("memstore, pgvector HNSW", "expert pgvector (HNSW)"),
        ]
        print("\n| workload | expert / memstore |")
        print("|---|---:|")
        for label, by_side in times.items():
            for ours, theirs in pairs:
                ratio = statistics.median(
                    t / o for t, o in zip(by_side[theirs], by_side[ours], strict=True)
                )
                print(f"| {label}, {ours.split(', ')[1]} | {ratio:.2f} |")
    finally:
        server.stop()
        if home is not None:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
