"""What a store's database holds, asked as its engine answers: for tests that look at the
schema (tables, columns, indexes, query plans) or write rows as another tool would."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import memstore

#: PostgreSQL's column types under the names SQLite gives the same fields.
SQLITE_TYPES = {"BIGINT": "INTEGER", "DOUBLE PRECISION": "REAL", "BOOLEAN": "INTEGER"}


def on_postgres(store: memstore.Store) -> bool:
    return store._engine.name == "postgresql"


def sql(store: memstore.Store, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Run a statement as another tool would (``?`` placeholders on either engine); errors
    come as memstore's, the driver's as their cause."""
    return [tuple(row) for row in store._fetch(statement, params)]


def other_tool(url: str, statement: str, params: Any = ()) -> None:
    """Run a statement on its own connection of the engine's ordinary driver, as another
    tool would: Python's sqlite3 for a file (in a process of its own: two SQLite
    libraries in one process do not see each other's locks), psycopg for PostgreSQL;
    committed. Its errors are raised as the driver's (psycopg), or as RuntimeError."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement.replace("%", "%%").replace("?", "%s"), params)
        return
    from .conftest import run_python

    ran = run_python(
        "import json, sqlite3, sys\n"
        "params = [bytes.fromhex(p['hex']) if isinstance(p, dict) else p\n"
        "          for p in json.loads(sys.argv[3])]\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "with conn:\n"
        "    conn.execute(sys.argv[2], params)\n"
        "conn.close()\n",
        url,
        statement,
        json.dumps([{"hex": p.hex()} if isinstance(p, bytes) else p for p in params]),
    )
    if ran.returncode != 0:
        raise RuntimeError(ran.stderr)


def columns(store: memstore.Store, table: str) -> dict[str, str]:
    """A table's columns in order, with SQLite's names for their types."""
    if not on_postgres(store):
        return {row[1]: row[2] for row in sql(store, f'PRAGMA table_xinfo("{table}")')}
    rows = sql(
        store,
        "SELECT column_name, upper(data_type) FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
    return {name: SQLITE_TYPES.get(kind, kind) for name, kind in rows}


def indexes(store: memstore.Store, table: str) -> set[str]:
    """The indexes memstore made on a table (not those of its primary key and UNIQUE)."""
    if on_postgres(store):
        found = sql(
            store,
            "SELECT i.relname FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = to_regclass(quote_ident(?)) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = x.indexrelid)",
            (table,),
        )
    else:
        found = sql(
            store,
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )
    return {row[0] for row in found}


def triggers(store: memstore.Store, table: str) -> set[str]:
    if on_postgres(store):
        found = sql(
            store,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(quote_ident(?)) "
            "AND NOT tgisinternal",
            (table,),
        )
    else:
        found = sql(
            store,
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?",
            (table,),
        )
    return {row[0] for row in found}


def tables(store: memstore.Store) -> set[str]:
    if on_postgres(store):
        found = sql(
            store,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        )
    else:
        found = sql(store, "SELECT name FROM sqlite_schema WHERE type = 'table'")
    return {row[0] for row in found}


def plan(store: memstore.Store, statement: str, params: Any = ()) -> str:
    """The query plan, one line per step. PostgreSQL is told to avoid sequential scans, so
    that a test's few rows show which index it would use on many."""
    if not on_postgres(store):
        return " | ".join(
            str(row[-1]) for row in sql(store, "EXPLAIN QUERY PLAN " + statement, params)
        )
    with store.transaction():
        sql(store, "SET LOCAL enable_seqscan = off")
        return " | ".join(str(row[0]) for row in sql(store, "EXPLAIN " + statement, params))


def uses_index(found: str, index: str) -> bool:
    """Whether a plan (from ``plan``) reads this index, on either engine."""
    return f"INDEX {index}" in found or f"on {index}" in found or f"using {index}" in found.lower()


def sorts(found: str) -> bool:
    """Whether a plan sorts the rows rather than reading them in order from an index."""
    return "TEMP B-TREE" in found or "Sort" in found


def requests(store: memstore.Store, work: Any) -> int:
    """What ``work()`` asks of the database: statements run on SQLite (apsw's exec trace),
    round trips to the server on PostgreSQL (the Sync messages of libpq's trace)."""
    if not on_postgres(store):
        return statements(store, work)
    return sum(fields[2:4] == ["4", "Sync"] for fields in _messages(store, work))


def statements(store: memstore.Store, work: Any) -> int:
    """The statements ``work()`` runs: apsw's exec trace on SQLite; on PostgreSQL the
    statements sent (libpq's trace of Bind and simple Query messages), BEGIN and COMMIT
    included, whatever the round trips."""
    conn = store.connection
    if on_postgres(store):
        return sum(
            fields[1:2] == ["F"] and fields[3:4] in (["Bind"], ["Query"])
            for fields in _messages(store, work)
        )
    run: list[str] = []
    conn.exec_trace = lambda cursor, sql, bindings: run.append(sql) or True
    try:
        work()
    finally:
        conn.exec_trace = None
    return len(run)


def _messages(store: memstore.Store, work: Any) -> list[list[str]]:
    """The protocol messages ``work()`` exchanged with the PostgreSQL server, each split
    into the fields of libpq's trace (time, direction, length, type, ...)."""
    conn = store.connection
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            work()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return [line.rstrip("\n").split("\t") for line in trace]


def on_connections(url: str, work: Callable[[memstore.Store, int], None], count: int = 4) -> None:
    """``work(store, n)`` in ``count`` threads at once, each with a Store of its own on
    ``url`` (a file or a PostgreSQL database): writers on many connections, as many
    processes would be. The first error of any is raised."""
    start = threading.Barrier(count, timeout=30)
    failed: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with memstore.Store(url, timeout=30) as store:
                start.wait()
                work(store, n)
        except BaseException as err:
            failed.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
