"""Import from the file layouts older stores use, and export/import round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import memstore
import memstore_demo
import memstore_legacy

from .conftest import memstore_cli


def write(root: Path, relative: str, data: Any) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.fixture
def collection_files(tmp_path: Path) -> Path:
    """Layout 1: one JSON file per collection, keys to records, with _stored_at stamps."""
    root = tmp_path / "old-collections"
    write(
        root,
        "events.json",
        {
            "evt-1": {"type": "error", "msg": "tool timeout", "_stored_at": "2025-03-01T10:00:00"},
            "evt-2": {"type": "info", "msg": "ok", "_stored_at": 1740823200.5},
        },
    )
    write(
        root,
        "decisions.json",
        {"d-1": {"choice": "retry", "why": ["timeout"]}, "d-2": "plain text"},
    )
    write(root, "agent-notes.json", {"n-1": {"text": "ünïcödé"}})
    write(root, "broken.json", '{"evt-9": {"type": "error", ')  # malformed
    write(root, "list.json", [1, 2, 3])  # not a mapping
    return root


@pytest.fixture
def memory_files(tmp_path: Path) -> Path:
    """Layout 2: one JSON file per memory, with an index."""
    root = tmp_path / "old-memories"
    write(
        root, "memories/m-1.json", {"id": "m-1", "content": "Alice likes trains", "importance": 0.8}
    )
    write(
        root,
        "memories/m-2.json",
        {"id": "m-2", "content": "Lyon is sunny", "embedding": [0.1, 0.2]},
    )
    write(root, "memories/m-3.json", "not json at all {")  # malformed
    write(root, "assemblies/a-1.json", {"members": ["m-1", "m-2"], "topic": "travel"})
    write(
        root,
        "memory_index.json",
        {"m-1": {"file": "memories/m-1.json"}, "m-2": {"file": "memories/m-2.json"}},
    )
    return root


@pytest.fixture
def conversation_tree(tmp_path: Path) -> Path:
    """Layout 3: conversations/<id>/*.json, cache/, agents/<id>/, system/."""
    root = tmp_path / "old-tree"
    write(root, "conversations/c-1/current.json", {"turn": 3})
    write(
        root,
        "conversations/c-1/raw_messages.json",
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )
    write(root, "conversations/c-1/chunks.json", [{"text": "hi hello"}])
    write(root, "conversations/c-1/memories.json", [])
    write(root, "conversations/c-2/current.json", {"turn": 1})
    write(root, "conversations/c-2/raw_messages.json", "[{broken")  # malformed
    write(root, "cache/prompt-abc.json", {"completion": "cached"})
    write(root, "agents/planner/reasoning_chains.json", [{"steps": ["look", "decide"]}])
    write(root, "system/config.json", {"version": 2})
    write(root, "system/counter.json", 7)
    return root


def assert_same_exports(first: Path, second: Path) -> None:
    files = sorted(p.relative_to(first) for p in first.rglob("*.jsonl"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.jsonl"))
    for name in files:
        assert (first / name).read_text() == (second / name).read_text(), name


def dump(store: memstore.Store) -> dict[str, Any]:
    """Everything in a store, for comparing two stores."""
    return {
        name: {
            row.key: (row.record, row.created_at, row.updated_at)
            for row in store.collection(name).rows()
        }
        for name in store.collections()
    }


def test_collection_files(collection_files: Path, tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db") as store:
        report = memstore_legacy.import_(store, collection_files)
        assert report["layout"] == "collection files"
        assert report["collections"] == {"agent_notes": 1, "decisions": 2, "events": 2}
        assert {s["file"] for s in report["skipped"]} == {"broken.json", "list.json"}
        events = store.collection("events")
        assert events.get("evt-1") == {
            "type": "error",
            "msg": "tool timeout",
            "_stored_at": "2025-03-01T10:00:00",
        }  # kept whole
        row = next(events.rows({"key": "evt-1"}))
        assert row.created_at == row.updated_at == "2025-03-01T10:00:00.000000Z"
        assert next(events.rows({"key": "evt-2"})).created_at == "2025-03-01T10:00:00.500000Z"
        assert store.collection("decisions").get("d-2") == {"value": "plain text"}
        assert store.collection("agent_notes").get("n-1") == {"text": "ünïcödé"}


def test_memory_files(memory_files: Path, tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db") as store:
        report = memstore_legacy.import_(store, memory_files)
        assert report["layout"] == "memory files"
        assert report["collections"] == {"memories": 2, "assemblies": 1, "memory_index": 2}
        assert [s["file"] for s in report["skipped"]] == ["memories/m-3.json"]
        assert store.collection("memories").get("m-2")["embedding"] == [0.1, 0.2]
        assert store.collection("memory_index").get("m-1") == {"file": "memories/m-1.json"}


def test_conversation_tree(conversation_tree: Path, tmp_path: Path) -> None:
    with memstore.Store(tmp_path / "a.db") as store:
        report = memstore_legacy.import_(store, conversation_tree)
        assert report["layout"] == "conversation tree"
        assert [s["file"] for s in report["skipped"]] == ["conversations/c-2/raw_messages.json"]
        c1 = store.collection("conversations").get("c-1")
        assert set(c1) == {"current", "raw_messages", "chunks", "memories"}
        assert c1["raw_messages"][1] == {"role": "assistant", "content": "hello"}
        assert store.collection("conversations").get("c-2") == {"current": {"turn": 1}}
        assert store.collection("cache").get("prompt-abc") == {"completion": "cached"}
        assert store.collection("reasoning_chains").get("planner") == {
            "value": [{"steps": ["look", "decide"]}]
        }
        assert store.collection("system").get("counter") == {"value": 7}


@pytest.mark.parametrize("layout", ["collection_files", "memory_files", "conversation_tree"])
def test_dry_run_writes_nothing(
    layout: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue(layout)
    with memstore.Store(tmp_path / "a.db") as store:
        report = memstore_legacy.import_(store, source, dry_run=True)
        assert report["dry_run"] and report["collections"] and report["skipped"]
        assert store.collections() == []


@pytest.mark.parametrize("layout", ["collection_files", "memory_files", "conversation_tree"])
def test_import_export_import_gives_identical_data(
    layout: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue(layout)
    with memstore.Store(tmp_path / "first.db") as first:
        memstore_legacy.import_(first, source)
        memstore_legacy.import_(first, source)  # idempotent
        first.export(tmp_path / "export1")
        before = dump(first)
    with memstore.Store(tmp_path / "second.db") as second:
        report = second.import_(tmp_path / "export1")
        assert report["layout"] == "memstore export" and report["skipped"] == []
        assert dump(second) == before
        second.export(tmp_path / "export2")
    assert_same_exports(tmp_path / "export1", tmp_path / "export2")


def test_full_store_round_trip_with_every_layer(tmp_path: Path) -> None:
    memstore_demo.build(tmp_path / "demo.db")
    with memstore.Store(tmp_path / "demo.db") as demo:
        manifest = demo.export(tmp_path / "exp")
        assert manifest["tables"]["memstore_events"]["rows"] == len(demo.event_log("trip-planner"))
    with memstore.Store(tmp_path / "copy.db") as copy:
        copy.import_(tmp_path / "exp")
        copy.import_(tmp_path / "exp")  # again: nothing changes
        assert copy.check() == []
        conv = copy.conversations()
        assert [m.content for m in conv.messages("chat-t-1")][-1].startswith("The Ouigo")
        assert copy.event_log("trip-planner").replay(lambda n, e: n + 1, 0) == len(
            copy.event_log("trip-planner")
        )
        assert copy.checkpoints().latest("chat-t-1") is not None
        assert len(copy.collection("tasks").history("t-1")) >= 3
        copy.export(tmp_path / "exp2")
    assert_same_exports(tmp_path / "exp", tmp_path / "exp2")


def test_cli_import_reports_and_exit_codes(collection_files: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    dry = memstore_cli("import", str(collection_files), "--dry-run", "--json", db=db)
    assert dry.returncode == 4, dry.stderr  # files were skipped
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["collections"]["events"] == 2
    with memstore.Store(db) as store:
        assert store.collections() == []
    done = memstore_cli("import", str(collection_files), db=db)
    assert done.returncode == 4
    assert "skipped broken.json" in done.stdout and "2 events" in done.stdout
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "things.json").write_text(json.dumps({"a": {"x": 1}}))
    assert memstore_cli("import", str(clean), db=db).returncode == 0


def test_unknown_export_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "manifest.json").write_text(
        json.dumps({"format": "memstore.export", "version": 99})
    )
    with memstore.Store(tmp_path / "a.db") as store, pytest.raises(memstore.SchemaError):
        store.import_(tmp_path / "exp")


def test_import_into_a_store_with_data_merges_and_counts_what_it_wrote(tmp_path: Path) -> None:
    memstore_demo.build(tmp_path / "demo.db")
    with memstore.Store(tmp_path / "demo.db") as demo:
        demo.export(tmp_path / "exp")
        demo_events = {e.id: e.kind for e in demo.event_log("trip-planner").read()}
        merged = [m for m in demo.conversations().messages("chat-t-1") if m.merged_from]
    with memstore.Store(tmp_path / "busy.db") as busy:
        log = busy.event_log("trip-planner")  # the same log name, other events
        for n in range(3):
            log.append({"id": f"mine-{n}", "kind": "mine"})
        conv = busy.conversations()
        conv.create_thread("mine")
        conv.add_message("mine", "user", "my own message")
        conv.add_message("mine", "assistant", "my own answer")
        report = busy.import_(tmp_path / "exp")
        assert report["tables"]["memstore_events"] == len(demo_events)  # none dropped
        events = log.read()
        assert [e.seq for e in events] == list(range(1, len(demo_events) + 4))  # gap-free
        assert [e.id for e in events[:3]] == ["mine-0", "mine-1", "mine-2"]
        assert {e.id: e.kind for e in events[3:]} == demo_events
        assert log.last_seq() == len(demo_events) + 3
        copies = [m for m in conv.messages("chat-t-1") if m.merged_from]
        assert [m.content for m in copies] == [m.content for m in merged]
        for copy in copies:  # merged_from points at the original, under its new id
            original = busy.connection.execute(
                "SELECT content FROM memstore_messages WHERE id = ?", (copy.merged_from,)
            ).fetchall()
            assert original == [(copy.content,)]
        assert [m.content for m in conv.messages("mine")] == ["my own message", "my own answer"]
        assert busy.check() == []
        again = busy.import_(tmp_path / "exp")  # everything is there already: nothing written
        assert set(again["tables"].values()) == {0}
        assert len(log) == len(demo_events) + 3 and busy.check() == []


def test_a_malformed_line_skips_its_file_only(tmp_path: Path) -> None:
    memstore_demo.build(tmp_path / "demo.db")
    with memstore.Store(tmp_path / "demo.db") as demo:
        demo.export(tmp_path / "exp")
    events = tmp_path / "exp" / "tables" / "memstore_events.jsonl"
    events.write_text(events.read_text() + "{broken\n")
    with memstore.Store(tmp_path / "copy.db") as copy:
        dry = copy.import_(tmp_path / "exp", dry_run=True)
        assert [s["file"] for s in dry["skipped"]] == ["tables/memstore_events.jsonl"]
        assert "line 51 is not valid JSON" in dry["skipped"][0]["error"]
        report = copy.import_(tmp_path / "exp")
        assert [s["file"] for s in report["skipped"]] == ["tables/memstore_events.jsonl"]
        assert "memstore_events" not in report["tables"]
        assert len(copy.event_log("trip-planner")) == 0  # none of that file's rows
        assert copy.collection("tasks").count() == 3 and copy.conversations().threads()


def test_a_manifest_cannot_name_files_outside_the_export(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "secret.jsonl").write_text('{"key": "a", "record": {}}\n')
    (tmp_path / "exp" / "manifest.json").write_text(
        json.dumps(
            {
                "format": "memstore.export",
                "version": 1,
                "collections": {"notes": {"file": "../secret.jsonl"}},
            }
        )
    )
    with memstore.Store(tmp_path / "a.db") as store, pytest.raises(memstore.SchemaError):
        store.import_(tmp_path / "exp")


def fill_every_layer(store: memstore.Store) -> None:
    """A store with a row in each layer PostgreSQL has, for export and import."""
    notes = store.collection(
        "notes", fields={"kind": str}, fts=["text"], history=True, vectors={"dim": 2, "model": "m"}
    )
    notes.put("a", {"kind": "x", "text": "alpha"}, vector=[1.0, 0.0])
    notes.put("a", {"kind": "y", "text": "alpha again"}, vector=[0.0, 1.0])
    notes.put("b", {"kind": "x", "text": "beta"}, vector={"title": [1.0, 1.0], "body": [0.5, 0.0]})
    log = store.event_log("agent")
    log.append_many([{"id": f"e{i}", "kind": "step", "payload": {"i": i}} for i in range(3)])
    conv = store.conversations()
    conv.create_thread("t", tags=["trip"])
    conv.add_messages(
        "t", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    conv.branch("t", at=1, branch_id="b")
    conv.add_message("b", "user", "x")
    conv.merge("b")
    store.checkpoints().save("t", {"step": 1}, tags=["start"])
    g = store.graph("g", vectors={"dim": 2, "model": "m"})
    g.add_node("n1", "thing", {"about": "one"}, vector=[1.0, 0.0])
    g.add_node("n2", "thing", vector=[0.0, 1.0])
    g.add_edge("n1", "n2", "near")
    g.set_profile("p", {"tone": "dry"})
    store.cache("c", ttl=3600).set("k", {"v": 1})


def test_an_export_goes_into_postgresql_and_comes_back_the_same(
    tmp_path: Path, pg_url: str
) -> None:
    """A file's export imported into PostgreSQL, exported from there and imported into a new
    file: the same lines in every file (ids and times included; a table's rows may come in
    another order), but for tables PostgreSQL has not, empty in the first export."""
    with memstore.Store(tmp_path / "a.db") as source:
        fill_every_layer(source)
        source.export(tmp_path / "export1")
        before = dump(source)
    with memstore.Store(pg_url) as pg:
        report = pg.import_(tmp_path / "export1")
        assert report["skipped"] == [] and pg.check() == []
        assert dump(pg) == before
        assert [h.key for h in pg["notes"].nearest([0.0, 1.0], k=1)] == ["a"]
        assert [m.content for m in pg.conversations().messages("t")][-1] == "x"
        again = pg.import_(tmp_path / "export1")  # everything is there: nothing written
        assert set(again["tables"].values()) <= {0}
        pg.export(tmp_path / "export2")
    with memstore.Store(tmp_path / "b.db") as back:
        back.import_(tmp_path / "export2")
        assert dump(back) == before and back.check() == []
        back.export(tmp_path / "export3")
    for export in ("export2", "export3"):
        for file in sorted((tmp_path / "export1").rglob("*.jsonl")):
            lines = sorted(file.read_text().splitlines())
            other = tmp_path / export / file.relative_to(tmp_path / "export1")
            assert sorted(other.read_text().splitlines()) == lines if other.exists() else not lines
