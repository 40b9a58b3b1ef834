"""memstore copy: a store moved between engines (a file, PostgreSQL) with its collections'
declarations, records, keys and timestamps, all or nothing, checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import memstore

from .conftest import memstore_cli
from .dbinfo import sql


def fill(store: memstore.Store) -> None:
    events = store.collection(
        "events",
        fields={"kind": str, "ms": int},
        fts=["summary"],
        ttl="30d",
        indexes=[("kind", "-ms")],
        time_indexes=False,
    )
    events.put_many(
        [(f"e{i}", {"kind": "error" if i % 3 else "info", "ms": i, "summary": f"step {i}"})
         for i in range(2500)]
    )  # fmt: skip
    events.put("gone", {"kind": "x", "summary": "expired"})
    sql(store, "UPDATE events SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE key = 'gone'")
    store.collection("notes").put("n1", {"text": "plain", "nested": {"a": [1, 2.5, None]}})


def rows(store: memstore.Store, name: str) -> list[tuple[object, ...]]:
    return sql(
        store,
        f"SELECT key, body, created_at, updated_at, expires_at FROM {name} ORDER BY key",
    )


def test_a_file_goes_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        fill(source)
    seen: list[tuple[int, int]] = []
    report = memstore.copy(tmp_path / "a.db", pg_url, progress=lambda d, t: seen.append((d, t)))
    assert report == {"collections": {"events": 2501, "notes": 1}, "tables": {}, "rows": 2502}
    assert seen[-1] == (2502, 2502)
    report = memstore.copy(pg_url, tmp_path / "b.db")
    assert report["rows"] == 2502
    with (
        memstore.Store(tmp_path / "a.db") as a,
        memstore.Store(pg_url) as pg,
        memstore.Store(tmp_path / "b.db") as b,
    ):
        for name in ("events", "notes"):
            assert rows(pg, name) == rows(a, name) == rows(b, name)
        for store in (a, pg, b):
            events = store["events"]
            assert (events.fields, events.fts, events.indexes) == (
                {"kind": "text", "ms": "integer"},
                ["summary"],
                [{"fields": ["kind", "-ms"], "unique": False}],
            )
            assert events.ttl is not None and events.ttl.days == 30
            assert [h.key for h in events.search('"step 7"')] == ["e7"]
            assert events.keys({"kind": "info"}, order_by="-ms", limit=2) == ["e2499", "e2496"]
            assert "gone" not in events and store.check() == []


def test_a_copy_that_fails_leaves_the_destination_as_it_was(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        source.collection("first").put_many([(f"k{i}", {"i": i}) for i in range(3000)])
        source.collection("second").put("bad", {"text": "NUL \x00 is SQLite's only"})
    with pytest.raises(memstore.ValidationError):
        memstore.copy(tmp_path / "a.db", pg_url)
    with memstore.Store(pg_url) as pg:
        assert pg.collections() == []  # not even the first collection: all or nothing
        sql(pg, "SELECT 1")  # and the connection is fine


def test_a_destination_holding_the_collections_is_refused(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        source.collection("notes").put("n", {"from": "file"})
    with memstore.Store(pg_url) as pg:
        pg.collection("notes").put("n", {"from": "postgresql"})
    with pytest.raises(memstore.ConflictError, match="notes"):
        memstore.copy(tmp_path / "a.db", pg_url)
    with pytest.raises(memstore.ConflictError):
        memstore.copy(pg_url, pg_url)
    with memstore.Store(pg_url) as pg:
        assert pg["notes"].get("n") == {"from": "postgresql"}


def test_file_to_file_is_a_backup_of_every_layer(tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        fill(source)
        source.event_log("agent").append({"kind": "x"})
    report = memstore.copy(tmp_path / "a.db", tmp_path / "b.db")
    assert report["collections"] == {"events": 2501, "notes": 1}
    assert report["tables"] == {"memstore_logs": 1, "memstore_events": 1}
    assert report["rows"] == 2504 and report["backup"]["path"] == str(tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as b:
        assert len(b.event_log("agent")) == 1 and b.check() == []
    with pytest.raises(memstore.ValidationError, match="exists"):
        memstore.copy(tmp_path / "a.db", tmp_path / "b.db")


def test_a_missing_source_creates_nothing(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(memstore.NotFoundError):
        memstore.copy(tmp_path / "typo.db", pg_url)
    assert not (tmp_path / "typo.db").exists()
    root, _, _ = pg_url.rpartition("/")
    with memstore.Store(pg_url):  # the database exists, with memstore's schema
        pass
    with pytest.raises(memstore.MemstoreError):
        memstore.copy(f"{root}/no_such_database", tmp_path / "c.db")
    assert not (tmp_path / "c.db").exists()


def test_the_command(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        source.collection("notes").put_many([(f"k{i}", {"i": i}) for i in range(5)])
    ran = memstore_cli("copy", str(tmp_path / "a.db"), pg_url, "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"collections": {"notes": 5}, "tables": {}, "rows": 5}
    again = memstore_cli("copy", str(tmp_path / "a.db"), pg_url)
    assert again.returncode == 1 and "notes" in again.stderr
    ran = memstore_cli("copy", pg_url, str(tmp_path / "b.db"))
    assert ran.returncode == 0 and ran.stdout.strip() == "copied 5 records (notes 5)"


def test_the_layers_both_have_are_copied(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        cache = source.cache("llm", ttl=3600)
        cache.set("q1", {"answer": 42})
        cache.get("q1")
        cache.get("missing")
        source.collection("notes").put("n", {})
    report = memstore.copy(tmp_path / "a.db", pg_url)
    assert report["tables"] == {"memstore_cache": 1, "memstore_cache_stats": 1}
    with memstore.Store(pg_url) as pg:
        copied = pg.cache("llm")
        assert copied.get("q1") == {"answer": 42} and copied.ttl == 3600
        assert copied.stats()["hits"] == 2  # one from the source, one here
    with pytest.raises(memstore.ConflictError, match="memstore_cache"):
        with memstore.Store(tmp_path / "b.db") as other:
            other.cache("x").set("k", 1)
        memstore.copy(pg_url, tmp_path / "b.db")


def test_history_goes_with_its_collection(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        notes = source.collection("notes", history=True)
        for n in range(3):
            notes.put("k", {"n": n})
    memstore.copy(tmp_path / "a.db", pg_url)
    with memstore.Store(pg_url) as pg:
        notes = pg["notes"]
        notes.put("k", {"n": 3})
        assert [(v.version, v.record["n"]) for v in notes.history("k")] == [
            (1, 0), (2, 1), (3, 2), (4, 3)
        ]  # fmt: skip
        assert notes.revert("k", 2) == {"n": 1} and pg.check() == []


def test_event_logs_go_both_ways_and_go_on(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        log = source.event_log("agent")
        log.append_many([{"id": f"e{i}", "kind": "step", "payload": {"i": i}} for i in range(5)])
        log.snapshot({"steps": 5})
    report = memstore.copy(tmp_path / "a.db", pg_url)
    assert report["tables"] == {
        "memstore_logs": 1,
        "memstore_events": 5,
        "memstore_event_snapshots": 1,
    }
    with memstore.Store(pg_url) as pg:
        log = pg.event_log("agent")
        assert log.append({"id": "e5", "kind": "step"}) == 6  # numbers, and ids, go on
        assert [h.record.id for h in log.search("step", limit=10)][:1]
        assert log.replay(lambda state, event: state, None) == {"steps": 5}
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        log = back.event_log("agent")
        assert [e.id for e in log.read()] == [f"e{i}" for i in range(6)]
        assert log.append({"kind": "after"}) == 7 and back.check() == []


def test_checkpoints_go_both_ways_and_stay_searchable(tmp_path: Path, pg_url: str) -> None:
    big = {"step": 2, "notes": "x" * (memstore.COMPRESS_ABOVE + 10)}
    with memstore.Store(tmp_path / "a.db") as source:
        cp = source.checkpoints()
        first = cp.save("t", {"step": 1}, tags=["start"])
        second = cp.save("t", big)
        cp.branch(first, name="alt")
        cp.save("t", {"step": 9}, branch="alt")
        assert cp.get(second).compressed
    memstore.copy(tmp_path / "a.db", pg_url)
    with memstore.Store(pg_url) as pg:
        cp = pg.checkpoints()
        assert [c.id for c in cp.find("t", where={"state.step": 2})] == [second]
        assert cp.get(second).state == big and not cp.get(second).compressed
        assert [c.state["step"] for c in cp.history("t", branch="alt")] == [9, 1]
        assert [c.id for c in cp.find("t", tags=["start"])] == [first]
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        assert back.checkpoints().get(second).state == big and back.check() == []


def test_conversations_go_both_ways_with_branches_and_counts(tmp_path: Path, pg_url: str) -> None:
    """Threads, branches (a branch of a branch, made in the same millisecond as its
    parent), merges and usage: the copy reads as the source did, and goes on."""
    with memstore.Store(tmp_path / "a.db") as source:
        conv = source.conversations()
        conv.create_thread("t", title="Trip", tags=["travel"])
        conv.add_messages("t", [{"role": "user", "content": f"step {i}"} for i in range(4)])
        conv.add_message("t", "assistant", {"train": "9:04"}, usage={"input_tokens": 7})
        branch = conv.branch("t", at=2, branch_id="b")
        deeper = conv.branch(branch, branch_id="b2")
        conv.add_message(deeper, "user", "a detour")
        conv.merge(deeper)
        conv.add_message("t", "user", "back on the main line")
        conv.pop_message("t")
        before = (conv.tree("t"), [conv.messages(t) for t in ("t", "b", "b2")], conv.usage())
        threads = conv.threads()
    report = memstore.copy(tmp_path / "a.db", pg_url)
    assert report["tables"] == {"memstore_threads": 3, "memstore_messages": 7, "memstore_merges": 1}
    with memstore.Store(pg_url) as pg:
        conv = pg.conversations()
        assert (
            conv.tree("t"),
            [conv.messages(t) for t in ("t", "b", "b2")],
            conv.usage(),
        ) == before
        assert conv.threads() == threads and pg.check() == []
        assert [h.record.position for h in conv.search("detour", thread_id="b")] == [3]
        assert conv.add_message("t", "user", "after the copy") == 6
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        conv = back.conversations()
        assert [m.content for m in conv.messages("t")][-1] == "after the copy"
        assert [h.key for h in conv.search("copy")] == ["t"] and back.check() == []
        assert conv.thread("b2").status == "merged" and conv.usage()["input_tokens"] == 7


def test_graphs_go_both_ways_with_their_history(tmp_path: Path, pg_url: str) -> None:
    with memstore.Store(tmp_path / "a.db") as source:
        g = source.graph("org")
        for name in ("alice", "acme", "globex"):
            g.add_node(name, "thing", {"about": f"{name} things"})
        g.add_edge("alice", "acme", "works_at", valid_from="2026-01-01T00:00:00Z")
        g.invalidate_edge("alice", "acme", "works_at", at="2026-06-01T00:00:00Z")
        g.add_edge("alice", "globex", "works_at", {"role": "engineer"})
        known = g.node("acme").updated_at
        time.sleep(0.002)
        g.add_node("acme", "company")  # a version of acme is kept
        g.set_profile("alice", {"tone": "brief"})
        before = (g.export(), g.edges(every=True), g.nodes())
    report = memstore.copy(tmp_path / "a.db", pg_url)
    assert report["tables"] == {
        "memstore_nodes": 3,
        "memstore_edges": 2,
        "memstore_profiles": 1,
        "memstore_node_versions": 1,
        "memstore_edge_versions": 1,
    }
    with memstore.Store(pg_url) as pg:
        g = pg.graph("org")
        assert ({**g.export(), "exported_at": None}, g.edges(every=True), g.nodes()) == (
            {**before[0], "exported_at": None},
            *before[1:],
        )
        assert [h.key for h in g.search("engineer")] == ["alice works_at globex"]
        assert g.node("acme", known_at=known).kind == "thing" and pg.check() == []
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        g = back.graph("org")
        assert g.nodes() == before[2] and [h.key for h in g.search("engineer")] == [
            "alice works_at globex"
        ]
        assert back.check() == []


def test_vectors_go_with_their_records_and_graph_items(tmp_path: Path, pg_url: str) -> None:
    """Each vector goes to its record's row in the destination (ids differ there): of a
    collection's records, in parts too, and of a graph's nodes and edges."""
    with memstore.Store(tmp_path / "a.db") as source:
        notes = source.collection("notes", fts=["text"], vectors={"dim": 2, "model": "m"})
        notes.put("gone", {"text": "deleted"}, vector=[0.0, 1.0])
        notes.put("a", {"text": "alpha"}, vector=[1.0, 0.0])
        notes.put("b", {"text": "beta"}, vector={"title": [0.0, 1.0], "body": [0.7, 0.7]})
        notes.delete("gone")  # ids in the source have a gap
        g = source.graph("g", vectors={"dim": 2, "model": "m"})
        g.add_node("x", "thing", vector=[1.0, 1.0])
        g.add_node("y", "thing", vector=[-1.0, 0.0])
        g.add_edge("x", "y", "near", vector=[0.0, -1.0])
        before = [(h.key, h.score) for h in notes.nearest([0.6, 0.8])]
        graph_before = [(h.key, h.score) for h in g.nearest([0.0, -1.0], k=3)]
    report = memstore.copy(tmp_path / "a.db", pg_url)
    assert report["tables"]["memstore_vectors"] == 6
    with memstore.Store(pg_url) as pg:
        notes = pg.collection("notes")
        assert [(h.key, h.score) for h in notes.nearest([0.6, 0.8])] == before
        g = pg.graph("g", vectors={"dim": 2, "model": "m"})
        assert [(h.key, h.score) for h in g.nearest([0.0, -1.0], k=3)] == graph_before
        assert [h.key for h in notes.hybrid("alpha", vector=[1.0, 0.0], k=1)] == ["a"]
        assert pg.check() == []
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        assert [(h.key, h.score) for h in back["notes"].nearest([0.6, 0.8])] == before
        assert back.check() == []


def test_what_hygiene_keeps_goes_with_its_records(tmp_path: Path, pg_url: str) -> None:
    """Pins, soft forgetting, merges and read counts: columns of their own, copied too."""
    with memstore.Store(tmp_path / "a.db") as source:
        notes = source.collection("notes", fts=["text"], hygiene={"dedup": "exact"})
        keep, gone = notes.add({"text": "the user is Ada"}), notes.add({"text": "a wrong fact"})
        notes.pin(keep)
        notes.forget(gone)
        notes.get(keep, track=True)
        twin = notes.remember({"text": "The user is  Ada"})
        before = (notes.accesses([keep]), notes.keys(), notes.get(gone, None), twin.action)
    memstore.copy(tmp_path / "a.db", pg_url)
    with memstore.Store(pg_url) as pg:
        notes = pg["notes"]
        assert (notes.accesses([keep]), notes.keys(), notes.get(gone, None)) == before[:3]
        assert notes.remember({"text": "the user is ada"}).action == before[3]
        assert notes.merged_from(keep) == [] and notes.unforget(gone) == 1
        assert notes.cleanup(keep_last=0) == 1  # the pinned record stays
        assert notes.keys() == [keep] and pg.check() == []


def test_facts_over_time_go_both_ways_with_what_was_known(tmp_path: Path, pg_url: str) -> None:
    """A temporal collection's facts (superseded ones too), their versions and the vectors
    those had: as_of and known_at read the same on the copy."""
    with memstore.Store(tmp_path / "a.db") as source:
        facts = source.collection("facts", temporal=True, vectors={"dim": 2, "model": "m"})
        facts.put("ceo", {"name": "Ada"}, valid_from="2026-01-01T00:00:00Z", vector=[1.0, 0.0])
        time.sleep(0.002)
        known = memstore._iso(memstore._utcnow())
        time.sleep(0.002)
        facts.put("ceo", {"name": "Ada L."}, vector=[0.0, 1.0])  # a correction: a version
        facts.supersede("ceo", {"name": "Bob"}, at="2026-06-01T00:00:00Z")
        reads = [
            facts.get("ceo", as_of="2026-03-01T00:00:00Z"),
            facts.get("ceo"),
            facts.get("ceo", as_of="2026-03-01T00:00:00Z", known_at=known),
            [h.record for h in facts.nearest([1.0, 0.0], known_at=known)],
            facts.timeline("ceo"),
        ]
    memstore.copy(tmp_path / "a.db", pg_url)
    with memstore.Store(pg_url) as pg:
        facts = pg["facts"]
        assert [
            facts.get("ceo", as_of="2026-03-01T00:00:00Z"),
            facts.get("ceo"),
            facts.get("ceo", as_of="2026-03-01T00:00:00Z", known_at=known),
            [h.record for h in facts.nearest([1.0, 0.0], known_at=known)],
            facts.timeline("ceo"),
        ] == reads
        assert pg.check() == []
    memstore.copy(pg_url, tmp_path / "b.db")
    with memstore.Store(tmp_path / "b.db") as back:
        assert back["facts"].timeline("ceo") == reads[4] and back.check() == []
