"""pgvector: where a PostgreSQL database has the extension, it ranks the vectors.

tests/test_vectors.py runs its store tests on such a database too (its "pgvector"
fixtures); this file tests what is pgvector's own: adopting it in a store that has
vectors already, its column kept from the bytes whoever writes them, the opt-in
HNSW index, and the fallbacks to memstore's index.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import memstore
from tests.dbinfo import other_tool, sql


def embedding(store: memstore.Store, key: str) -> np.ndarray:
    (text,) = sql(
        store,
        "SELECT v.embedding::text FROM memstore_vectors AS v JOIN memories AS t "
        "ON v.collection = 'memories' AND v.record_id = t.id WHERE t.key = ?",
        (key,),
    )[0]
    return np.array([float(x) for x in text.strip("[]").split(",")], np.float32)


def hnsw_indexes(store: memstore.Store) -> list[str]:
    return [
        row[0]
        for row in sql(
            store,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'memstore_vectors' "
            "AND indexname LIKE 'memstore\\_hnsw\\_%'",
        )
    ]


def test_a_store_adopts_pgvector_once_the_database_has_it(pg_url: str) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((200, 8)).astype(np.float32)
    with memstore.Store(pg_url) as store:
        memories = store.collection("memories", vectors={"dim": 8, "model": "m", "hnsw": True})
        memories.put_many([(f"k{i}", {"i": i}) for i in range(200)], vectors=matrix)
        before = memories.nearest(matrix[7], k=5)
        assert memories.stats()["vectors"]["ranked_by"] == "memstore"
        assert memories.vectors is not None and memories.vectors["hnsw"]["m"] == 16  # kept
    try:
        other_tool(pg_url, "CREATE EXTENSION vector")
    except Exception as err:  # the server has no pgvector (CI builds it: .ci/run)
        if "vector.control" not in str(err):
            raise
        pytest.skip(f"this server has no pgvector: {err}")
    with memstore.Store(pg_url) as store:
        memories = store["memories"]
        assert memories.stats()["vectors"]["ranked_by"] == "pgvector"
        assert memories.nearest(matrix[7], k=5) == before
        assert not store._vector_indexes  # ranked by the database: nothing loaded
        np.testing.assert_array_equal(embedding(store, "k7"), matrix[7])
        assert len(hnsw_indexes(store)) == 1  # the index declared before pgvector came
        assert store.check() == []


def test_a_role_that_may_not_alter_the_tables_keeps_memstores_index(pg_url: str) -> None:
    """pgvector in the database, but the store opened by a role that does not own
    memstore's tables: it cannot adopt pgvector, and ranks as before (no error)."""
    try:
        other_tool(pg_url, "CREATE EXTENSION vector")
    except Exception as err:
        if "vector.control" not in str(err):
            raise
        pytest.skip(f"this server has no pgvector: {err}")
    role = f"memstore_reader_{pg_url.rpartition('_')[2]}"
    for statement in [
        f"DROP ROLE IF EXISTS {role}",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT CREATE, USAGE ON SCHEMA public TO {role}",
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]:
        other_tool(pg_url, statement)
    try:
        url = pg_url.replace("//memstore@", f"//{role}@")
        with memstore.Store(url) as store:
            memories = store.collection("memories", vectors={"dim": 2, "model": "m"})
            memories.put("a", {}, vector=[1.0, 0.0])
            assert memories.stats()["vectors"]["ranked_by"] == "memstore"
            assert [h.key for h in memories.nearest([1.0, 0.0])] == ["a"]
    finally:
        other_tool(pg_url, f"REASSIGN OWNED BY {role} TO memstore")
        other_tool(pg_url, f"DROP OWNED BY {role}")
        other_tool(pg_url, f"DROP ROLE {role}")


