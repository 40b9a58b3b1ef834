"""Vector memory: nearest against a brute-force reference, filters, hybrid, no orphans, sync."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore
from tests.conftest import _where, run_processes, run_python
from tests.dbinfo import other_tool, sql

DIM = 16


# Here the store fixtures run on a PostgreSQL server with pgvector as well, where the
# database ranks the vectors (tests/test_pgvector.py tests what is its own).
@pytest.fixture(params=["memory", "file", "postgres", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[memstore.Store]:
    with memstore.Store(_where(request, tmp_path)) as opened:
        yield opened


@pytest.fixture(params=["file", "postgres", "pgvector"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _where(request, tmp_path)


def stdlib(path: Path, *statements: str) -> None:
    """Another tool's writes: Python's sqlite3 (SQLite 3.40) in a process of its own.

    Never in this process: two SQLite libraries in one process do not see each
    other's POSIX locks, and closing one's connection can drop the other's.
    """
    ran = run_python(
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "for statement in sys.argv[2:]:\n"
        "    conn.execute(statement)\n"
        "conn.commit()\n",
        str(path),
        *statements,
    )
    assert ran.returncode == 0, ran.stderr


def brute_force(matrix: np.ndarray, q: np.ndarray, metric: str, k: int) -> list[tuple[int, float]]:
    """The reference: every score computed in float64 (higher is nearer, for l2 the
    distance negated, as Neighbor.score), sorted with ties by position."""
    m, v = matrix.astype(np.float64), q.astype(np.float64)
    if metric == "dot":
        scores = m @ v
    elif metric == "cosine":
        norms = np.linalg.norm(m, axis=1) * np.linalg.norm(v)
        scores = np.divide(m @ v, norms, out=np.zeros(len(m)), where=norms > 0)  # 0 for 0
    else:
        scores = -np.linalg.norm(m - v, axis=1)
    order = sorted(range(len(m)), key=lambda i: (-scores[i], i))[:k]
    return [(i, scores[i]) for i in order]


@pytest.fixture
def memories(store: memstore.Store) -> memstore.Collection:
    return store.collection(
        "memories",
        fields={"importance": float, "kind": str},
        fts=["text"],
        vectors={"dim": DIM, "model": "test-model"},
    )


def fill(memories: memstore.Collection, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, DIM)).astype(np.float32)
    memories.put_many(
        [
            (f"m{i:05d}", {"text": f"memory {i}", "importance": i / n, "kind": "ab"[i % 2]})
            for i in range(n)
        ],
        vectors=matrix,
    )
    return matrix


@pytest.mark.parametrize("metric", memstore.VECTOR_METRICS)
def test_nearest_matches_brute_force(memories: memstore.Collection, metric: str) -> None:
    matrix = fill(memories, 500)
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        hits = memories.nearest(q, k=10, metric=metric)
        expected = brute_force(matrix, q, metric, 10)
        assert [h.key for h in hits] == [f"m{i:05d}" for i, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected], rel=1e-4)
        assert hits[0].record == {
            "text": f"memory {expected[0][0]}",
            "importance": expected[0][0] / 500,
            "kind": "ab"[expected[0][0] % 2],
        }


def test_filters_apply_before_ranking(memories: memstore.Collection) -> None:
    matrix = fill(memories, 1000)
    q = matrix[3] + 0.01
    # Only 12 records match: all 12 come back, ranked among themselves.
    where = {"importance": {"$gte": 0.988}}
    hits = memories.nearest(q, k=50, where=where)
    assert len(hits) == 12
    chosen = [i for i in range(1000) if i / 1000 >= 0.988]
    expected = brute_force(matrix[chosen], q, "cosine", 50)
    assert [h.key for h in hits] == [f"m{chosen[i]:05d}" for i, _ in expected]
    # k hits whenever k records match, however far they are from the query.
    assert len(memories.nearest(q, k=10, where={"kind": "b"})) == 10
    assert all(h.record["kind"] == "b" for h in memories.nearest(q, k=10, where={"kind": "b"}))
    assert memories.nearest(q, k=10, where={"kind": "zzz"}) == []
    assert memories.nearest(q, k=0) == []


def test_expired_and_deleted_records_never_come_back(memories: memstore.Collection) -> None:
    memories.put("old", {"text": "x"}, vector=[1.0] * DIM, ttl=0.001)
    memories.put("live", {"text": "y"}, vector=[0.5] * DIM)

    time.sleep(0.01)
    assert [h.key for h in memories.nearest([1.0] * DIM)] == ["live"]
    assert [h.key for h in memories.nearest([1.0] * DIM, where={"text": "x"})] == []
    memories.delete("live")
    assert memories.nearest([1.0] * DIM) == []


def test_bad_vectors_are_refused_and_nothing_changes(memories: memstore.Collection) -> None:
    memories.put("a", {"text": "keep"}, vector=[1.0] * DIM)
    bad: list[Any] = [
        [1.0] * (DIM - 1),
        [[1.0] * DIM],
        [float("nan")] * DIM,
        [1e39] * DIM,  # infinite in float32
        ["x"] * DIM,
        "not a vector",
        {"": "bad part"},
        {1: [1.0] * DIM},
    ]
    for vector in bad:
        with pytest.raises(memstore.ValidationError):
            memories.put("a", {"text": "changed"}, vector=vector)
        with pytest.raises(memstore.ValidationError):
            memories.put_many([("b", {"text": "new"})], vectors=[vector])
    assert memories.get("a") == {"text": "keep"}
    assert "b" not in memories
    assert memories.vector("a").tolist() == [1.0] * DIM
    with pytest.raises(memstore.ValidationError, match="fewer vectors"):
        memories.put_many([("b", {}), ("c", {})], vectors=[[0.0] * DIM])
    with pytest.raises(memstore.ValidationError, match="more vectors"):
        memories.put_many([("b", {})], vectors=[[0.0] * DIM] * 2)
    assert "b" not in memories
    for query in ([1.0] * 3, [float("inf")] * DIM, None):
        with pytest.raises(memstore.ValidationError):
            memories.nearest(query)
    with pytest.raises(memstore.QueryError, match="never mix models"):
        memories.nearest([1.0] * DIM, model="other-model")
    with pytest.raises(memstore.QueryError, match="metric"):
        memories.nearest([1.0] * DIM, metric="manhattan")
    with pytest.raises(memstore.QueryError, match="embed"):
        memories.nearest("a text without embed=")
    with pytest.raises(memstore.ValidationError, match="k must"):
        memories.nearest([1.0] * DIM, k=-1)


def test_declarations(store: memstore.Store) -> None:
    store.collection("m", vectors={"dim": 4, "model": "a", "metric": "dot"})
    again = store.collection("m", vectors={"dim": 4, "model": "a"})
    assert again.vectors == {"dim": 4, "model": "a", "metric": "dot", "fields": []}
    assert store.collection("m").vectors == again.vectors
    with pytest.raises(memstore.SchemaError, match="re_embed"):
        store.collection("m", vectors={"dim": 8, "model": "a"})
    with pytest.raises(memstore.SchemaError, match="re_embed"):
        store.collection("m", vectors={"dim": 4, "model": "b"})
    for spec in (
        {"dim": 0, "model": "a"},
        {"dim": True, "model": "a"},
        {"dim": 4},
        {"dim": 4, "model": ""},
        {"dim": 4, "model": "a", "metric": "hamming"},
        {"dim": 4, "model": "a", "colour": 1},
        {"dim": 4, "model": "a", "embed": 3},
        [4, "a"],
    ):
        with pytest.raises((memstore.ValidationError, memstore.QueryError)):
            store.collection("n", vectors=spec)  # type: ignore[arg-type]
    assert "n" not in store
    plain = store.collection("plain")
    with pytest.raises(memstore.QueryError, match="no vectors"):
        plain.put("a", {}, vector=[1.0])
    with pytest.raises(memstore.QueryError, match="no vectors"):
        plain.nearest([1.0])


def test_no_orphan_ever(file_store: memstore.Store, db_path: Path) -> None:
    memories = file_store.collection(
        "memories", fts=["text"], ttl=timedelta(days=1), vectors={"dim": DIM, "model": "m"}
    )
    fill(memories, 300)
    memories.put("short", {"text": "x"}, vector=[1.0] * DIM, ttl=0.001)

    def vectors() -> int:
        return int(file_store._fetch("SELECT count(*) FROM memstore_vectors")[0][0])

    def orphans() -> int:
        return int(
            file_store._fetch(
                "SELECT count(*) FROM memstore_vectors AS v WHERE NOT EXISTS "
                "(SELECT 1 FROM memories AS t WHERE t.id = v.record_id)"
            )[0][0]
        )

    assert vectors() == 301
    memories.delete("m00000")
    memories.delete_where({"importance": {"$lt": 0.1}})

    time.sleep(0.01)
    memories.cleanup()  # the expired one
    assert (vectors(), orphans()) == (len(memories), 0)
    # Another tool's deletes take the vectors too.
    stdlib(db_path, "DELETE FROM memories WHERE key LIKE 'm001%'")
    assert (vectors(), orphans()) == (len(memories), 0)
    assert not any(h.key.startswith("m001") for h in memories.nearest([1.0] * DIM, k=300))
    time.sleep(0.01)
    memories.cleanup(older_than=0.001)
    assert (vectors(), orphans()) == (0, 0)
    fill(memories, 10)
    file_store.drop_collection("memories")
    assert vectors() == 0
    assert file_store._fetch("SELECT count(*) FROM memstore_vector_log")[0][0] == 0
    assert file_store.check() == []


def test_check_and_repair_mend_orphans(file_store: memstore.Store, db_path: Path) -> None:
    memories = file_store.collection("memories", vectors={"dim": DIM, "model": "m"})
    fill(memories, 20)
    stdlib(
        db_path,
        'DROP TRIGGER "memories__vectors_delete"',
        "DELETE FROM memories WHERE key IN ('m00001', 'm00002')",
        "INSERT INTO memstore_vectors (collection, record_id, model, dim, vector) "
        "VALUES ('memories', 1, 'stale-model', 1, x'00000000')",
    )
    problems = file_store.check()
    assert "memories: missing trigger memories__vectors_delete" in problems
    assert "memories: 2 vectors of records that are gone" in problems
    assert any("'stale-model'" in p for p in problems)
    done = file_store.repair()
    assert any("vectors" in line for line in done)
    assert file_store.check() == []
    assert len(memories.nearest([1.0] * DIM, k=100)) == 18


def test_stdlib_written_vectors_are_found(file_store: memstore.Store, db_path: Path) -> None:
    memories = file_store.collection("memories", vectors={"dim": 2, "model": "m"})
    memories.put("a", {}, vector=[1.0, 0.0])
    assert [h.key for h in memories.nearest([0.0, 1.0])] == ["a"]
    stdlib(
        db_path,
        "INSERT INTO memories (key, body) VALUES ('b', '{}')",
        "INSERT INTO memstore_vectors (collection, record_id, model, dim, vector) "
        f"SELECT 'memories', id, 'm', 2, x'{np.array([0.0, 1.0], '<f4').tobytes().hex()}' "
        "FROM memories WHERE key = 'b'",
    )
    assert [h.key for h in memories.nearest([0.0, 1.0])] == ["b", "a"]


def test_another_process_write_is_seen_by_the_next_query(store_url: str) -> None:
    with memstore.Store(store_url) as store:
        memories = store.collection("memories", vectors={"dim": 2, "model": "m"})
        memories.put("a", {}, vector=[1.0, 0.0])
        memories.put("b", {}, vector=[0.9, 0.1])
        assert [h.key for h in memories.nearest([0.0, 1.0])] == ["b", "a"]
        index = store._vector_indexes.get("memories")  # none where pgvector ranks
        assert (index is None) == store._engine.pgvector
        ran = run_python(
            "import sys, memstore\n"
            "with memstore.Store(sys.argv[1]) as s:\n"
            "    m = s.collection('memories')\n"
            "    m.put('c', {}, vector=[0.0, 1.0])\n"
            "    m.put('b', {}, vector=[-1.0, 0.0])\n"
            "    m.delete('a')\n",
            store_url,
        )
        assert ran.returncode == 0, ran.stderr
        assert [h.key for h in memories.nearest([0.0, 1.0])] == ["c", "b"]
        if index is not None:
            assert store._vector_indexes["memories"] is index  # followed, not rebuilt
            assert index.seq > 0 and len(index.slot) == 2


# Writers on connections of their own, each thread putting, replacing and deleting
# records with vectors while the test's reader follows the log.
VECTOR_WRITER = """
import sys, memstore

