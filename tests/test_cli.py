"""Every `memstore` command, end to end in a subprocess, on real files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import apsw
import pytest

import memstore
import memstore_cli as memstore_cli_module
import memstore_demo

from .conftest import ROOT, memstore_cli, run_python


def test_every_command_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in memstore_cli_module.cli.commands.items():
        assert f"`memstore {name}" in readme or f"memstore {name} " in readme, name
        for sub in getattr(command, "commands", {}):
            assert f"memstore {name} " in readme and f" {sub}" in readme, sub


def test_cli_reference_is_generated_from_help() -> None:
    reference = memstore_cli_module.reference()
    assert (ROOT / "CLI.md").read_text() == reference, (
        "CLI.md is stale: python -c 'import memstore_cli; "
        'print(memstore_cli.reference(), end="")\' > CLI.md'
    )
    for command in ["cleanup", "collection create", "tenants erase", "checkpoint-wal"]:
        assert f"# `memstore {command}`\n" in reference
    assert "--dry-run" in reference and "Exit codes" in reference


def test_db_comes_from_option_or_environment(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert memstore_cli("--db", str(db), "init").returncode == 0
    assert (
        json.loads(memstore_cli("init", "--json", db=db).stdout)["schema_version"]
        == memstore.SCHEMA_VERSION
    )
    missing = memstore_cli("info")
    assert missing.returncode == 2 and "MEMSTORE_PATH" in missing.stderr


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTORE_PATH", str(tmp_path / "env.db"))
    with memstore.Store.from_env() as store:
        assert store.path == str(tmp_path / "env.db")
    monkeypatch.delenv("MEMSTORE_PATH")
    with pytest.raises(memstore.MemstoreError, match="MEMSTORE_PATH"):
        memstore.Store.from_env()


def test_put_get_query_search_delete(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("events", fields={"kind": str}, fts=["text"])
    assert (
        memstore_cli(
            "put", "events", "e1", '{"kind": "error", "text": "tool timeout"}', db=db
        ).returncode
        == 0
    )
    assert (
        memstore_cli(
            "put", "events", "e2", db=db, stdin='{"kind": "info", "text": "fine"}'
        ).returncode
        == 0
    )
    lines = "\n".join(
        json.dumps({"id": f"b{i}", "kind": "bulk", "text": "bulk timeout"}) for i in range(5)
    )
    bulk = memstore_cli("put", "events", "--key-field", "id", db=db, stdin=lines)
    assert bulk.returncode == 0 and "stored 5 records" in bulk.stdout
    got = memstore_cli("get", "events", "e1", db=db)
    assert json.loads(got.stdout) == {"kind": "error", "text": "tool timeout"}
    missing = memstore_cli("get", "events", "nope", db=db)
    assert missing.returncode == 3 and "nope" in missing.stderr
    rows = [
        json.loads(line)
        for line in memstore_cli(
            "query",
            "events",
            "--where",
            '{"kind": "bulk"}',
            "--order-by",
            "-key",
            "--limit",
            "2",
            db=db,
        ).stdout.splitlines()
    ]
    assert [r["key"] for r in rows] == ["b4", "b3"] and rows[0]["record"]["kind"] == "bulk"
    as_json = json.loads(memstore_cli("query", "events", "--json", db=db).stdout)
    assert len(as_json) == 7
    hits = [
        json.loads(line)
        for line in memstore_cli(
            "search", "events", "timeout", "--where", '{"kind": "error"}', db=db
        ).stdout.splitlines()
    ]
    assert [h["key"] for h in hits] == ["e1"] and "[timeout]" in hits[0]["snippet"]
    bad = memstore_cli("search", "events", '"open', db=db)
    assert bad.returncode == 1 and "cannot search" in bad.stderr
    assert memstore_cli("query", "events", "--where", "{not json", db=db).returncode == 2
    # NDJSON out of query goes back in through put
    again = tmp_path / "b.db"
    dumped = memstore_cli("query", "events", db=db).stdout
    assert memstore_cli("put", "events", "--create", db=again, stdin=dumped).returncode == 0
    assert memstore_cli("collections", "--json", db=again).stdout.strip().endswith("}")
    assert "deleted 2" in memstore_cli("delete", "events", "e1", "e2", db=db).stdout
    assert memstore_cli("delete", "events", "e1", db=db).returncode == 3
    assert (
        "deleted 5" in memstore_cli("delete", "events", "--where", '{"kind": "bulk"}', db=db).stdout
    )
    assert memstore_cli("delete", "events", db=db).returncode == 2
    assert json.loads(memstore_cli("collections", "--json", db=db).stdout) == {"events": 0}


def test_info_stats_collections(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore_demo.build(db)
    info = json.loads(memstore_cli("info", "--json", db=db).stdout)
    assert info["schema_version"] == memstore.SCHEMA_VERSION and info["bytes"] > 0
    assert info["collections"]["tasks"]["records"] == 3 and info["collections"]["tasks"]["history"]
    assert info["layers"]["memstore_events"] > 40 and "wal_bytes" in info
    assert memstore_cli("stats", db=db).stdout.startswith(str(db))
    assert "tasks\t3" in memstore_cli("collections", db=db).stdout


def test_check_repair_cleanup_and_maintenance(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore_demo.build(db)
    assert memstore_cli("check", db=db).stdout.strip() == "ok"
    conn = sqlite3.connect(db)  # damage it the way other tools could
    with conn:
        conn.execute('DROP TRIGGER "tasks__fts_update"')
        conn.execute(
            "UPDATE tasks SET body = json_set(body, '$.title', 'drifted') WHERE key = 't-1'"
        )
        conn.execute("DELETE FROM memstore_nodes WHERE id = 'lyon'")  # foreign keys off here
        conn.execute("UPDATE notes SET expires_at = '2000-01-01T00:00:00.000000Z'")
    conn.close()
    broken = memstore_cli("check", "--json", db=db)
    assert broken.returncode == 1
    problems = json.loads(broken.stdout)["problems"]
    assert any("tasks__fts_update" in p for p in problems)
    assert any("dangling edge" in p for p in problems)
    assert not any("notes" in p for p in problems)  # expired records wait for cleanup
    repaired = memstore_cli("repair", db=db)
    assert "rebuilt the full-text index" in repaired.stdout
    assert repaired.returncode == 1  # the dangling edges are left to the user
    cleaned = json.loads(memstore_cli("cleanup", "--json", db=db).stdout)["removed"]
    assert cleaned["collection notes"] == len(memstore_demo.NOTES) + 3  # and a lesson per task
    assert "cache llm" in cleaned
    with memstore.Store(db) as store:
        for edge in store.graph("facts").edges(target="lyon"):
            store.graph("facts").delete_edge(edge.source, edge.target, edge.relation)
    assert memstore_cli("check", "--full", db=db).returncode == 0
    aged = json.loads(memstore_cli("cleanup", "--keep-last", "1", "--json", db=db).stdout)
    aged = aged["removed"]
    assert aged["collection tasks"] == 2 and aged["event log trip-planner"] > 0
    assert aged["checkpoints"] > 0
    assert memstore_cli("vacuum", db=db).returncode == 0
    assert "full-text indexes" in memstore_cli("optimize", db=db).stdout
    wal = json.loads(memstore_cli("checkpoint-wal", "--json", db=db).stdout)
    assert wal["busy"] is False
    assert memstore_cli("check", db=db).returncode == 0


def test_export_command(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore_demo.build(db)
    result = memstore_cli("export", str(tmp_path / "out"), "--collection", "tasks", "--json", db=db)
    manifest = json.loads(result.stdout)
    assert list(manifest["collections"]) == ["tasks"] and manifest["tables"] == {}
    lines = (tmp_path / "out" / "collections" / "tasks.jsonl").read_text().splitlines()
    assert {json.loads(line)["key"] for line in lines} == {"t-1", "t-2", "t-3"}


def test_migrate_backs_up_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_sql = tmp_path / "sql"
    old_sql.mkdir()
    for _version, path in memstore._migrations()[:-1]:  # a file from the memstore before
        (old_sql / path.name).write_text(path.read_text())
    monkeypatch.setattr(memstore, "SQL_DIR", old_sql)
    monkeypatch.setattr(memstore, "SCHEMA_VERSION", memstore.SCHEMA_VERSION - 1)
    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    memstore._migrate(memstore._SQLite(), conn)  # the schema as the memstore before left it
    conn.execute("INSERT INTO memstore_logs (name, last_seq) VALUES ('log', 1)")
    conn.execute(
        "INSERT INTO memstore_events (log, seq, event_id, kind, at, payload) "
        "VALUES ('log', 1, 'e1', 'k', '2026-01-01T00:00:00.000000Z', '{}')"
    )
    old = conn.execute("PRAGMA user_version").fetchall()[0][0]
    conn.close()
    monkeypatch.undo()
    done = json.loads(memstore_cli("migrate", "--json", db=db).stdout)
    assert done["from"] == old and done["to"] == memstore.SCHEMA_VERSION
    backup = Path(done["backup"])
    assert (
        backup.exists()
        and sqlite3.connect(backup).execute("PRAGMA user_version").fetchone()[0] == old
    )
    with memstore.Store(db) as store:
        assert store.event_log("log").get("e1").kind == "k"
        assert store.check() == []
    again = json.loads(memstore_cli("migrate", "--json", db=db).stdout)
    assert again == {"from": memstore.SCHEMA_VERSION, "to": memstore.SCHEMA_VERSION, "backup": None}
    assert memstore_cli("migrate", db=tmp_path / "missing.db").returncode == 3


def test_tenants_commands(tmp_path: Path) -> None:
    root = str(tmp_path / "tenants")
    assert memstore_cli("tenants", "--dir", root, "create", "acme").returncode == 0
    assert memstore_cli("tenants", "--dir", root, "create", "globex").returncode == 0
    assert memstore_cli("tenants", "--dir", root, "create", "../escape").returncode == 1
    assert json.loads(memstore_cli("tenants", "--dir", root, "list", "--json").stdout) == [
        "acme",
        "globex",
    ]
    with memstore.Tenants(root) as tenants:
        tenants.open("acme").collection("notes").put("a", {"v": 1})
    with memstore.Tenants(root) as tenants:
        assert set(tenants.stats()) == {"acme", "globex"} and tenants._stores == {}
    stats = json.loads(memstore_cli("tenants", "--dir", root, "stats", "--json").stdout)
    assert stats["acme"]["records"] == 1 and stats["globex"]["records"] == 0
    assert memstore_cli("tenants", "--dir", root, "erase", "acme").returncode == 0
    assert not (tmp_path / "tenants" / "acme.db").exists()
    assert memstore_cli("tenants", "--dir", root, "erase", "acme").returncode == 3
    assert memstore_cli("tenants", "--dir", root, "list").stdout.split() == ["globex"]


def test_db_before_or_after_the_command(tmp_path: Path) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert memstore_cli("--db", str(first), "init").returncode == 0
    assert memstore_cli("init", "--db", str(second)).returncode == 0
    assert first.exists() and second.exists()
    # After the command wins over before it, and over MEMSTORE_PATH.
    memstore_cli("--db", str(first), "put", "notes", "a", "{}", "--create", "--db", str(second))
    memstore_cli("put", "notes", "b", "{}", "--db", str(second), db=first)
    with memstore.Store(second) as store:
        assert sorted(store.collection("notes").keys()) == ["a", "b"]
    with memstore.Store(first) as store:
        assert "notes" not in store
    shown = memstore_cli("collection", "show", "notes", "--db", str(second), "--json")
    assert json.loads(shown.stdout)["records"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["cleanup", "--older-than", "7"],  # a bare number: seven seconds? days? refused
        ["cleanup", "--older-than", "7 days"],
        ["cleanup", "--older-than", "0s"],
        ["cleanup", "--older-than", "99999999d"],
        ["cleanup", "--keep-last", "-1"],
        ["cleanup", "--by", "accessed"],
        ["put", "notes", "k", "{}", "--ttl", "30"],
        ["collection", "create", "events", "--ttl", "1"],
        ["collection", "create", "events", "--field", "kind:datetime"],
        ["query", "notes", "--where", "{not json"],
        ["query", "notes", "--where", "[1, 2]"],
        ["query", "notes", "--limit", "-5"],
        ["search", "notes", "x", "--where", "nope"],
        ["delete", "notes"],
        ["put", "notes", "k", "{broken"],
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("notes").put("keep", {"v": 1})
    result = memstore_cli(*args, db=db)
    assert result.returncode == 2, result
    assert "Error" in result.stderr and "Traceback" not in result.stderr
    with memstore.Store(db) as store:
        assert store.collection("notes").get("keep") == {"v": 1}
        assert "events" not in store


def test_durations_take_a_unit(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert (
        memstore_cli("put", "notes", "k", "{}", "--ttl", "1.5h", "--create", db=db).returncode == 0
    )
    with memstore.Store(db) as store:
        row = next(store.collection("notes").rows())
        assert row.expires_at is not None and row.expires_at > row.created_at
    for text in ["30s", "15m", "12h", "7d", "2w"]:
        assert memstore_cli("cleanup", "--older-than", text, db=db).returncode == 0, text


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ('{"id": "x"}\n', "give --key-field"),
        ("not json\n", "line 1 is not valid JSON"),
        ('{"key": "a", "record": {}}\n[1]\n', "line 2"),
    ],
)
def test_put_from_stdin_explains_bad_lines(tmp_path: Path, stdin: str, message: str) -> None:
    db = tmp_path / "a.db"
    result = memstore_cli("put", "events", "--create", db=db, stdin=stdin)
    assert result.returncode == 2 and message in result.stderr, result
    with memstore.Store(db) as store:  # all or nothing
        assert "events" not in store or store.collection("events").count() == 0
    missing = memstore_cli(
        "put", "events", "--create", "--key-field", "id", db=db, stdin='{"other": 1}\n'
    )
    assert missing.returncode == 2 and "no 'id' field" in missing.stderr


def test_collection_create_then_put_then_search(tmp_path: Path) -> None:
    """The README's sequence: declare, put, search, all from the shell."""
    db = tmp_path / "a.db"
    created = memstore_cli(
        "collection",
        "create",
        "events",
        "--field",
        "event_type:str",
        "--field",
        "duration:float",
        "--fts",
        "text",
        "--ttl",
        "30d",
        "--history",
        db=db,
    )
    assert created.returncode == 0, created.stderr
    assert "created collection events" in created.stdout
    assert "event_type (text), duration (real)" in created.stdout
    assert "time to live: 30d" in created.stdout
    indexed = memstore_cli(
        "collection",
        "create",
        "events",
        "--index",
        "event_type,-created_at",
        "--unique",
        "duration,key",
        db=db,
    )
    assert "indexes: event_type, -created_at; unique duration, key" in indexed.stdout
    bad = memstore_cli("collection", "create", "events", "--index", "nope", db=db)
    assert bad.returncode == 1 and "not a declared field" in bad.stderr
    record = '{"event_type": "error", "duration": 2.5, "text": "tool timeout"}'
    assert memstore_cli("put", "events", "e1", record, db=db).stdout == "stored e1\n"
    hits = [
        json.loads(line)
        for line in memstore_cli("search", "events", "timeout", db=db).stdout.splitlines()
    ]
    assert [h["key"] for h in hits] == ["e1"]
    wrong_type = memstore_cli("put", "events", "e2", '{"duration": "slow"}', db=db)
    assert wrong_type.returncode == 1 and "duration" in wrong_type.stderr
    again = memstore_cli("collection", "create", "events", "--fts", "note", "--json", db=db)
    data = json.loads(again.stdout)
    assert data["created"] is False and data["fts"] == ["text", "note"]
    assert data["ttl_seconds"] == 30 * 86400 and data["history"] is True
    changed = memstore_cli("collection", "create", "events", "--field", "duration:int", db=db)
    assert changed.returncode == 1 and "declared real" in changed.stderr
    with memstore.Store(db) as store:
        events = store.collection("events")
        assert events.fields == {"event_type": "text", "duration": "real"}
        assert events.query(where={"event_type": "error"})[0]["text"] == "tool timeout"
    assert memstore_cli("collection", "show", "nope", db=db).returncode == 3
    assert memstore_cli("collection", "drop", "events", db=db, stdin="n\n").returncode == 1
    dropped = memstore_cli("collection", "drop", "events", "--yes", db=db)
    assert dropped.stdout == "dropped events (1 record)\n"
    assert memstore_cli("collections", "--json", db=db).stdout.strip() == "{}"