def test_the_column_is_the_bytes_bit_for_bit_whoever_writes_them(pgvector_url: str) -> None:
    # Zeros of both signs, subnormals, the smallest normal and the one below it, the
    # largest float32s, and ordinary values.
    edges = [0.0, -0.0, 1e-45, -1e-45, 1.17549435e-38, 1.1754942e-38, 3.4028235e38, -3.4e38]
    values = np.array([*edges, 1.0, -2.5, 0.1, 1 / 3, 65504.0, 1e-7, -123456.789, 7.0], np.float32)
    with memstore.Store(pgvector_url) as store:
        memories = store.collection("memories", vectors={"dim": 16, "model": "m"})
        memories.put("a", {}, vector=values)
        np.testing.assert_array_equal(embedding(store, "a"), values)
        assert str(embedding(store, "a")[1]) == "-0.0"
        # Another tool rewrites the bytes: the column follows.
        other_tool(
            pgvector_url,
            "UPDATE memstore_vectors SET vector = ? WHERE collection = 'memories'",
            (values[::-1].tobytes(),),
        )
        np.testing.assert_array_equal(embedding(store, "a"), values[::-1])
        # Nor can another tool set the column to something else.
        with pytest.raises(Exception, match="generated"):
            other_tool(pgvector_url, "UPDATE memstore_vectors SET embedding = NULL")
        # Bytes pgvector refuses (NaN) are refused for every tool.
        nan = np.full(16, np.nan, np.float32).tobytes()
        with pytest.raises(Exception, match="not allowed in vector"):
            other_tool(pgvector_url, "UPDATE memstore_vectors SET vector = ?", (nan,))
        np.testing.assert_array_equal(embedding(store, "a"), values[::-1])


def test_hnsw_is_opt_in_and_follows_the_declaration(pgvector_url: str) -> None:
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((300, 32)).astype(np.float32)
    with memstore.Store(pgvector_url) as store:
        memories = store.collection("memories", vectors={"dim": 32, "model": "m"}, fts=["t"])
        memories.put_many([(f"k{i}", {"t": f"text {i}"}) for i in range(300)], vectors=matrix)
        assert hnsw_indexes(store) == []  # exact by default
        memories = store.collection("memories", vectors={"dim": 32, "model": "m", "hnsw": True})
        (index,) = hnsw_indexes(store)
        assert "hnsw" in index and "vector_cosine_ops" in index and "m='16'" in index
        assert memories.vectors is not None
        assert memories.vectors["hnsw"] == {"m": 16, "ef_construction": 64, "ef_search": 200}
        exact = memories.nearest(matrix[3], k=10, exact=True)
        approximate = memories.nearest(matrix[3], k=10)
        assert approximate[0].key == "k3" and approximate[0].score == pytest.approx(1.0)
        assert len({h.key for h in approximate} & {h.key for h in exact}) >= 8
        # Scores are memstore's exact ones (float64 from the bytes) either way.
        common = {h.key: h.score for h in exact}
        assert all(h.score == common[h.key] for h in approximate if h.key in common)
        # Other options: the index is built again; a query's ef_search changes nothing.
        store.collection("memories", vectors={"dim": 32, "model": "m", "hnsw": {"m": 8}})
        (rebuilt,) = hnsw_indexes(store)
        assert "m='8'" in rebuilt
        store.collection(
            "memories", vectors={"dim": 32, "model": "m", "hnsw": {"m": 8, "ef_search": 50}}
        )
        assert hnsw_indexes(store) == [rebuilt]
        # A new model: the index moves with it.
        memories = store["memories"]
        memories.re_embed(lambda texts: rng.standard_normal((len(texts), 16)), model="n", dim=16)
        (moved,) = hnsw_indexes(store)
        assert "vector(16)" in moved and "'n'" in moved
        assert len(memories.nearest(rng.standard_normal(16), k=5)) == 5
        store.collection("memories", vectors={"dim": 16, "model": "n", "hnsw": False})
        assert hnsw_indexes(store) == []
        store.collection("memories", vectors={"dim": 16, "model": "n", "hnsw": True})
        (index,) = hnsw_indexes(store)
        other_tool(pgvector_url, f"DROP INDEX {index.split()[2]}")  # another tool drops it
        (problem,) = store.check()
        assert problem.startswith("memories: missing index memstore_hnsw_")
        assert store.repair() == [problem.replace("missing", "recreated")]
        assert hnsw_indexes(store) == [index] and store.check() == []
        store.drop_collection("memories")
        assert hnsw_indexes(store) == []
        assert store.check() == []