def work(t):
    writer = f"{sys.argv[2]}-{t}"
    with memstore.Store(sys.argv[1], timeout=60) as store:
        memories = store.collection("memories")
        for i in range(40):
            memories.put(f"{writer}-{i}", {"i": i}, vector=[float(i), 1.0, float(t)])
            if i % 4 == 3:
                memories.put(f"{writer}-{i - 1}", {"i": -1}, vector=[-1.0, float(i), 0.0])
            if i % 8 == 7:
                memories.delete(f"{writer}-{i - 3}")
"""


def test_a_reader_following_concurrent_writers_misses_no_change(store_url: str) -> None:
    """The change log is in commit order on every engine: a reader that syncs while 4
    processes of 4 threads write ends with the vectors a fresh load finds."""
    with memstore.Store(store_url) as store:
        memories = store.collection("memories", vectors={"dim": 3, "model": "m"})
        memories.put("seed", {}, vector=[1.0, 0.0, 0.0])
        writers = threading.Thread(target=run_processes, args=(VECTOR_WRITER, store_url, 4))
        writers.start()
        while writers.is_alive():
            memories.nearest([1.0, 1.0, 0.0], k=5)  # follows the log as it grows
        writers.join()
        followed = memories.nearest([1.0, 1.0, 0.0], k=10_000)
        index = store._vector_indexes.get("memories")  # none where pgvector ranks
        with memstore.Store(store_url) as fresh:
            loaded = fresh["memories"].nearest([1.0, 1.0, 0.0], k=10_000)
        assert len(loaded) == 1 + 16 * (40 - 5)
        assert store._vector_indexes.get("memories") is index
        # (Records of equal score may come in either order.)
        assert sorted((h.key, h.score) for h in followed) == sorted(
            (h.key, h.score) for h in loaded
        )
        assert store.check() == []


def test_rolled_back_vectors_leave_the_index(store: memstore.Store) -> None:
    memories = store.collection("memories", vectors={"dim": 2, "model": "m"})
    memories.put("a", {}, vector=[1.0, 0.0])
    with pytest.raises(RuntimeError), store.transaction():
        memories.put("b", {}, vector=[0.0, 1.0])
        memories.put("a", {}, vector=[-1.0, 0.0])
        assert [h.key for h in memories.nearest([0.0, 1.0])] == ["b", "a"]
        raise RuntimeError
    assert [(h.key, round(h.score, 3)) for h in memories.nearest([1.0, 0.0])] == [("a", 1.0)]
    memories.put("c", {}, vector=[0.0, 1.0])
    assert [h.key for h in memories.nearest([0.0, 1.0])] == ["c", "a"]


def test_parts_score_their_best_part(store: memstore.Store) -> None:
    memories = store.collection("docs", vectors={"dim": 2, "model": "m"})
    memories.put("a", {}, vector={"title": [1.0, 0.0], "body": [0.0, 1.0]})
    memories.put("b", {}, vector=[0.7, 0.7])
    assert [h.key for h in memories.nearest([0.0, 1.0], k=1)] == ["a"]
    assert [h.key for h in memories.nearest([1.0, 1.0], k=2)] == ["b", "a"]
    assert set(memories.vector("a")) == {"title", "body"}
    memories.put("a", {}, vector=[-1.0, 0.0])  # parts replaced as a whole
    assert memories.vector("a").tolist() == [-1.0, 0.0]
    assert [h.key for h in memories.nearest([0.0, 1.0])] == ["b", "a"]
    memories.put("a", {}, vector={})  # no vectors now
    memories.put_many([("b", {"kept": True})], vectors=[None])  # b keeps its vector
    assert memories.vector("a") is None and memories.vector("b") is not None
    assert [h.key for h in memories.nearest([0.0, 1.0])] == ["b"]


# The core of the statement memstore's approximate search on pgvector runs for
# collection "big" (its ORDER BY and the conditions that select the partial index),
# for EXPLAIN.
HNSW_QUERY = (
    "SELECT v.record_id FROM memstore_vectors AS v WHERE v.collection = 'big' "
    "AND v.model = 'm' AND v.dim = 64 ORDER BY v.embedding::vector(64) <=> ?::vector(64) LIMIT 36"
)


def test_quantized_scan_finds_the_exact_neighbours(
    store: memstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memstore, "QUANTIZE_ABOVE", 1000)
    monkeypatch.setattr(memstore, "VECTOR_CANDIDATES", 200)
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((40, 64)).astype(np.float32)
    matrix = (centers[rng.integers(0, 40, 5000)] + 0.3 * rng.standard_normal((5000, 64))).astype(
        np.float32
    )
    # Where pgvector ranks, the approximation is its HNSW index's.
    pgvector = store._engine.pgvector
    memories = store.collection("big", vectors={"dim": 64, "model": "m", "hnsw": pgvector})
    memories.put_many([(f"k{i}", {}) for i in range(5000)], vectors=matrix)
    found = total = 0
    for i in range(20):
        q = matrix[i * 50] + 0.1 * rng.standard_normal(64).astype(np.float32)
        exact = memories.nearest(q, k=10, exact=True)
        assert [h.key for h in exact] == [f"k{j}" for j, _ in brute_force(matrix, q, "cosine", 10)]
        approximate = memories.nearest(q, k=10)
        found += len({h.key for h in approximate} & {h.key for h in exact})
        total += 10
    if pgvector:
        plan = sql(store, "EXPLAIN " + HNSW_QUERY, ("[" + ",".join(["1"] * 64) + "]",))
        assert "memstore_hnsw_" in str(plan)  # the query the approximation asks is indexed
    else:
        assert store._vector_indexes["big"].codes is not None  # the quantized path ran
    assert found / total >= 0.95
    # A query far from everything (a random direction): the codes barely tell near
    # from far, the search sees it and compares every vector. (HNSW has no such check:
    # its recall there is what its graph gives, measured in BENCHMARKS.md.)
    found = 0
    for _ in range(10):
        q = rng.standard_normal(64).astype(np.float32)
        want = [f"k{j}" for j, _ in brute_force(matrix, q, "cosine", 10)]
        got = [h.key for h in memories.nearest(q, k=10)]
        assert pgvector or got == want
        found += len(set(got) & set(want))
    assert found / 100 >= (0.6 if pgvector else 1.0)  # HNSW: 0.82 to 0.89 in 4 runs


def hard_vectors(rng: np.random.Generator, q: np.ndarray, n: int) -> np.ndarray:
    """Vectors that make an 8-bit screen work: magnitudes from 1e-3 to 1e3, near-ties
    and exact ties with the query, a zero vector, and spikes that quantize coarsely."""
    dim = len(q)
    matrix = rng.standard_normal((n, dim)) * 10.0 ** rng.uniform(-3, 3, (n, 1))
    matrix[: n // 10] = q + 1e-6 * rng.standard_normal((n // 10, dim))  # near-ties
    matrix[n // 10 : n // 10 + 20] = q  # exact ties: by insertion order
    matrix[n // 10 + 20] = 0.0
    spikes = slice(n // 10 + 21, n // 5)
    matrix[spikes] = 1e-3 * rng.standard_normal((n // 5 - n // 10 - 21, dim)) + q
    matrix[spikes, 0] = 1e3
    return matrix.astype(np.float32)


@pytest.mark.parametrize("metric", memstore.VECTOR_METRICS)
def test_screened_filtered_queries_stay_exact(
    file_store: memstore.Store, monkeypatch: pytest.MonkeyPatch, metric: str
) -> None:
    """Over SCREEN_ABOVE matches, an 8-bit copy rules vectors out first: the answer
    must be what comparing every vector gives, through writes and sparse record ids."""
    rng = np.random.default_rng(11)
    q = rng.standard_normal(DIM).astype(np.float32)
    n = 6000
    matrix = hard_vectors(rng, q, n)
    memories = file_store.collection(
        "memories", fields={"kind": str}, vectors={"dim": DIM, "model": "m", "metric": metric}
    )
    memories.put_many(
        [(f"m{i:05d}", {"kind": "ab"[i % 2]}) for i in range(n)], vectors=matrix[rng.permutation(n)]
    )
    current = {f"m{i:05d}": v for i, v in enumerate(memories.vector(f"m{i:05d}") for i in range(n))}

    def check(k: int) -> None:
        for where in ({"kind": "a"}, None):
            keys = sorted(k for k in current if not where or memories.get(k)["kind"] == "a")
            matrix = np.array([current[key] for key in keys])
            for query in [q, q + 1e-4, rng.standard_normal(DIM).astype(np.float32), -q]:
                hits = memories.nearest(query, k=k, where=where)
                with monkeypatch.context() as unscreened:
                    unscreened.setattr(memstore, "SCREEN_ABOVE", 10**9)
                    plain = memories.nearest(query, k=k, where=where)
                assert hits == plain  # keys, order and scores, to the last bit
                want = brute_force(matrix, query, metric, k)
                assert [h.score for h in hits] == pytest.approx([s for _, s in want], rel=1e-9)
                # The reference's order, but for ties within its own rounding.
                assert {h.key for h in hits} == {keys[i] for i, _ in want} or all(
                    h.score == pytest.approx(score, rel=1e-12)
                    for h, (_, score) in zip(hits, want, strict=True)
                )

    check(10)
    check(200)
    memories.put("gone", {"kind": "a"}, vector=q, ttl=0.001)  # expired: never found
    time.sleep(0.01)
    check(10)
    index = file_store._vector_indexes["memories"]
    assert index.small is not None and index.position is not None  # the screen ran
    # Writes: deletes, new near neighbours, changed vectors; the copy follows them.
    for i in range(0, 300, 3):
        memories.delete(f"m{i:05d}")
        current.pop(f"m{i:05d}")
    fresh = hard_vectors(rng, q, 400)
    memories.put_many([(f"n{i}", {"kind": "a"}) for i in range(400)], vectors=fresh)
    current.update({f"n{i}": fresh[i] for i in range(400)})
    for i in range(300, 400):
        vector = rng.standard_normal(DIM).astype(np.float32) * 50
        memories.put(f"m{i:05d}", {"kind": "a"}, vector=vector)
        current[f"m{i:05d}"] = vector
    check(10)
    # A record another tool gave a far-off id: slots are found without a direct map.
    other = apsw.Connection(str(file_store.path))
    with other:
        other.execute(
            "INSERT INTO memories (id, key, body) VALUES (10000000000, 'far', '{\"kind\": \"a\"}')"
        )
        other.execute(
            "INSERT INTO memstore_vectors (collection, record_id, model, dim, vector) "
            "VALUES ('memories', 10000000000, 'm', ?, ?)",
            (DIM, q.astype("<f4").tobytes()),
        )
    other.close()
    current["far"] = q
    check(10)
    assert index.position is None


def test_hybrid_fuses_text_and_vectors(store: memstore.Store) -> None:
    memories = store.collection(
        "memories", fields={"importance": float}, fts=["text"], vectors={"dim": 3, "model": "m"}
    )
    memories.put(
        "both", {"text": "persistence of agent state", "importance": 0.5}, vector=[0.9, 0.1, 0.0]
    )
    memories.put(
        "text-only", {"text": "state persistence notes", "importance": 0.5}, vector=[-1.0, 0.0, 0.0]
    )
    memories.put(
        "vector-only", {"text": "unrelated words", "importance": 0.5}, vector=[1.0, 0.0, 0.0]
    )
    memories.put("neither", {"text": "lunch menu", "importance": 0.5}, vector=[0.0, 1.0, 0.0])
    hits = memories.hybrid("how does persistence handle state?", vector=[1.0, 0.0, 0.0], k=4)
    assert [h.key for h in hits][:1] == ["both"]  # ranked well by both searches
    top = hits[0].scores
    assert top["text_rank"] is not None and top["vector_rank"] is not None
    assert top["rrf"] == pytest.approx(1 / (60 + top["text_rank"]) + 1 / (60 + top["vector_rank"]))
    assert hits[0].score == top["score"] == top["rrf"]
    by_key = {h.key: h.scores for h in hits}
    assert by_key["neither"]["text_rank"] is None
    # Importance re-weighs: the best record made unimportant falls to the bottom.
    memories.put(
        "both", {"text": "persistence of agent state", "importance": 0.0}, vector=[0.9, 0.1, 0.0]
    )
    weighed = memories.hybrid("persistence state", vector=[1.0, 0.0, 0.0], importance="importance")
    assert weighed[-1].key == "both" and weighed[-1].scores["importance"] == 0.0
    # Recency halves a score per half-life of age.
    store._fetch(
        "UPDATE memories SET updated_at = '2000-01-01T00:00:00.000000Z' WHERE key = 'both'"
    )
    aged = memories.hybrid("persistence state", vector=[1.0, 0.0, 0.0], recency=timedelta(days=7))
    assert aged[-1].key == "both" and aged[-1].scores["recency"] < 1e-6
    assert memories.hybrid("?!", vector=[1.0, 0.0, 0.0], k=1)[0].key == "vector-only"
    with pytest.raises(memstore.QueryError):
        memories.hybrid("", vector=[1.0, 0.0, 0.0])
    with pytest.raises(memstore.QueryError, match="embed"):
        memories.hybrid("persistence")
    no_fts = store.collection("plain", vectors={"dim": 3, "model": "m"})
    with pytest.raises(memstore.QueryError, match="full-text"):
        no_fts.hybrid("x", vector=[1.0, 0.0, 0.0])


def letters(texts: list[str]) -> list[list[float]]:
    """A toy embedding: how often each of a, b, c, d occurs."""
    return [[float(t.count(c)) + 0.01 for c in "abcd"] for t in texts]


def test_embed_and_re_embed(store: memstore.Store) -> None:
    calls: list[int] = []

    def counted(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return letters(texts)

    memories = store.collection(
        "memories", fts=["text"], vectors={"dim": 4, "model": "letters", "embed": counted}
    )
    memories.put("a", {"text": "aaaa"})
    memories.put_many([(k, {"text": k * 4}) for k in "bcd"] + [("empty", {"text": ""})])
    assert calls == [1, 3]  # a batch at a time, and nothing to embed for an empty text
    assert [h.key for h in memories.nearest("ccc", k=1)] == ["c"]
    assert memories.hybrid("dddd", k=1)[0].key == "d"
    # A handle without embed still reads; a text query needs embed.
    plain = store.collection("memories")
    assert plain.nearest([0.0, 1.0, 0.0, 0.0], k=1)[0].key == "b"

    def reversed_letters(texts: list[str]) -> list[list[float]]:
        return [[*reversed(v), 0.0] for v in letters(texts)]

    seen: list[tuple[int, int]] = []
    done = memories.re_embed(
        reversed_letters,
        model="reversed",
        dim=5,
        batch_size=2,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert done == 4 and seen[-1] == (4, 5)
    assert memories.vectors["model"] == "reversed" and memories.vectors["dim"] == 5
    assert store.collection("memories").vectors["model"] == "reversed"
    assert memories.nearest([0.0, 1.0, 0.0, 0.0, 0.0], k=1)[0].key == "c"
    assert store._fetch("SELECT DISTINCT model FROM memstore_vectors")[0][0] == "reversed"
    with pytest.raises(memstore.ValidationError):  # the old model's dimension
        memories.nearest([0.0, 1.0, 0.0, 0.0])
    assert store.check() == []


def test_queries_never_mix_models_during_re_embed(store: memstore.Store) -> None:
    memories = store.collection("m", fts=["text"], vectors={"dim": 4, "model": "old"})
    memories.put_many([(k, {"text": k}) for k in "abcd"], vectors=letters(list("abcd")))

    def failing(texts: list[str]) -> list[list[float]]:
        if "c" in texts:
            raise RuntimeError("model server down")
        return [[1.0, 1.0, 1.0, 1.0]] * len(texts)

    with pytest.raises(RuntimeError):
        memories.re_embed(failing, model="new", batch_size=2)
    # Half done: queries still use the old model only, and check() says so.
    assert memories.vectors["model"] == "old"
    assert memories.nearest([1.0, 0.0, 0.0, 0.0], k=1)[0].key == "a"
    assert any("'new'" in p for p in store.check())
    store.repair()
    assert store.check() == []


def test_without_numpy_vector_calls_say_what_to_install(db_path: Path) -> None:
    ran = run_python(
        "import sys\n"
        "sys.modules['numpy'] = None\n"
        "import memstore\n"
        "with memstore.Store(sys.argv[1]) as s:\n"
        "    m = s.collection('m', vectors={'dim': 2, 'model': 'x'})\n"
        "    m.put('a', {'t': 1})\n"
        "    try:\n"
        "        m.nearest([1.0, 0.0])\n"
        "    except memstore.DependencyError as err:\n"
        "        print(err)\n",
        str(db_path),
    )
    assert ran.returncode == 0, ran.stderr
    assert "pip install 'agent-memstore[vectors]'" in ran.stdout


async def test_async_store_covers_vectors(tmp_path: Path) -> None:
    async with memstore.AsyncStore(tmp_path / "a.db") as store:
        memories = await store.collection("m", vectors={"dim": 2, "model": "x"})
        await memories.put("a", {}, vector=[1.0, 0.0])
        await memories.put("b", {}, vector=[0.0, 1.0])
        hits = await memories.nearest([0.1, 1.0], k=1)
        assert [h.key for h in hits] == ["b"]


def test_stats_report_vectors(store: memstore.Store) -> None:
    memories = store.collection("m", vectors={"dim": 4, "model": "x"})
    memories.put_many(
        [(f"k{i}", {}) for i in range(10)],
        vectors=np.eye(4, dtype=np.float32)[[i % 4 for i in range(10)]],
    )
    memories.nearest([1.0, 0.0, 0.0, 0.0])
    stats = memories.stats()["vectors"]
    assert stats["count"] == 10 and stats["model"] == "x" and stats["dim"] == 4
    if store._engine.pgvector:  # the database ranks them: none in memory
        assert stats["ranked_by"] == "pgvector" and stats["memory_bytes"] == 0
    else:
        assert stats["ranked_by"] == "memstore" and stats["memory_bytes"] >= 10 * 4 * 4
    assert json.loads(json.dumps(stats)) == stats


def test_export_and_import_keep_vectors(file_store: memstore.Store, tmp_path: Path) -> None:
    memories = file_store.collection(
        "memories", fts=["text"], vectors={"dim": 3, "model": "m", "metric": "dot"}
    )
    memories.put("a", {"text": "one"}, vector=[0.1, 0.2, 0.3])
    memories.put("b", {"text": "two"}, vector={"title": [1.0, 0.0, 0.0], "body": [0.0, 1e-7, 1.0]})
    memories.put("c", {"text": "no vector"})
    file_store.export(tmp_path / "out")
    with memstore.Store(tmp_path / "copy.db") as copy:
        report = copy.import_(tmp_path / "out")
        assert report["collections"] == {"memories": 3}
        again = copy.collection("memories")
        assert again.vectors == memories.vectors
        assert again.vector("a").tolist() == memories.vector("a").tolist()
        assert {p: v.tolist() for p, v in again.vector("b").items()} == {
            p: v.tolist() for p, v in memories.vector("b").items()
        }
        assert again.vector("c") is None
        q = [0.3, 0.2, 0.1]
        assert again.nearest(q) == memories.nearest(q)
        copy.import_(tmp_path / "out")  # twice: nothing changes
        assert copy.check() == [] and again.stats()["vectors"]["count"] == 3


def test_vectors_of_a_table_another_tool_dropped(file_store: memstore.Store, db_path: Path) -> None:
    file_store.collection("memories", vectors={"dim": 2, "model": "m"}).put(
        "a", {}, vector=[1.0, 0.0]
    )
    stdlib(
        db_path, "DROP TABLE memories", "DELETE FROM _memstore_collections WHERE name = 'memories'"
    )
    assert file_store.check() == ["1 vectors of 'memories', which is not a collection with vectors"]
    assert file_store.repair() == ["deleted the vectors of 'memories', which is not a collection"]
    assert file_store.check() == []


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7), st.integers(0, 3)),
        st.tuples(st.just("put bare"), st.integers(0, 7), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 7), st.integers(0, 3)),
        st.tuples(st.just("delete_where"), st.integers(0, 7), st.integers(0, 3)),
        st.tuples(st.just("rollback"), st.integers(0, 7), st.integers(0, 3)),
        st.tuples(st.just("other process"), st.integers(0, 7), st.integers(0, 3)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_any_sequence_of_writes_leaves_no_orphan_and_exact_answers(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    path = tmp_path_factory.mktemp("ops") / "agent.db"
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.5]]
    with memstore.Store(path) as store:
        memories = store.collection("m", fields={"n": int}, vectors={"dim": 2, "model": "x"})
        expected: dict[str, list[float]] = {}
        for op, n, v in ops:
            key = f"k{n}"
            memories.nearest([1.0, 1.0], k=8)  # the index follows each step
            if op == "put":
                memories.put(key, {"n": n}, vector=vectors[v])
                expected[key] = vectors[v]
            elif op == "put bare":  # keeps the vector it had
                memories.put(key, {"n": n, "bare": True})
            elif op == "delete":
                memories.delete(key)
                expected.pop(key, None)
            elif op == "delete_where":
                memories.delete_where({"n": {"$gte": n}})
                expected = {k: e for k, e in expected.items() if int(k[1:]) < n}
            elif op == "rollback":
                with contextlib.suppress(RuntimeError), store.transaction():
                    memories.put(key, {"n": n}, vector=vectors[v])
                    memories.delete("k0")
                    memories.nearest([1.0, 0.0], k=8)
                    raise RuntimeError
            else:
                other = apsw.Connection(str(path))  # another connection, as another tool's
                other.execute("DELETE FROM m WHERE key = ?", (key,))
                other.close()
                expected.pop(key, None)
        (orphans,) = store._fetch(
            "SELECT count(*) FROM memstore_vectors AS v WHERE NOT EXISTS "
            "(SELECT 1 FROM m WHERE m.id = v.record_id)"
        )[0]
        assert orphans == 0
        q = np.array([0.3, 0.9], np.float32)
        hits = memories.nearest(q, k=8)
        keys = sorted(expected)
        matrix = np.array([expected[k] for k in keys], np.float32).reshape(-1, 2)
        want = brute_force(matrix, q, "cosine", 8) if keys else []
        assert sorted(h.score for h in hits) == pytest.approx(sorted(s for _, s in want))
        assert {h.key for h in hits} == set(keys)


def test_neighbor_scores_are_higher_for_nearer_records_whatever_the_metric(
    memories: memstore.Collection,
) -> None:
    near, far = np.zeros(DIM, np.float32), np.zeros(DIM, np.float32)
    near[0], far[0], far[1] = 1.0, 1.0, 3.0
    memories.put("near", {"text": "near"}, vector=near)
    memories.put("far", {"text": "far"}, vector=far)
    q = np.zeros(DIM, np.float32)
    q[0] = 1.0
    for metric in memstore.VECTOR_METRICS:
        hits = memories.nearest(q, k=2, metric=metric)
        if metric == "dot":  # both score 1 by dot product: a tie, in insertion order
            assert [h.score for h in hits] == [1.0, 1.0]
            continue
        assert [h.key for h in hits] == ["near", "far"], metric
        assert hits[0].score > hits[1].score, metric
    l2 = memories.nearest(q, k=2, metric="l2")
    assert [h.distance for h in l2] == pytest.approx([0.0, 3.0])
    assert [h.score for h in l2] == pytest.approx([0.0, -3.0])
    assert all(h.similarity is None for h in l2)
    cosine = memories.nearest(q, k=2, metric="cosine")
    assert all(h.distance is None and h.similarity == h.score for h in cosine)


@pytest.mark.parametrize("metric", memstore.VECTOR_METRICS)
@pytest.mark.parametrize("scale", [1e-25, 1e-3, 1e20, 1e30, 3e38])
def test_huge_and_tiny_vectors_lose_no_hit(
    memories: memstore.Collection, metric: str, scale: float
) -> None:
    """float32 sums of such vectors' products overflow or underflow; every hit still
    comes back, in the order float64 gives."""
    rng = np.random.default_rng(7)
    matrix = (rng.standard_normal((40, DIM)) * rng.uniform(0.5, 1.5, (40, 1))).astype(np.float32)
    memories.put_many([(f"m{i:05d}", {}) for i in range(40)], vectors=matrix)
    for q in [
        (rng.uniform(-1, 1, DIM) * scale).astype(np.float32),
        np.full(DIM, np.float32(scale)),
    ]:
        hits = memories.nearest(q, k=10, metric=metric)
        want = brute_force(matrix, q, metric, 10)
        assert len(hits) == 10
        assert [h.score for h in hits] == pytest.approx([s for _, s in want], rel=1e-6)
    # Stored vectors that large: queries of ordinary size still find all of them.
    big = (matrix / np.abs(matrix).max() * scale).astype(np.float32)
    memories.put_many([(f"m{i:05d}", {}) for i in range(40)], vectors=big)
    hits = memories.nearest(rng.standard_normal(DIM).astype(np.float32), k=40, metric=metric)
    assert len(hits) == 40


def test_the_examples_of_the_report_come_back_whole(store: memstore.Store) -> None:
    c = store.collection("c", vectors={"dim": 4, "model": "m"})
    for i in range(3):
        c.put(f"k{i}", {}, vector=[float(i + 1), 0.5, 0.0, 1.0])
    assert len(c.nearest([1e20, 0, 0, 0], k=2, metric="l2")) == 2
    best = c.nearest([3e38] * 4, k=3, metric="dot")
    assert [h.key for h in best] == ["k2", "k1", "k0"]


def test_another_tools_deletes_take_the_vectors_and_strays_are_repaired(store_url: str) -> None:
    """A record another tool deletes takes its vectors (the collection's trigger, on every
    engine); vectors of no collection are found by check and deleted by repair."""
    with memstore.Store(store_url) as store:
        memories = store.collection("memories", vectors={"dim": 2, "model": "m"})
        memories.put("a", {}, vector=[1.0, 0.0])
        memories.put("b", {}, vector=[0.0, 1.0])
        assert len(memories.nearest([1.0, 0.0])) == 2
        other_tool(store_url, 'DELETE FROM "memories" WHERE key = ?', ["a"])
        assert [h.key for h in memories.nearest([1.0, 0.0])] == ["b"]
        assert sql(store, "SELECT count(*) FROM memstore_vectors") == [(1,)]
        blob = np.array([1.0, 1.0], "<f4").tobytes()
        other_tool(
            store_url,
            "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, vector) "
            "VALUES ('nothing', 1, 'm', '', 2, ?)",
            [blob],
        )
        assert store.check() == ["1 vectors of 'nothing', which is not a collection with vectors"]
        assert store.repair() == ["deleted the vectors of 'nothing', which is not a collection"]
        assert store.check() == [] and [h.key for h in memories.nearest([1.0, 0.0])] == ["b"]
