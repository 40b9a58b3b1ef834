"""The two migration chains (sql/ for SQLite, sql/postgres/ for PostgreSQL) end at the same
version and make the same tables, columns, indexes and triggers for what both engines have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import memstore

from .dbinfo import columns, indexes, sql, tables, triggers

#: SQLite's tables PostgreSQL does not have yet: the memory layers (see README, "PostgreSQL").
NOT_ON_POSTGRES_YET = {
    "memstore_events_fts",  # PostgreSQL's words are a column of memstore_events
    # PostgreSQL's words are a column of memstore_messages, and none wait for an index:
    *("memstore_messages_fts", "memstore_messages_fts_gone", "memstore_fts_progress"),
    "memstore_graph_fts",  # PostgreSQL's words are a column of memstore_graph_text
}
#: An FTS5 index's own tables, made by SQLite with it.
FTS5_SHADOWS = re.compile(r"_fts_(data|idx|docsize|config|content)$")


def test_both_chains_end_at_the_schema_version() -> None:
    lite = memstore._migrations()
    postgres = memstore._migrations(memstore.SQL_DIR / "postgres")
    assert lite[-1][0] == postgres[-1][0] == memstore.SCHEMA_VERSION
    assert lite[0][0] == 1 and postgres[0][0] <= memstore.SCHEMA_VERSION


def test_a_new_database_is_at_the_schema_version(pg_url: str, tmp_path: Path) -> None:
    with memstore.Store(pg_url) as pg, memstore.Store(tmp_path / "a.db") as lite:
        assert pg.schema_version == lite.schema_version == memstore.SCHEMA_VERSION
        registry = ("_memstore_collections",)
        for table in registry:  # SQLite's INTEGER flags are PostgreSQL's booleans
            lite_columns = {
                k: v.replace("INTEGER", "BOOLEAN") for k, v in columns(lite, table).items()
            }
            assert list(columns(pg, table)) == list(lite_columns)
        on_lite = {t for t in tables(lite) if not FTS5_SHADOWS.search(t) and t[:7] != "sqlite_"}
        assert on_lite - tables(pg) == NOT_ON_POSTGRES_YET


@pytest.mark.parametrize(
    "declaration",
    [
        {},
        {"fields": {"kind": str, "n": int, "x": float, "ok": bool, "a.b": str}},
        {"fields": {"kind": str, "at": str}, "indexes": [("kind", "-at")], "ttl": 60},
        {"fields": {"kind": str}, "fts": ["summary", "payload.text"], "time_indexes": False},
        {"indexes": [{"fields": ["key", "created_at"], "unique": True}]},
    ],
)
def test_a_collection_is_the_same_table_on_both(
    pg_url: str, tmp_path: Path, declaration: dict[str, object]
) -> None:
    with memstore.Store(pg_url) as pg, memstore.Store(tmp_path / "a.db") as lite:
        for store in (pg, lite):
            store.collection("notes", **declaration)  # type: ignore[arg-type]
        on_pg, on_lite = columns(pg, "notes"), columns(lite, "notes")
        if declaration.get("fts"):  # the words: FTS5's own table, or a column of the row
            assert on_pg.pop("fts_document") == "TSVECTOR"
            assert "notes_fts" in tables(lite)
            # FTS5 reads the searched fields from columns; the tsvector from the JSON.
            for path in declaration["fts"]:  # type: ignore[attr-defined]
                assert on_lite.pop(memstore.field_column(path)) == "TEXT"
        assert on_pg == on_lite
        made_by_fts = {"notes__fts_idx"}
        assert indexes(pg, "notes") - made_by_fts == indexes(lite, "notes")
        fts_triggers = {f"notes__fts_{event}" for event in ("insert", "delete", "update")}
        assert triggers(pg, "notes") == triggers(lite, "notes") - fts_triggers
        assert sql(pg, "SELECT name, fields, fts, indexes FROM _memstore_collections") == sql(
            lite, "SELECT name, fields, fts, indexes FROM _memstore_collections"
        )
        assert pg.check() == [] and lite.check() == []
