"""Every `memstore` command, end to end in a subprocess, on real files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import apsw
import pytest

import memstore

from .conftest import memstore_cli


def test_every_command_is_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    cli = memstore._cli()
    for name, command in cli.commands.items():
        assert f"`memstore {name}" in readme or f"memstore {name} " in readme, name
        if hasattr(command, "commands"):
            for sub in command.commands:
                assert f"memstore tenants --dir DIR {sub}" in readme, sub


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
    assert memstore_cli("query", "events", "--where", "{not json", db=db).returncode == 1
    # NDJSON out of query goes back in through put
    again = tmp_path / "b.db"
    dumped = memstore_cli("query", "events", db=db).stdout
    assert memstore_cli("put", "events", db=again, stdin=dumped).returncode == 0
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
    memstore.build_demo(db)
    info = json.loads(memstore_cli("info", "--json", db=db).stdout)
    assert info["schema_version"] == memstore.SCHEMA_VERSION and info["bytes"] > 0
    assert info["collections"]["tasks"]["records"] == 3 and info["collections"]["tasks"]["history"]
    assert info["layers"]["memstore_events"] > 40 and "wal_bytes" in info
    assert memstore_cli("stats", db=db).stdout.startswith(str(db))
    assert "tasks\t3" in memstore_cli("collections", db=db).stdout


def test_check_repair_cleanup_and_maintenance(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore.build_demo(db)
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
    assert any("past their TTL" in p for p in problems)
    repaired = memstore_cli("repair", db=db)
    assert "rebuilt the full-text index" in repaired.stdout
    assert repaired.returncode == 1  # the dangling edges and expired notes are left to the user
    cleaned = json.loads(memstore_cli("cleanup", "--json", db=db).stdout)
    assert cleaned["collection notes"] == 3 and "cache llm" in cleaned
    with memstore.Store(db) as store:
        for edge in store.graph("facts").edges(target="lyon"):
            store.graph("facts").delete_edge(edge.source, edge.target, edge.relation)
    assert memstore_cli("check", "--full", db=db).returncode == 0
    aged = json.loads(memstore_cli("cleanup", "--keep-last", "1", "--json", db=db).stdout)
    assert aged["collection tasks"] == 2 and aged["event log trip-planner"] > 0
    assert memstore_cli("vacuum", db=db).returncode == 0
    assert "full-text indexes" in memstore_cli("optimize", db=db).stdout
    wal = json.loads(memstore_cli("checkpoint-wal", "--json", db=db).stdout)
    assert wal["busy"] is False
    assert memstore_cli("check", db=db).returncode == 0


def test_export_command(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    memstore.build_demo(db)
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
    memstore._migrate(conn)  # the schema as the memstore before left it, with data
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
    assert memstore_cli("migrate", db=tmp_path / "missing.db").returncode == 2


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