def test_approximate_queries_that_find_too_few_compare_every_vector(pgvector_url: str) -> None:
    with memstore.Store(pgvector_url) as store:
        memories = store.collection(
            "memories", vectors={"dim": 3, "model": "m", "hnsw": True}, fields={"kind": str}
        )
        # Zero vectors: HNSW's cosine index leaves them out; expired records: filtered
        # after the index. Either way k hits come back whenever k records qualify.
        memories.put_many([(f"z{i}", {"kind": "zero"}) for i in range(5)], vectors=np.zeros((5, 3)))
        memories.put("x", {"kind": "x"}, vector=[1.0, 0.0, 0.0])
        memories.put("gone", {"kind": "x"}, vector=[1.0, 0.0, 0.0], ttl=0.001)
        time.sleep(0.01)  # past its expiry
        hits = memories.nearest([1.0, 0.0, 0.0], k=6)
        assert [h.key for h in hits] == ["x", "z0", "z1", "z2", "z3", "z4"]
        assert [h.score for h in hits] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        # A filter is applied exactly, before ranking.
        assert [h.key for h in memories.nearest([1.0, 0.0, 0.0], where={"kind": "zero"})] == [
            f"z{i}" for i in range(5)
        ]


def test_records_of_many_parts_score_their_best_part(tmp_path: Path, pgvector_url: str) -> None:
    """When a few records' parts fill the best candidates, the ranking goes by record:
    the answer is a file's."""
    rng = np.random.default_rng(11)
    q = rng.standard_normal(8).astype(np.float32)
    answers = []
    for where in (str(tmp_path / "agent.db"), pgvector_url):
        with memstore.Store(where) as store:
            memories = store.collection("memories", vectors={"dim": 8, "model": "m"})
            for i in range(3):  # 40 parts each, all near q
                parts = {f"p{j}": q + 0.01 * rng.standard_normal(8) for j in range(40)}
                memories.put(f"many{i}", {}, vector=parts)
            for i in range(10):
                memories.put(f"one{i}", {}, vector=q + 0.5 * rng.standard_normal(8))
            answers.append(memories.nearest(q, k=5))
            rng = np.random.default_rng(11)  # the same vectors for the next store
            q = rng.standard_normal(8).astype(np.float32)
    assert answers[1] == answers[0] and len({h.key for h in answers[1]}) == 5


def test_vectors_too_long_for_float32_are_ranked_by_memstore(pgvector_url: str) -> None:
    with memstore.Store(pgvector_url) as store:
        memories = store.collection("memories", vectors={"dim": 2, "model": "m"})
        memories.put("near", {}, vector=[1e19, 1.0])
        memories.put("far", {}, vector=[-1e19, 1.0])
        assert [h.key for h in memories.nearest([1.0, 0.0])] == ["near", "far"]
        assert "memories" in store._vector_indexes  # memstore's index answered, in float64
        plain = store.collection("plain", vectors={"dim": 2, "model": "m"})
        plain.put("a", {}, vector=[1.0, 0.0])
        assert [h.key for h in plain.nearest([1.0, 0.0])] == ["a"]
        assert "plain" not in store._vector_indexes


