"""The graph: nodes, edges, neighbours with cycles, profiles, check, export and import."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import memstore

from .dbinfo import on_connections, on_postgres, other_tool, sql


@pytest.fixture
def g(store: memstore.Store) -> memstore.Graph:
    graph = store.graph("facts")
    for node, kind in [
        ("a", "person"),
        ("b", "person"),
        ("c", "tool"),
        ("d", "tool"),
        ("e", "doc"),
    ]:
        graph.add_node(node, kind, {"name": node.upper()})
    graph.add_edge("a", "b", "knows")
    graph.add_edge("b", "c", "uses", {"since": 2024}, weight=0.5)
    graph.add_edge("c", "a", "made_by")  # a cycle a -> b -> c -> a
    graph.add_edge("c", "d", "calls")
    graph.add_edge("e", "a", "mentions")
    return graph


def ids(nodes: list[memstore.Node]) -> list[str]:
    return [n.id for n in nodes]


def test_nodes_and_edges(g: memstore.Graph) -> None:
    assert ids(g.nodes(kind="tool")) == ["c", "d"]
    assert g.node("a").props == {"name": "A"}
    g.add_node("a", "human", {"name": "Ada"})  # upsert
    assert (g.node("a").kind, g.node("a").props) == ("human", {"name": "Ada"})
    assert [(e.source, e.target) for e in g.edges(source="c")] == [("c", "d"), ("c", "a")]
    edge = g.edges(relation="uses")[0]
    assert (edge.props, edge.weight) == ({"since": 2024}, 0.5)
    g.add_edge("b", "c", "uses", weight=0.9)
    assert g.edges(relation="uses")[0].weight == 0.9 and len(g.edges()) == 5


def test_neighbors_with_cycles_terminate(g: memstore.Graph) -> None:
    assert ids(g.neighbors("a")) == ["b"]
    two = g.neighbors("a", depth=2)
    assert [(n.id, n.depth) for n in two] == [("b", 1), ("c", 2)]
    assert [(n.id, n.depth) for n in g.neighbors("a", depth=10)] == [("b", 1), ("c", 2), ("d", 3)]
    assert [(n.id, n.depth) for n in g.neighbors("a", direction="in")] == [("c", 1), ("e", 1)]
    assert [(n.id, n.depth) for n in g.neighbors("a", direction="both", depth=2)] == [
        ("b", 1),
        ("c", 1),
        ("e", 1),
        ("d", 2),
    ]
    assert ids(g.neighbors("a", relation="knows", depth=5)) == ["b"]
    assert g.neighbors("d") == []


def test_delete_node_removes_its_edges(g: memstore.Graph) -> None:
    assert g.delete_node("c") is True
    assert g.edges(source="c") == [] and g.edges(target="c") == []
    assert len(g.edges()) == 2 and g.check() == []
    assert g.delete_node("c") is False
    assert g.delete_edge("a", "b", "knows") is True


def test_profiles(g: memstore.Graph) -> None:
    g.set_profile("agent:planner", {"style": "terse", "tools": ["web"]})
    g.set_profile("user:u1", {"lang": "fr"})
    assert g.profile("agent:planner")["style"] == "terse"
    assert list(g.profiles()) == ["agent:planner", "user:u1"]
    assert g.profile("nobody", None) is None
    with pytest.raises(memstore.NotFoundError):
        g.profile("nobody")


def test_check_finds_dangling_edges_from_other_tools(
    file_store: memstore.Store, db_path: Path
) -> None:
    g = file_store.graph("facts")
    g.add_node("a", "x")
    g.add_node("b", "x")
    g.add_edge("a", "b", "r")
    raw = sqlite3.connect(db_path)  # foreign keys are off by default in stdlib sqlite3
    with raw:
        raw.execute("DELETE FROM memstore_nodes WHERE id = 'b'")
    raw.close()
    assert g.check() == ["dangling edge a -r-> b in graph facts"]


def test_export_import_round_trip(g: memstore.Graph, tmp_path: Path) -> None:
    g.set_profile("p", {"x": 1})
    envelope = g.export()
    assert (envelope["format"], envelope["version"]) == ("memstore.graph", 1)
    text = json.dumps(envelope)
    with memstore.Store(tmp_path / "other.db") as other:
        copy = other.graph("copy")
        assert copy.import_(json.loads(text)) == {"nodes": 5, "edges": 5, "profiles": 1}
        again = copy.export()
        for part in ("nodes", "edges", "profiles"):
            assert again[part] == envelope[part]


@pytest.mark.parametrize(
    "envelope",
    [
        {"format": "memstore.graph", "version": 2, "nodes": [], "edges": []},
        {"format": "something else", "version": 1},
        {"format": "memstore.graph", "version": 1, "nodes": [{"kind": "no id"}], "edges": []},
        {
            "format": "memstore.graph",
            "version": 1,
            "nodes": [{"id": "x", "kind": "k"}],
            "edges": [{"source": "x", "target": "missing", "relation": "r"}],
        },
        "not even a dict",
    ],
)
def test_bad_envelopes_are_refused_whole(g: memstore.Graph, envelope: Any) -> None:
    before = g.export()
    with pytest.raises(memstore.MemstoreError):
        g.import_(envelope)
    after = g.export()
    assert (after["nodes"], after["edges"]) == (before["nodes"], before["edges"])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda g: g.add_edge("a", "a", "self"), memstore.ValidationError),
        (lambda g: g.add_edge("a", "zzz", "r"), memstore.NotFoundError),
        (lambda g: g.add_edge("a", "b", "r", weight=float("inf")), memstore.ValidationError),
        (lambda g: g.add_node("", "k"), memstore.ValidationError),
        (lambda g: g.add_node("x", "k", {"bad": {1}}), memstore.ValidationError),
        (lambda g: g.neighbors("a", direction="sideways"), memstore.ValidationError),
        (lambda g: g.neighbors("a", depth=-1), memstore.ValidationError),
        (lambda g: g.neighbors("zzz"), memstore.NotFoundError),
    ],
)
def test_bad_input_writes_nothing(g: memstore.Graph, call: Any, error: type) -> None:
    before = g.export()
    with pytest.raises(error):
        call(g)
    assert g.export()["edges"] == before["edges"] and g.export()["nodes"] == before["nodes"]


def test_nodes_and_edges_are_searchable(store: memstore.Store) -> None:
    g = store.graph("facts")
    g.add_node("Ada Lovelace", "person", {"note": "wrote the first program", "born": 1815})
    g.add_node("Engine", "machine", {"note": "analytical"})
    g.add_node("Babbage", "person")
    g.add_edge("Ada Lovelace", "Engine", "programmed_for", {"why": "curiosity"})
    g.add_edge("Babbage", "Engine", "designed", valid_to="2000-01-01T00:00:00Z")
    found = g.search("program OR curiosity")
    expected = [("Ada Lovelace programmed_for Engine", "Edge"), ("Ada Lovelace", "Node")]
    keys = [(h.key, type(h.record).__name__) for h in found]
    if on_postgres(store):  # ranked by ts_rank, not bm25: the order may differ
        expected, keys = sorted(expected), sorted(keys)
    assert keys == expected
    (node,) = [h for h in found if h.key == "Ada Lovelace"]
    assert "[program]" in node.snippet and all(h.score > 0 for h in found)
    people = [h.key for h in g.search("person", kinds=["person"])]
    assert people == ["Babbage", "Ada Lovelace"] or (on_postgres(store) and len(people) == 2)
    assert g.search("designed") == []  # an edge that no longer holds
    assert [h.key for h in g.search("designed", as_of="1999-01-01T00:00:00Z")] == [
        "Babbage designed Engine"
    ]
    g.add_node("Engine", "machine", {"note": "difference engine"})  # the index follows writes
    assert [h.key for h in g.search("difference")] == ["Engine"] and g.search("analytical") == []
    g.delete_node("Engine")
    assert g.search("difference") == [] and g.search("curiosity") == []
    sql(
        store,
        "INSERT INTO memstore_nodes (graph, id, kind, props) VALUES ('facts', 'Zed', 'x', "
        '\'{"note": "written by another tool"}\')',
    )
    assert [h.key for h in g.search("tool")] == ["Zed"]
    with pytest.raises(memstore.QueryError):
        g.search('"unbalanced')
    assert store.check() == []


def test_a_subgraph_around_a_query_fits_its_budget(store: memstore.Store) -> None:
    g = store.graph("big")
    for i in range(200):
        g.add_node(f"n{i}", "thing", {"text": f"item {i} " + "detail " * (i % 7)})
        if i:
            g.add_edge(f"n{i - 1}", f"n{i}", "next")
    whole = g.subgraph("item", token_budget=100_000, limit=200)
    assert len(whole["nodes"]) == 200 and not whole["truncated"]
    for budget in (10, 50, 333, 2000):
        part = g.subgraph("item", token_budget=budget, limit=200)
        assert part["tokens"] <= budget and part["truncated"]
        shown = [*part["nodes"], *part["edges"]]
        assert sum(math.ceil(len(json.dumps(x, ensure_ascii=False)) / 4) for x in shown) <= budget
        ids = {n["id"] for n in part["nodes"]}
        assert all(e["source"] in ids and e["target"] in ids for e in part["edges"])


def test_the_graph_index_survives_vacuum(file_store: memstore.Store) -> None:
    g = file_store.graph("g")
    for i in range(50):
        g.add_node(f"n{i}", "thing", {"text": f"word{i}"})
    for i in range(0, 50, 2):
        g.delete_node(f"n{i}")  # holes, which VACUUM closes up
    file_store.vacuum()
    assert [h.key for h in g.search("word31")] == ["n31"]
    assert file_store.check() == []


def test_any_id_is_searchable_and_renames_by_other_tools_are_followed(
    store: memstore.Store,
) -> None:
    g = store.graph("odd")
    for node in ("a", "a\x1fb", "c", "b\x1fc"):
        g.add_node(node, "thing")
    # The same characters in another order: two edges, neither hidden by the other.
    g.add_edge("a\x1fb", "c", "likes", {"note": "zebra"})
    g.add_edge("a", "c", "b\x1flikes", {"note": "yak"})
    assert [h.record.source for h in g.search("zebra")] == ["a\x1fb"]
    assert [h.record.relation for h in g.search("yak")] == ["b\x1flikes"]
    g.delete_edge("a", "c", "b\x1flikes")
    assert g.search("yak") == [] and [h.key for h in g.search("zebra")] == ["a\x1fb likes c"]
    with store.transaction():  # another tool renames a node and an edge's relation
        store.connection.execute(
            "UPDATE memstore_nodes SET id = 'q' WHERE graph = 'odd' AND id = 'b\x1fc'"
        )
        store.connection.execute(
            "UPDATE memstore_edges SET relation = 'loves' WHERE graph = 'odd' AND target = 'c'"
        )
    assert [h.key for h in g.search("q")] == ["q"]
    assert [h.key for h in g.search("zebra")] == ["a\x1fb loves c"]
    assert g.search("likes") == []
    assert store.check() == []


# -- node vectors ---------------------------------------------------------------


def brute_force(vectors: dict[str, Any], q: Any, metric: str, k: int) -> list[str]:
    """The yardstick: numpy over every vector, in float64."""
    np = pytest.importorskip("numpy")
    ids = list(vectors)
    rows = np.array([vectors[i] for i in ids], dtype=np.float64)
    if metric == "l2":
        scores = -np.linalg.norm(rows - q, axis=1)
    else:
        scores = rows @ q
        if metric == "cosine":
            scores = scores / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], i))
    return [ids[i] for i in order[:k]]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_nodes_nearest_a_vector_are_those_numpy_finds(store: memstore.Store, metric: str) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(7)
    g = store.graph("kg", vectors={"dim": 8, "model": "m", "metric": metric})
    vectors = {}
    for i in range(300):
        vectors[f"n{i}"] = rng.normal(size=8).astype(np.float32)
        g.add_node(f"n{i}", "even" if i % 2 == 0 else "odd", vector=vectors[f"n{i}"])
    for _ in range(5):
        q = rng.normal(size=8)
        found = g.nearest(q, k=10)
        assert [n.key for n in found] == brute_force(vectors, q, metric, 10)
        assert all(isinstance(n.record, memstore.Node) for n in found)
        even = {key: v for key, v in vectors.items() if int(key[1:]) % 2 == 0}
        found = g.nearest(q, k=7, kinds=["even"], exact=True)
        assert [n.key for n in found] == brute_force(even, q, metric, 7)
    assert g.nearest(rng.normal(size=8), k=0) == []
    assert store.check() == []


def test_a_handle_with_embed_embeds_each_node_and_text_queries(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    texts: list[str] = []

    def embed(batch: list[str]) -> list[list[float]]:
        texts.extend(batch)
        return [[t.count("a") + 0.1, t.count("o") + 0.1] for t in batch]

    g = store.graph("kg", vectors={"dim": 2, "model": "toy", "embed": embed})
    g.add_node("ann", "person", {"bio": "a banana farmer"})
    g.add_node("bob", "person", {"bio": "good cook"})
    assert texts == ["ann person a banana farmer", "bob person good cook"]
    assert [n.key for n in g.nearest("aaaa", k=2)] == ["ann", "bob"]
    g.add_node("bob", "person", {"bio": "banana"})  # props change: embedded again
    assert list(g.vector("bob")) == pytest.approx([3.1, 2.1])
    plain = store.graph("kg", vectors={"dim": 2, "model": "toy"})  # no embed: vector kept
    plain.add_node("bob", "person", {"bio": "ooo"})
    assert list(plain.vector("bob")) == pytest.approx([3.1, 2.1])
    with pytest.raises(memstore.QueryError, match="embed"):
        plain.nearest("text")
    with pytest.raises(memstore.QueryError, match="no vectors"):
        store.graph("kg").nearest([1.0, 0.0])


def test_node_vectors_go_with_their_nodes_and_with_an_export(
    store: memstore.Store, tmp_path: Path
) -> None:
    pytest.importorskip("numpy")
    g = store.graph("kg", vectors={"dim": 2, "model": "m"})
    for i, vector in enumerate([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]):
        g.add_node(f"n{i}", "thing", vector=vector)
    g.add_edge("n0", "n1", "near")
    assert g.delete_node("n2")
    store.connection.execute("DELETE FROM memstore_nodes WHERE id = 'n1'")  # another tool
    assert [n.key for n in g.nearest([0.0, 1.0], k=5)] == ["n0"]
    (left,) = store.connection.execute("SELECT count(*) FROM memstore_vectors").fetchone()
    assert left == 1
    g.add_node("n3", "thing", vector=[0.0, 1.0])
    store.export(tmp_path / "out", plaintext=True)  # the fixture may be an encrypted file
    with memstore.Store(tmp_path / "copy.db") as copy:
        assert copy.import_(tmp_path / "out")["tables"]["memstore_graph_vectors"] == 2
        again = copy.graph("kg", vectors={"dim": 2, "model": "m"})
        assert [n.key for n in again.nearest([0.0, 1.0], k=5)] == ["n3", "n0"]
        assert copy.import_(tmp_path / "out")["tables"]["memstore_graph_vectors"] == 0
        assert copy.check() == []
    # Vectors whose node went with the triggers off are found and mended.
    drop = "DROP TRIGGER memstore_graph_text__vectors_delete"
    sql(store, drop + (" ON memstore_graph_text" if on_postgres(store) else ""))
    store.connection.execute("DELETE FROM memstore_graph_text WHERE ref = 'n3'")
    assert any("no longer in graph 'kg'" in p for p in store.check())
    store.repair()
    assert store.check() == []


@pytest.mark.parametrize(
    "vector", [[1.0], [1.0, math.nan], [1.0, math.inf], "text", {"a": [1.0, 2.0]}, [1e39, 0.0]]
)
def test_a_bad_node_vector_is_refused_and_writes_nothing(
    store: memstore.Store, vector: Any
) -> None:
    pytest.importorskip("numpy")
    g = store.graph("kg", vectors={"dim": 2, "model": "m"})
    with pytest.raises(memstore.ValidationError):
        g.add_node("x", "thing", vector=vector)
    assert g.nodes() == []


def test_one_model_per_graph(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    store.graph("kg", vectors={"dim": 2, "model": "m"}).add_node("a", "x", vector=[1.0, 0.0])
    other = store.graph("kg", vectors={"dim": 3, "model": "other"})
    with pytest.raises(memstore.ValidationError, match="one model per graph"):
        other.add_node("b", "x", vector=[1.0, 0.0, 0.0])
    assert [n.id for n in other.nodes()] == ["a"]
    with pytest.raises(memstore.ValidationError, match="fields"):
        store.graph("kg", vectors={"dim": 2, "model": "m", "fields": ["x"]})


def test_a_subgraph_with_vectors_finds_what_words_miss(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    g = store.graph("kg", vectors={"dim": 2, "model": "m"})
    g.add_node("paris", "city", {"note": "capital of france"}, vector=[1.0, 0.0])
    g.add_node("lutetia", "city", {"note": "roman town"}, vector=[0.99, 0.1])
    g.add_node("oslo", "city", {"note": "capital of norway"}, vector=[0.0, 1.0])
    words = g.subgraph("france", depth=0)
    assert [n["id"] for n in words["nodes"]] == ["paris"]
    both = g.subgraph("france", depth=0, vector=[1.0, 0.0], limit=2)
    assert [n["id"] for n in both["nodes"]] == ["paris", "lutetia"]


def test_edges_carry_vectors_too_and_are_found_as_search_finds_them(
    store: memstore.Store, tmp_path: Path
) -> None:
    pytest.importorskip("numpy")
    g = store.graph("kg", vectors={"dim": 2, "model": "m"})
    g.add_node("ann", "person", vector=[0.0, 1.0])
    g.add_node("acme", "company", vector=[0.1, 1.0])
    g.add_edge("ann", "acme", "works_at", {"role": "cto"}, vector=[1.0, 0.0])
    found = g.nearest([1.0, 0.05], k=3)
    assert found[0].key == "ann works_at acme" and isinstance(found[0].record, memstore.Edge)
    assert [n.key for n in g.nearest([1.0, 0.0], k=3, kinds=["person"])] == ["ann"]
    g.invalidate_edge("ann", "acme", "works_at", at="2026-01-01T00:00:00Z")
    assert [n.key for n in g.nearest([1.0, 0.0], k=1)] == ["acme"]  # it holds no more
    then = g.nearest([1.0, 0.0], k=1, as_of="2025-06-01T00:00:00Z")
    assert [n.key for n in then] == ["ann works_at acme"]
    store.export(tmp_path / "out", plaintext=True)  # the fixture may be an encrypted file
    with memstore.Store(tmp_path / "copy.db") as copy:
        assert copy.import_(tmp_path / "out")["tables"]["memstore_graph_vectors"] == 3
        again = copy.graph("kg", vectors={"dim": 2, "model": "m"})
        assert again.nearest([1.0, 0.0], k=1, as_of="2025-06-01T00:00:00Z") == then
    assert g.delete_edge("ann", "acme", "works_at")
    (left,) = store.connection.execute("SELECT count(*) FROM memstore_vectors").fetchone()
    assert left == 2 and store.check() == []
    with pytest.raises(memstore.ValidationError):  # a bad vector: the edge is not written
        g.add_edge("ann", "acme", "knows", vector=[math.nan, 0.0])
    assert g.edges(every=True) == []


def test_known_at_walks_the_graph_as_it_was_after_other_tools_wrote(store_url: str) -> None:
    """Another tool's change (updated_at left alone) and delete are kept as versions by
    the triggers, on every engine: known_at reads the graph as it was before them."""
    with memstore.Store(store_url) as store:
        g = store.graph("g")
        for node in ("a", "b", "c"):
            g.add_node(node, "person", {"name": node.upper()})
        g.add_edge("a", "b", "knows")
        time.sleep(0.01)
        then = memstore._iso(memstore._utcnow())
        time.sleep(0.01)
        other_tool(
            store_url, "UPDATE memstore_nodes SET props = '{\"name\": \"Ada\"}' WHERE id = 'a'"
        )
        other_tool(store_url, "DELETE FROM memstore_edges WHERE source = 'a' AND target = 'b'")
        g.add_edge("a", "c", "knows")
        assert g.node("a").props == {"name": "Ada"} and g.node("a").updated_at > then
        assert g.node("a", known_at=then).props == {"name": "A"}
        assert [n.id for n in g.neighbors("a")] == ["c"]
        assert [n.id for n in g.neighbors("a", known_at=then)] == ["b"]
        assert [n.id for n in g.neighbors("c", direction="both", depth=2)] == ["a"]
        assert [e.target for e in g.edges(known_at=then)] == ["b"]
        assert [h.key for h in g.search("ada")] == ["a"]
        time.sleep(0.01)
        assert g.cleanup(older_than=0.005) == 2  # the node's old version, the deleted edge
        with pytest.raises(memstore.NotFoundError):  # what the store held then is forgotten
            g.node("a", known_at=then)
        assert store.check() == []


def test_an_edge_invalidated_on_many_connections_at_once_ends_once(store_url: str) -> None:
    """The first invalidation ends the edge; the others find it ended (ValidationError), as
    one after another on SQLite: on PostgreSQL all four moved its end."""
    with memstore.Store(store_url) as store:
        graph = store.graph("g")
        graph.add_node("a", "person")
        graph.add_node("b", "person")
        graph.add_edge("a", "b", "knows")
    outcomes: list[Any] = []

    def work(store: memstore.Store, n: int) -> None:
        try:
            outcomes.append(store.graph("g").invalidate_edge("a", "b", "knows"))
        except memstore.ValidationError:
            outcomes.append("ended already")

    on_connections(store_url, work)
    assert sorted(outcomes, key=str) == [True] + ["ended already"] * 3
