"""memstore's vector memory against numpy brute force and sqlite-vec, in the same run.

    pip install sqlite-vec                      # the outside yardstick
    python bench/bench_vectors.py               # 100,000 and 1,000,000 vectors of 384
    python bench/bench_vectors.py --n 100000    # quicker

The data imitates sentence embeddings: 384-dimensional unit vectors around
2,000 topics (a mixture of Gaussians), each record in one of 100 groups
(a filter on one group selects 1 %). Three sets of queries, top 10 by
cosine similarity:

- texts near stored ones (a stored vector plus a little noise): every side
  answers these, filtered by group too;
- new texts on known topics, drawn like the stored vectors;
- queries far from everything stored (random directions), where all scores
  are nearly alike: the hard case for quantized search.

The sides:

- numpy: the matrix and its norms in memory, ``M @ q / norms`` and
  argpartition (exact; filtered: the group's rows, known in advance);
- sqlite-vec: a ``vec0`` table (exact brute force in C), the group as a
  metadata column for filtered queries;
- memstore: ``Collection.nearest`` on its own file, after one warm-up query
  (which loads the vectors into memory); quantized for unfiltered queries
  above 250,000 vectors, and ``exact=True`` for comparison.

All sides answer query i in turn (in a rotating order) before query i + 1,
so each query finds the caches as the other sides left them; the filtered
queries are then timed again "in a row", each side's one after another.
Times are medians over the queries; ratios are the other side's time /
memstore's (above 1: memstore is faster); recall@10 is against exact
search in float64. Memory is what memstore's index holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memstore

DIM = 384
GROUPS = 100
TOPICS = 2000


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
    matrix = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        chosen = topics[rng.integers(0, TOPICS, end - start)]
        noise = rng.standard_normal((end - start, DIM)).astype(np.float32)
        rows = chosen + 0.9 * noise
        matrix[start:end] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return matrix


def queries(matrix: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    """Texts near stored ones: a stored vector plus a little noise."""
    rng = np.random.default_rng(seed)
    picked = matrix[rng.integers(0, len(matrix), count)]
    noisy = picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def new_texts(count: int, seed: int = 2) -> np.ndarray:
    """New texts on known topics: drawn like the stored ones, not near any one of them."""
    topics = np.random.default_rng(0).standard_normal((TOPICS, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = topics[rng.integers(0, TOPICS, count)] + 0.9 * rng.standard_normal((count, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def far_queries(count: int, seed: int = 3) -> np.ndarray:
    """Queries far from everything stored (random directions): all scores nearly alike."""
    rows = np.random.default_rng(seed).standard_normal((count, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def exact_top(
    matrix: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None
) -> list[int]:
    """The true k nearest by cosine: 200 candidates in float32, ranked in float64."""
    m, n = (matrix, norms) if rows is None else (matrix[rows], norms[rows])
    rough = (m @ q) / n
    picked = np.argpartition(-rough, 200)[:200] if len(rough) > 200 else np.arange(len(rough))
    exact = (m[picked].astype(np.float64) @ q.astype(np.float64)) / n[picked]
    top = picked[np.lexsort((picked, -exact))][:k]
    return [int(i) if rows is None else int(rows[i]) for i in top]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def load_memstore(
    path: Path, matrix: np.ndarray
) -> tuple[memstore.Store, memstore.Collection, float]:
    store = memstore.Store(path)
    memories = store.collection(
        "memories", fields={"group": int}, vectors={"dim": DIM, "model": "synthetic-384"}
    )
    start = time.perf_counter()
    for begin in range(0, len(matrix), 50_000):
        end = min(len(matrix), begin + 50_000)
        memories.put_many(
            [(f"m{i}", {"group": i % GROUPS, "text": f"memory {i}"}) for i in range(begin, end)],
            vectors=matrix[begin:end],
        )
    return store, memories, time.perf_counter() - start


def load_sqlite_vec(path: Path, matrix: np.ndarray) -> tuple[apsw.Connection, float]:
    import sqlite_vec

    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        f"CREATE VIRTUAL TABLE vec_items USING vec0(embedding float[{DIM}] "
        "distance_metric=cosine, grp integer)"
    )
    start = time.perf_counter()
    for begin in range(0, len(matrix), 50_000):
        end = min(len(matrix), begin + 50_000)
        with conn:
            conn.executemany(
                "INSERT INTO vec_items (rowid, embedding, grp) VALUES (?, ?, ?)",
                ((i + 1, matrix[i].tobytes(), i % GROUPS) for i in range(begin, end)),
            )
    return conn, time.perf_counter() - start


def run(n: int, count: int, workdir: Path) -> dict[str, Any]:
    matrix = embeddings(n)
    norms = np.linalg.norm(matrix, axis=1)  # once, as a numpy user would keep them
    group_rows = [np.flatnonzero(np.arange(n) % GROUPS == g) for g in range(GROUPS)]
    groups = [i % GROUPS for i in range(count)]
    sets = {"": queries(matrix, count), "new": new_texts(count), "far": far_queries(count)}
    truth = {name: [exact_top(matrix, norms, q, 10) for q in qs] for name, qs in sets.items()}
    near = sets[""]
    truth["filter"] = [
        exact_top(matrix, norms, q, 10, group_rows[g]) for q, g in zip(near, groups, strict=True)
    ]

    store, memories, load_seconds = load_memstore(workdir / f"memstore-{n}.db", matrix)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    warm, _ = timed(lambda: memories.nearest(near[0], k=10))
    index = store._vector_indexes["memories"]
    try:
        conn, vec_load = load_sqlite_vec(workdir / f"vec-{n}.db", matrix)
    except ImportError:
        conn, vec_load = None, 0.0

    def keys(hits: list[memstore.Neighbor]) -> list[int]:
        return [int(h.key[1:]) for h in hits]

    def numpy_top(q: np.ndarray, rows_: np.ndarray | None = None) -> list[int]:
        m, m_norms = (matrix, norms) if rows_ is None else (matrix[rows_], norms[rows_])
        scores = (m @ q) / m_norms
        top = np.argpartition(-scores, 9)[:10]
        top = top[np.argsort(-scores[top])]
        return [int(t) if rows_ is None else int(rows_[t]) for t in top]

    knn = "SELECT rowid FROM vec_items WHERE embedding MATCH ? AND k = 10"
    # Each side: (name, truth, function of the query's number). All sides answer
    # query i in turn before query i + 1, so a slow moment of the machine falls
    # on all of them alike.
    sides: list[tuple[str, str, Callable[[int], list[int]]]] = [
        ("memstore", "", lambda i: keys(memories.nearest(near[i], k=10))),
        ("memstore exact", "", lambda i: keys(memories.nearest(near[i], k=10, exact=True))),
        ("numpy", "", lambda i: numpy_top(near[i])),
        ("memstore, new texts", "new", lambda i: keys(memories.nearest(sets["new"][i], k=10))),
        ("numpy, new texts", "new", lambda i: numpy_top(sets["new"][i])),
        ("memstore, far queries", "far", lambda i: keys(memories.nearest(sets["far"][i], k=10))),
        ("numpy, far queries", "far", lambda i: numpy_top(sets["far"][i])),
        (
            "memstore 1% filter",
            "filter",
            lambda i: keys(memories.nearest(near[i], k=10, where={"group": groups[i]})),
        ),
        ("numpy 1% filter", "filter", lambda i: numpy_top(near[i], group_rows[groups[i]])),
    ]
    if conn is not None:
        sides += [
            (
                "sqlite-vec",
                "",
                lambda i: [r[0] - 1 for r in conn.execute(knn, (near[i].tobytes(),))],
            ),
            (
                "sqlite-vec 1% filter",
                "filter",
                lambda i: [
                    r[0] - 1
                    for r in conn.execute(knn + " AND grp = ?", (near[i].tobytes(), groups[i]))
                ],
            ),
        ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in sides}
    found: dict[str, list[list[int]]] = {name: [] for name, _, _ in sides}
    for _, _, fn in sides:
        fn(count - 1)  # warm caches and codes
    for i in range(count):
        for name, _, fn in sides[i % len(sides) :] + sides[: i % len(sides)]:
            seconds, result = timed(lambda fn=fn, i=i: fn(i))
            times[name].append(seconds)
            found[name].append(result)

    # The filtered queries again, each side's one after another: what a burst of
    # queries sees, with caches warm from the query before.
    for name, truth_name, fn in list(sides):
        if name in ("memstore 1% filter", "numpy 1% filter"):
            sides.append((f"{name}, in a row", truth_name, fn))
            times[f"{name}, in a row"], found[f"{name}, in a row"] = [], []
            for i in range(count):
                seconds, result = timed(lambda fn=fn, i=i: fn(i))
                times[f"{name}, in a row"].append(seconds)
                found[f"{name}, in a row"].append(result)

    rows: dict[str, Any] = {"n": n, "dim": DIM, "queries": count}
    for name, truth_name, _ in sides:
        expected = truth[truth_name]
        hit = sum(len(set(f) & set(e)) for f, e in zip(found[name], expected, strict=True))
        rows[name] = {"ms": statistics.median(times[name]) * 1000, "recall": hit / (10 * count)}
    if conn is not None:
        rows["sqlite-vec load s"] = vec_load
        conn.close()
    rows["memstore load s"] = load_seconds
    rows["memstore first query s"] = warm
    rows["memstore index MiB"] = index.nbytes / 2**20
    rows["process max RSS MiB"] = (
        max(rss_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    )
    store.close()
    return rows


def report(rows: dict[str, Any]) -> None:
    n = rows["n"]
    print(f"\n{n:,} vectors x {rows['dim']}, {rows['queries']} queries, top 10 by cosine")
    print(f"{'':24} {'median ms':>10} {'recall@10':>10} {'other / memstore':>17}")
    groups = [
        ("memstore", ["memstore exact", "numpy", "sqlite-vec"]),
        ("memstore, new texts", ["numpy, new texts"]),
        ("memstore, far queries", ["numpy, far queries"]),
        ("memstore 1% filter", ["numpy 1% filter", "sqlite-vec 1% filter"]),
        ("memstore 1% filter, in a row", ["numpy 1% filter, in a row"]),
    ]
    for ours, others in groups:
        for name in [ours, *others]:
            if name in rows:
                ratio = rows[name]["ms"] / rows[ours]["ms"]
                print(
                    f"{name:24} {rows[name]['ms']:10.2f} {rows[name]['recall']:10.3f} "
                    f"{ratio:16.1f}x"
                )
    for name in (
        "memstore load s",
        "sqlite-vec load s",
        "memstore first query s",
        "memstore index MiB",
        "process max RSS MiB",
    ):
        if name in rows:
            print(f"{name:24} {rows[name]:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="vectors (repeatable)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n or [100_000, 1_000_000]:
            rows = run(n, args.queries, Path(tmp))
            report(rows)
            results.append(rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