def test_graphs_and_facts_over_time_are_ranked_by_pgvector(pgvector_url: str) -> None:
    with memstore.Store(pgvector_url) as store:
        graph = store.graph("kg", vectors={"dim": 2, "model": "m"})
        graph.add_node("alice", "person", vector=[1.0, 0.0])
        graph.add_node("acme", "company", vector=[0.9, 0.1])
        graph.add_node("bob", "person", vector=[0.0, 1.0])
        assert [n.key for n in graph.nearest([1.0, 0.0], k=2)] == ["alice", "acme"]
        assert [n.key for n in graph.nearest([1.0, 0.0], kinds=["person"])] == ["alice", "bob"]
        facts = store.collection("facts", temporal=True, vectors={"dim": 2, "model": "m"})
        facts.put("f", {"v": 1}, vector=[1.0, 0.0], valid_from="2026-01-01T00:00:00Z")
        facts.supersede("f", {"v": 2}, vector=[0.0, 1.0], at="2026-06-01T00:00:00Z")
        assert [h.record["v"] for h in facts.nearest([1.0, 0.0], k=1)] == [2]
        old = facts.nearest([1.0, 0.0], k=1, as_of="2026-03-01T00:00:00Z")
        assert [h.record["v"] for h in old] == [1]
        assert not store._vector_indexes


def test_copy_from_a_file_lands_in_pgvector(tmp_path: Path, pgvector_url: str) -> None:
    path = tmp_path / "agent.db"
    rng = np.random.default_rng(9)
    matrix = rng.standard_normal((50, 4)).astype(np.float32)
    with memstore.Store(path) as source:
        notes = source.collection("memories", vectors={"dim": 4, "model": "m", "hnsw": True})
        notes.put_many([(f"k{i}", {}) for i in range(50)], vectors=matrix)
        want = notes.nearest(matrix[0], k=5)
    memstore.copy(path, pgvector_url)
    with memstore.Store(pgvector_url) as store:
        assert store["memories"].nearest(matrix[0], k=5) == want
        assert len(hnsw_indexes(store)) == 1  # the declaration came with its index
        assert store.check() == []


@pytest.mark.parametrize(
    "hnsw",
    [
        "yes",
        {"m": 1},
        {"m": 16, "ef_construction": 16},
        {"ef_search": 0},
        {"m": True},
        {"depth": 3},
    ],
)
def test_bad_hnsw_options_are_refused_on_every_engine(tmp_path: Path, hnsw: object) -> None:
    with memstore.Store(tmp_path / "agent.db") as store:
        with pytest.raises(memstore.ValidationError, match="hnsw"):
            store.collection("memories", vectors={"dim": 4, "model": "m", "hnsw": hnsw})
        with pytest.raises(memstore.ValidationError, match="2000 dimensions"):
            store.collection("wide", vectors={"dim": 2001, "model": "m", "hnsw": True})
        with pytest.raises(memstore.ValidationError, match="hnsw"):
            store.graph("kg", vectors={"dim": 4, "model": "m", "hnsw": True})
        assert store.collections() == []


def test_a_filtered_query_compares_every_match_even_with_hnsw(pgvector_url: str) -> None:
    """where= is applied exactly, before ranking: an HNSW index (here a poor one: few
    candidates followed) never answers a filtered query."""
    rng = np.random.default_rng(13)
    matrix = rng.standard_normal((3000, 32)).astype(np.float32)
    with memstore.Store(pgvector_url) as store:
        memories = store.collection(
            "memories",
            fields={"kind": str},
            vectors={
                "dim": 32,
                "model": "m",
                "hnsw": {"m": 4, "ef_construction": 8, "ef_search": 1},
            },
        )
        memories.put_many([(f"k{i}", {"kind": "ab"[i % 2]}) for i in range(3000)], vectors=matrix)
        for q in rng.standard_normal((10, 32)).astype(np.float32):
            scores = matrix[::2] @ q / (np.linalg.norm(matrix[::2], axis=1) * np.linalg.norm(q))
            want = [f"k{2 * j}" for j in np.argsort(-scores)[:10]]
            got = [h.key for h in memories.nearest(q, k=10, where={"kind": "a"})]
            assert got == want