def test_cleanup_dry_run_counts_exactly_and_removes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore_demo.build(db)
    with memstore.Store(db) as store:
        before = store.stats()
    dry = json.loads(
        memstore_cli("cleanup", "--keep-last", "2", "--dry-run", "--json", db=db).stdout
    )
    assert dry["dry_run"] is True and dry["total"] > 0
    with memstore.Store(db) as store:
        assert store.stats()["layers"] == before["layers"]
        assert store.stats()["collections"] == before["collections"]
    text = memstore_cli("cleanup", "--keep-last", "2", "--dry-run", db=db).stdout
    assert "would be removed" in text
    done = json.loads(memstore_cli("cleanup", "--keep-last", "2", "--json", db=db).stdout)
    assert done["dry_run"] is False and done["removed"] == dry["removed"]
    with memstore.Store(db) as store:
        assert store.collection("tasks").count() == 2


def test_counts_read_as_english(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    one = memstore_cli("put", "notes", "--create", db=db, stdin='{"key": "a", "record": {}}\n')
    assert one.stdout == "stored 1 record\n"
    assert memstore_cli("delete", "notes", "a", db=db).stdout == "deleted 1 record\n"
    two = memstore_cli(
        "put", "notes", db=db, stdin='{"key": "a", "record": {}}\n{"key": "b", "record": {}}\n'
    )
    assert two.stdout == "stored 2 records\n"
    info = memstore_cli("info", db=db).stdout
    assert "notes: 2 records" in info and "1 records" not in info


@pytest.mark.parametrize("command", [["migrate"], ["info"], ["check"], ["init"]])
def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    junk = tmp_path / "notadb.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = memstore_cli("--db", str(junk), *command)
    assert result.returncode == 1, result
    assert f"{junk} is not a SQLite database" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert junk.read_bytes() == b"this is not a database" * 100


def test_restore_errors_are_sentences(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    memstore.Store(db).close()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.commit()
    result = memstore_cli("restore", str(other), db=db)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"Error: {other} is not a sound memstore backup: it is not a memstore file."
    )


def test_maintenance_is_public_api(tmp_path: Path) -> None:
    """What the command does, Python can do too, with the same results."""
    db = tmp_path / "demo.db"
    memstore_demo.build(db)
    with memstore.Store(db) as store:
        stats = store.stats()
        assert stats["collections"]["tasks"]["records"] == 3
        assert stats["layers"]["memstore_events"] > 40 and stats["free_bytes"] >= 0
        assert store.optimize()["fts_indexes"] == 6  # 3 collections, events, messages, graphs
        store.collection("notes").delete_where({})
        sizes = store.vacuum()
        assert sizes["after"] <= sizes["before"]
        assert store.checkpoint_wal() == {"busy": False, "wal_pages": 0, "checkpointed": 0}
        with pytest.raises(memstore.ValidationError):
            store.checkpoint_wal("hard")  # type: ignore[arg-type]
        with pytest.raises(memstore.MemstoreError), store.transaction():
            store.vacuum()
    info = json.loads(memstore_cli("info", "--json", db=db).stdout)
    assert info["collections"]["notes"]["records"] == 0


def test_import_memstore_does_not_load_the_plugins_or_click() -> None:
    result = run_python(
        "import sys, memstore; "
        "print(sorted(m for m in sys.modules if m.startswith(('click', 'memstore_', 'datasette'))))"
    )
    assert result.stdout.strip() == "[]", result.stderr
    # Nor what only a few calls need: imported when they first run.
    deferred = ("hashlib", "base64", "zlib", "dataclasses", "secrets", "random", "asyncio", "queue")
    result = run_python(
        f"import sys, memstore; print([m for m in {deferred!r} if m in sys.modules])"
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_commands_that_read_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    memstore.Store(db).close()
    for args in (
        ["get", "nope", "k"],
        ["query", "nope"],
        ["search", "nope", "x"],
        ["delete", "nope", "k"],
        ["collection", "show", "nope"],
        ["collection", "drop", "nope", "--yes"],
    ):
        result = memstore_cli(*args, db=db)
        assert result.returncode == 3 and "no collection named 'nope'" in result.stderr, args
    with memstore.Store(db) as store:
        assert store.collections() == []


def test_check_passes_with_records_waiting_for_cleanup(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("notes", ttl=60).put("a", {})
        store.connection.execute("UPDATE notes SET expires_at = '2000-01-01T00:00:00Z'")
    assert memstore_cli("check", db=db).stdout == "ok\n"
    info = json.loads(memstore_cli("info", "--json", db=db).stdout)
    assert info["collections"]["notes"]["expired"] == 1


READ_COMMANDS = [
    ["info"],
    ["stats"],
    ["collections"],
    ["query", "notes"],
    ["search", "notes", "x"],
    ["get", "notes", "k"],
    ["delete", "notes", "k"],
    ["check"],
    ["repair"],
    ["export", "out"],
    ["backup", "copy.db"],
    ["cleanup"],
    ["vacuum"],
    ["optimize"],
    ["checkpoint-wal"],
    ["migrate"],
    ["collection", "show", "notes"],
    ["collection", "drop", "notes", "--yes"],
    ["put", "notes", "k", "{}"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_mistyped_path_is_an_error_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "typo.db"
    result = memstore_cli(*[a if "." not in a else str(tmp_path / a) for a in args], db=typo)
    assert result.returncode == 3, result
    assert f"no store at {typo}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["init"],
        ["put", "notes", "k", "{}", "--create"],
        ["collection", "create", "notes"],
    ],
)
def test_commands_that_write_create_the_file(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "new.db"
    assert memstore_cli(*args, db=db).returncode == 0
    assert db.exists()


def test_put_needs_create_for_a_new_collection(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("notes")
    typo = memstore_cli("put", "nosuch", "k1", '{"a": 1}', db=db)
    assert typo.returncode == 3
    assert "no collection named 'nosuch'; there are notes" in typo.stderr
    with memstore.Store(db) as store:
        assert store.collections() == ["notes"]
    assert memstore_cli("put", "notes", "k1", '{"a": 1}', db=db).returncode == 0
    made = memstore_cli("put", "fresh", "k1", '{"a": 1}', "--create", db=db)
    assert made.returncode == 0
    with memstore.Store(db) as store:
        assert store.collections() == ["fresh", "notes"]


@pytest.mark.parametrize("path", ["/etc/passwd", "/nonexistent/dir/x.db"])
def test_driver_errors_name_the_path_and_say_what_to_do(path: str) -> None:
    result = memstore_cli("init", db=path)
    assert result.returncode == 1 and path in result.stderr, result
    assert "NotADBError" not in result.stderr and "CantOpenError" not in result.stderr
    assert ("not a SQLite database" in result.stderr) or ("does not exist" in result.stderr)


def test_the_search_output_has_a_higher_is_better_score(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        notes = store.collection("notes", fts=["text"])
        notes.put("a", {"text": "ramen ramen ramen"})
        notes.put("b", {"text": "ramen and a long text about other things entirely"})
    found = memstore_cli("search", "notes", "ramen", db=db).stdout
    hits = [json.loads(line) for line in found.splitlines()]
    assert [h["key"] for h in hits] == ["a", "b"]
    assert hits[0]["score"] > hits[1]["score"] > 0
    assert all(h["score"] == -h["rank"] for h in hits)


@pytest.mark.parametrize("port", ["0", "99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    db = tmp_path / "a.db"
    memstore.Store(db).close()
    result = memstore_cli("browse", str(db), "--port", port)
    assert result.returncode == 2 and "--port" in result.stderr, result
    assert "datasette" not in result.stderr.lower()


def test_a_field_no_record_has_is_a_one_line_warning(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with memstore.Store(db) as store:
        store.collection("notes").put("a", {"topic": "food"})
    result = memstore_cli("query", "notes", "--where", '{"topci": "food"}', db=db)
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == (
        "Warning: no record of 'notes' has 'topci' (a typo?); declared fields: none\n"
    )
