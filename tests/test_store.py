"""Opening a store: pragmas, schema migrations, refusing files it must not touch."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import memstore


def pragma(store: memstore.Store, name: str) -> object:
    return store.connection.execute(f"PRAGMA {name}").fetchall()[0][0]


def test_file_store_pragmas(file_store: memstore.Store) -> None:
    assert pragma(file_store, "journal_mode") == "wal"
    assert pragma(file_store, "synchronous") == 1  # NORMAL
    assert pragma(file_store, "busy_timeout") == 5000
    assert pragma(file_store, "foreign_keys") == 1
    assert pragma(file_store, "application_id") == memstore.APPLICATION_ID
    assert pragma(file_store, "user_version") == memstore.SCHEMA_VERSION
    assert file_store.schema_version == memstore.SCHEMA_VERSION


def test_synchronous_full_and_timeout_options(db_path: Path) -> None:
    with memstore.Store(db_path, synchronous="full", timeout=0.25) as store:
        assert pragma(store, "synchronous") == 2
        assert pragma(store, "busy_timeout") == 250


@pytest.mark.parametrize("options", [{"synchronous": "off"}, {"timeout": -1}, {"timeout": "5"}])
def test_bad_options_are_refused(db_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(memstore.ValidationError):
        memstore.Store(db_path, **options)  # type: ignore[arg-type]


def test_settings_are_per_connection_not_process_global(db_path: Path, tmp_path: Path) -> None:
    import apsw

    with memstore.Store(db_path):
        other = apsw.Connection(str(tmp_path / "other.db"))
        assert other.execute("PRAGMA busy_timeout").fetchall()[0][0] == 0
        other.close()


def test_memory_store_works(store: memstore.Store) -> None:
    notes = store.collection("notes")
    notes.put("a", {"x": 1})
    assert notes.get("a") == {"x": 1}


def test_reopen_keeps_data_and_version(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.collection("notes").put("a", {"x": 1})
    with memstore.Store(db_path) as store:
        assert store.collection("notes").get("a") == {"x": 1}
        assert store.collections() == ["notes"]


def test_newer_schema_is_refused(db_path: Path) -> None:
    memstore.Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {memstore.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(memstore.SchemaError, match="newer memstore"):
        memstore.Store(db_path)


def test_other_applications_file_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE theirs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(memstore.SchemaError, match="not a memstore file"):
        memstore.Store(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_schema")] == ["theirs"]


def test_plain_sqlite_file_is_adopted(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with memstore.Store(db_path) as store:
        assert pragma(store, "application_id") == memstore.APPLICATION_ID
        with pytest.raises(memstore.SchemaError, match="not a collection"):
            store.collection("mine")


def test_failed_migration_leaves_file_untouched(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memstore.Store(db_path).close()
    sql_dir = tmp_path / "sql"
    shutil.copytree(memstore.SQL_DIR, sql_dir)
    (sql_dir / f"{memstore.SCHEMA_VERSION + 1:04d}_broken.sql").write_text(
        "CREATE TABLE _memstore_half_done (x);\nTHIS IS NOT SQL;\n"
    )
    monkeypatch.setattr(memstore, "SQL_DIR", sql_dir)
    with pytest.raises(memstore.MemstoreError):
        memstore.Store(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == memstore.SCHEMA_VERSION
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema")]
    assert "_memstore_half_done" not in names


def test_migration_files_are_numbered_from_one() -> None:
    versions = [v for v, _ in memstore._migrations()]
    assert versions == list(range(1, memstore.SCHEMA_VERSION + 1))


def test_close_twice_and_use_after_close(db_path: Path) -> None:
    store = memstore.Store(db_path)
    notes = store.collection("notes")
    store.close()
    store.close()
    with pytest.raises(memstore.MemstoreError, match="closed"):
        notes.get("a")


def test_many_stores_on_one_file(db_path: Path) -> None:
    stores = [memstore.Store(db_path) for _ in range(4)]
    for i, store in enumerate(stores):
        store.collection("notes").put(f"k{i}", {"i": i})
    assert stores[0].collection("notes").count() == 4
    for store in stores:
        store.close()


@pytest.mark.parametrize(
    "pragmas",
    [
        ["PRAGMA application_id = 1234"],
        ["PRAGMA user_version = 5"],
        [f"PRAGMA application_id = {memstore.APPLICATION_ID}", "PRAGMA user_version = 999"],
    ],
    ids=["other application", "versioned by another tool", "newer memstore"],
)
def test_a_refused_file_is_left_byte_for_byte(db_path: Path, pragmas: list[str]) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE theirs (x)")
    conn.execute("INSERT INTO theirs VALUES (1)")
    for pragma_sql in pragmas:
        conn.execute(pragma_sql)
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(memstore.SchemaError):
        memstore.Store(db_path)
    assert db_path.read_bytes() == before  # still in rollback-journal mode, nothing added
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]


def test_not_a_database_is_a_schema_error(db_path: Path) -> None:
    db_path.write_bytes(b"plain text, not SQLite" * 200)
    before = db_path.read_bytes()
    with pytest.raises(memstore.SchemaError, match="is not a SQLite database"):
        memstore.Store(db_path)
    assert db_path.read_bytes() == before


def test_create_false_opens_only_an_existing_file(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    with pytest.raises(memstore.NotFoundError, match=f"no store at {typo}"):
        memstore.Store(typo, create=False)
    assert list(tmp_path.iterdir()) == []
    memstore.Store(typo).close()
    with memstore.Store(typo, create=False) as store:
        assert store.schema_version == memstore.SCHEMA_VERSION


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: d / "missing" / "x.db",
            "the directory .*missing does not exist; create it first",
        ),
        (lambda d: d, "it is a directory"),
    ],
)
def test_open_errors_name_the_path_and_say_what_to_do(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(memstore.MemstoreError, match=message) as caught:
        memstore.Store(path)
    assert str(path) in str(caught.value) and "CantOpenError" not in str(caught.value)


def test_a_file_that_is_not_sqlite_names_itself(tmp_path: Path) -> None:
    junk = tmp_path / "passwd"
    junk.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    before = junk.read_bytes()
    with pytest.raises(memstore.SchemaError, match=f"{junk} is not a SQLite database"):
        memstore.Store(junk)
    assert junk.read_bytes() == before


def test_optimize_merges_the_full_text_indexes_and_keeps_everything(store: memstore.Store) -> None:
    notes = store.collection("notes", fields={"kind": str}, fts=["text"])
    notes.put_many([(f"n{i}", {"kind": "a", "text": f"word{i} common"}) for i in range(300)])
    conv = store.conversations()
    conv.create_thread("t")
    conv.add_message("t", "user", "a common message")
    done = store.optimize()
    assert done["fts_indexes"] >= 2  # the collection's, and the messages' at least
    assert len(notes.search("common", limit=500)) == 300 and notes.count({"kind": "a"}) == 300
    assert [h.key for h in conv.search("message")] == ["t"] and store.check() == []


@pytest.mark.parametrize("bad", [None, 5, b"agent.db", "", "a\x00b"])
def test_what_is_no_path_is_refused_wherever_a_path_is_taken(tmp_path: Path, bad: object) -> None:
    """Every public call taking a path or a directory: a ValidationError for what is no
    path (they raised TypeError; an empty string opened SQLite's nameless temporary
    database, or meant the current directory), and nothing written."""
    with memstore.Store(tmp_path / "a.db") as store:
        store.collection("notes").put("a", {})
        calls = {
            "Store": lambda: memstore.Store(bad),  # type: ignore[arg-type]
            "StorePool": lambda: memstore.StorePool(bad),  # type: ignore[arg-type]
            "AsyncStore": lambda: memstore.AsyncStore(bad),  # type: ignore[arg-type]
            "Tenants": lambda: memstore.Tenants(bad),  # type: ignore[arg-type]
            "copy": lambda: memstore.copy(bad, tmp_path / "b.db"),  # type: ignore[arg-type]
            "copy to": lambda: memstore.copy(tmp_path / "a.db", bad),  # type: ignore[arg-type]
            "migrate": lambda: memstore.migrate(bad),  # type: ignore[arg-type]
            "backup": lambda: store.backup(bad),  # type: ignore[arg-type]
            "restore": lambda: store.restore(bad),  # type: ignore[arg-type]
            "export": lambda: store.export(bad),  # type: ignore[arg-type]
            "import_": lambda: store.import_(bad),  # type: ignore[arg-type]
        }
        for name, call in calls.items():
            with pytest.raises(memstore.ValidationError):
                call()
            assert store.collection("notes").keys() == ["a"], name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db"]
