"""SQLite and PostgreSQL answer alike: the same records, filters and orders give the same
keys on both engines (SQLite is the reference), and a record round-trips on PostgreSQL as
on SQLite. What differs on purpose is said here too (see README, "PostgreSQL")."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memstore

from .dbinfo import other_tool, sql

# Values as records hold them: every JSON type, numbers on both sides of each other and of
# text ("5" and 5), booleans (SQLite's 1 and 0), big integers and floats, any short text.
usual = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from([2**53 + 1, -(2**63), 2**63 - 1, 0.5, -1.5, 1e300, 1.0])
    | st.sampled_from(["", "5", "a", "b", "B", "é", "a b", "zz", "10", "true"])
)
scalars = (
    usual
    | st.text(max_size=3).filter(lambda t: "\x00" not in t)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63 - 1)
)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.sampled_from("xy"), scalars)
FIELDS = ("n", "s", "u", "v")  # n: integer, s: text (declared); u, v: not declared
record = st.fixed_dictionaries(
    {},
    optional={
        "n": st.none() | st.integers(-3, 3) | st.sampled_from([2**62, -(2**62)]),
        "s": st.none() | st.sampled_from(["", "a", "b", "B", "é", "5", "a b"]),
        "u": values,
        "v": values,
    },
)
operators = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
conditions = st.one_of(
    st.tuples(st.sampled_from(FIELDS), scalars).map(lambda p: {p[0]: p[1]}),
    st.tuples(st.sampled_from(FIELDS), operators, scalars.filter(lambda v: v is not None)).map(
        lambda p: {p[0]: {p[1]: p[2]}}
    ),
    st.tuples(st.sampled_from(FIELDS), st.sampled_from(["$in", "$nin"]), st.lists(scalars)).map(
        lambda p: {p[0]: {p[1]: p[2]}}
    ),
    st.tuples(st.sampled_from(FIELDS), st.booleans()).map(lambda p: {p[0]: {"$exists": p[1]}}),
    st.tuples(st.sampled_from(FIELDS), scalars.filter(lambda v: v is not None)).map(
        lambda p: {p[0]: {"$contains": p[1]}}
    ),
    # A meta column compares a number as its text (see _sqlite_text): the usual numbers.
    st.tuples(st.sampled_from(["key", "created_at"]), operators, usual.filter(bool)).map(
        lambda p: {p[0]: {p[1]: p[2]}}
    ),
)
filters = st.recursive(
    conditions,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        inner.map(lambda f: {"$not": f}),
    ),
    max_leaves=4,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("MEMSTORE_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def both(pg_url: str) -> Iterator[tuple[memstore.Collection, memstore.Collection]]:
    """The same collection on SQLite (the reference) and on PostgreSQL."""
    with memstore.Store(":memory:") as lite, memstore.Store(pg_url) as pg:
        yield tuple(  # type: ignore[misc]
            s.collection("notes", fields={"n": int, "s": str}, fts=["s"]) for s in (lite, pg)
        )


def load(pair: tuple[memstore.Collection, ...], records: list[dict[str, Any]]) -> None:
    for notes in pair:
        notes.warn_unknown_fields = False
        notes.delete_where({})
        notes.put_many([(f"k{i:02}", r) for i, r in enumerate(records)])


@SETTINGS
@given(records=st.lists(record, max_size=12), where=st.lists(filters, min_size=1, max_size=4))
def test_filters_match_the_same_records(
    both: tuple[memstore.Collection, memstore.Collection],
    records: list[dict[str, Any]],
    where: list[dict[str, Any]],
) -> None:
    load(both, records)
    lite, pg = both
    for condition in where:
        expected = lite.keys(condition, order_by="key")
        assert pg.keys(condition, order_by="key") == expected, condition
        assert pg.count(condition) == len(expected), condition


@SETTINGS
@given(
    records=st.lists(record, max_size=12),
    order=st.lists(st.sampled_from([*FIELDS, "key", "-n", "-s", "-u", "-v"]), max_size=2),
)
def test_orders_are_the_same(
    both: tuple[memstore.Collection, memstore.Collection],
    records: list[dict[str, Any]],
    order: list[str],
) -> None:
    load(both, records)
    lite, pg = both
    assert pg.keys(order_by=[*order, "key"]) == lite.keys(order_by=[*order, "key"])
    assert pg.keys(order_by=order, limit=3, offset=1) == lite.keys(
        order_by=order, limit=3, offset=1
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text().filter(lambda t: "\x00" not in t),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda t: "\x00" not in t), children, max_size=4
        )
    ),
    max_leaves=20,
)


@SETTINGS
@given(
    key=st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k),
    data=st.dictionaries(st.text(max_size=10).filter(lambda t: "\x00" not in t), json_values),
)
def test_records_round_trip_on_postgresql(pg_url: str, key: str, data: dict[str, Any]) -> None:
    with memstore.Store(pg_url) as store:
        notes = store.collection("notes", fts=["text"])
        notes.put(key, data)
        assert notes.get(key) == data
        assert next(notes.rows({"key": key})).record == data
        notes.delete(key)


@pytest.mark.parametrize(
    "where",
    [{"u": True}, {"u": 1}, {"u": {"$gt": 0}}, {"u": {"$gt": "a"}}, {"u": {"$lt": "a"}}],
)
def test_the_documented_comparisons(
    both: tuple[memstore.Collection, memstore.Collection], where: dict[str, Any]
) -> None:
    """true is 1 and false 0; every number sorts before every text (SQLite's order)."""
    load(both, [{"u": True}, {"u": 1}, {"u": 1.0}, {"u": "b"}, {"u": 0}, {}, {"u": None}])
    expected = {
        '{"u": true}': ["k00", "k01", "k02"],
        '{"u": 1}': ["k00", "k01", "k02"],
        '{"u": {"$gt": 0}}': ["k00", "k01", "k02", "k03"],
        '{"u": {"$gt": "a"}}': ["k03"],
        '{"u": {"$lt": "a"}}': ["k00", "k01", "k02", "k04"],
    }
    import json

    for notes in both:
        assert notes.keys(where, order_by="key") == expected[json.dumps(where)]


def test_text_holding_nul_is_refused_on_postgresql(pg_url: str) -> None:
    """PostgreSQL's text cannot hold U+0000, nor can its JSON functions read a string
    holding it: a record or key with one is a ValidationError there, and nothing is
    written (SQLite stores them). The six characters \\u0000 are fine."""
    with memstore.Store(pg_url) as store:
        notes = store.collection("notes", fields={"s": str}, fts=["text"])
        for key, data in [
            ("k\x00", {}),
            ("k", {"s": "a\x00"}),
            ("k", {"other": ["\x00"]}),
            ("k", {"a\x00": 1}),
        ]:
            with pytest.raises(memstore.ValidationError):
                notes.put(key, data)
        with pytest.raises(memstore.ValidationError):
            notes.put_many([("a", {}), ("b", {"x": "\x00"})])
        notes.put("escaped", {"other": "\\u0000"})
        assert notes.keys() == ["escaped"]
        assert notes.keys({"other": "\\u0000"}) == ["escaped"]


async def test_async_store_on_postgresql(pg_url: str) -> None:
    async with memstore.AsyncStore(pg_url) as store:
        notes = await store.collection("notes", fields={"kind": str}, fts=["text"])
        await notes.put("n1", {"kind": "todo", "text": "buy milk"})
        with pytest.raises(memstore.ValidationError):
            async with store.transaction():
                await notes.put("n2", {"kind": "idea", "text": "rolled back"})
                await notes.put("n3", {"kind": 5})  # not text: the block rolls back
        assert await notes.keys(order_by="key") == ["n1"]
        assert [h.key for h in await notes.search("milk")] == ["n1"]
        with pytest.raises(memstore.UnsupportedError, match="pg_dump"):
            await store.backup("copy.db")


@pytest.mark.parametrize(
    ("call", "instead"),
    [
        (lambda s: s.backup("copy.db"), "pg_dump"),
        (lambda s: s.vacuum(), "autovacuum"),
        (lambda s: s.checkpoint_wal(), "checkpoints on its own"),
        (lambda s: s.restore("copy.db"), "pg_restore"),
    ],
)
def test_what_postgresql_cannot_do_says_what_to_use(pg_url: str, call: Any, instead: str) -> None:
    with memstore.Store(pg_url) as store:
        with pytest.raises(memstore.UnsupportedError, match=instead):
            call(store)
        assert store.collections() == []


def test_max_size_is_refused_before_connecting() -> None:
    with pytest.raises(memstore.UnsupportedError, match="quota"):
        memstore.Store("postgresql://nobody@127.0.0.1:1/none", max_size=2**30)


def test_a_password_never_shows(pg_url: str) -> None:
    """Not in a repr (the store's, the adapters'), stats, an error, or the command line's
    output; in the URL's user part or as its password= parameter."""
    from memstore_agents import MemstoreSession
    from memstore_langchain import MemstoreByteStore
    from memstore_langgraph import MemstoreSaver, MemstoreStore

    from .conftest import memstore_cli

    url = pg_url.replace("memstore@", "memstore:s3cret@")
    with memstore.Store(url) as store:
        assert "s3cret" not in repr(store) and "s3cret" not in str(store.stats())
        assert store.shown_path == pg_url.replace("memstore@", "memstore:***@")
        assert store.path == url  # to connect again
        for adapter in (
            MemstoreSaver(store),
            MemstoreStore(store),
            MemstoreByteStore(store),
            MemstoreSession("s", store),
        ):
            assert "***" in repr(adapter) and "s3cret" not in repr(adapter)
    with pytest.raises(memstore.MemstoreError) as info:
        memstore.Store("postgresql://memstore:s3cret@127.0.0.1:1/none", timeout=1)
    assert "s3cret" not in str(info.value)
    ran = memstore_cli("init", db=url)
    assert ran.returncode == 0 and "***" in ran.stdout and "s3cret" not in ran.stdout
    assert memstore.without_password(f"{pg_url}?password=s3cret&sslmode=disable") == (
        f"{pg_url}?password=***&sslmode=disable"
    )


def test_a_lost_connection_is_made_again_by_the_next_call(pg_url: str) -> None:
    """The server ends the store's connection (a restart, a failover, a proxy dropping an
    idle connection: here pg_terminate_backend): the call that meets the loss raises,
    saying so; the next call connects again, and every layer works on, a transaction
    too. Lost inside a transaction: the block raises and is not half done."""
    from memstore_langgraph import MemstoreSaver

    def drop(store: memstore.Store) -> None:
        other_tool(pg_url, "SELECT pg_terminate_backend(?)", [store.connection.info.backend_pid])

    with memstore.Store(pg_url) as store:
        notes = store.collection("notes", fields={"n": int}, fts=["text"])
        notes.put("a", {"n": 1, "text": "kept"})
        saver = MemstoreSaver(store)
        drop(store)
        with pytest.raises(memstore.MemstoreError, match="connects again"):
            notes.get("a")
        assert notes.get("a") == {"n": 1, "text": "kept"}
        notes.put("b", {"n": 2, "text": "after"})
        assert [h.key for h in notes.search("after")] == ["b"]
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is None
        drop(store)
        with pytest.raises(memstore.MemstoreError), store.transaction():
            notes.put("c", {"n": 3})
            drop(store)
            notes.put("d", {"n": 4})
        with store.transaction():
            notes.put("e", {"n": 5})
        assert notes.keys(order_by="key") == ["a", "b", "e"]
        drop(store)
        with pytest.raises(memstore.MemstoreError):
            list(notes.rows())
        assert store.check() == [] and notes.count() == 3


def test_notices_memstore_reads_still_reach_the_users_own_handlers(pg_url: str) -> None:
    """memstore reads the notices waiting on its connection (declarations', between
    statements): one on a channel of the user's own still reaches the user's handler."""
    with memstore.Store(pg_url) as store:
        got: list[tuple[str, str]] = []
        store.connection.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        store.connection.execute("LISTEN mine")
        other_tool(pg_url, "SELECT pg_notify('mine', 'hello')")
        deadline = time.monotonic() + 5
        while ("mine", "hello") not in got:
            assert time.monotonic() < deadline, "the user's notice was lost"
            store.collection("notes")  # reads what has come in, and nothing more
            time.sleep(0.005)
        assert {channel for channel, _ in got} <= {"mine", "memstore_declarations"}


def test_a_search_past_query_timeout_is_stopped_on_postgresql(pg_url: str) -> None:
    with memstore.Store(pg_url, query_timeout=0.001) as store:
        notes = store.collection("notes", fts=["text"])
        notes.put_many([(f"k{i}", {"text": f"common words here {i}"}) for i in range(30_000)])
        with pytest.raises(memstore.QueryError, match="longer than"):
            notes.search("common OR words OR here", limit=10_000)
        notes.put("after", {"text": "still writable"})  # the timeout was the search's only
        assert notes.count() == 30_001


def test_the_command_line_on_postgresql(pg_url: str) -> None:
    from .conftest import memstore_cli

    assert memstore_cli("collection", "create", "notes", db=pg_url).returncode == 0
    assert memstore_cli("put", "notes", "a", '{"kind": "x"}', db=pg_url).returncode == 0
    ran = memstore_cli("query", "notes", "--where", '{"kind": "x"}', "--json", db=pg_url)
    assert ran.returncode == 0 and '"a"' in ran.stdout
    ran = memstore_cli("backup", "copy.db", db=pg_url)
    assert ran.returncode == 1 and "pg_dump" in ran.stderr
    root = pg_url.rpartition("/")[0]
    missing = memstore_cli("collections", db=f"{root}/postgres")  # no memstore schema there
    assert missing.returncode == 3, missing.stderr


def test_an_adapter_of_its_own_sql_is_refused_on_postgresql(pg_url: str) -> None:
    """A third party's Adapter keeps the default layer: its SQL is taken to be SQLite's."""

    class Mine(memstore.Adapter):
        def __init__(self, path: Any) -> None:
            self.open_store(path, {})

    with pytest.raises(memstore.UnsupportedError, match="framework adapters"):
        Mine(pg_url)
    with memstore.Store(pg_url) as store:
        with pytest.raises(memstore.UnsupportedError):
            Mine(store)
        assert store.collections() == []  # a store given stays open
    Mine(":memory:").close()


@pytest.mark.parametrize("where", ["file", "postgres"])
def test_statements_run_together_give_each_its_rows(
    where: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """execute_together: in a transaction on PostgreSQL the statements go together (after
    a write held back, which they see); outside one, one by one; an error is memstore's
    and rolls back the block."""

    class Mine(memstore.Adapter):
        layer = None  # collections only

        def __init__(self, path: Any) -> None:
            self.open_store(path, {})

    url = str(tmp_path / "a.db") if where == "file" else request.getfixturevalue("pg_url")
    with Mine(url) as mine:
        notes = mine.store.collection("notes")
        notes.put_many([(f"k{i}", {"i": i}) for i in range(5)])
        statements = [
            ('SELECT key FROM "notes" WHERE key < ? ORDER BY key', ["k2"]),
            ('SELECT count(*) FROM "notes"', []),
            ('SELECT key FROM "notes" WHERE key = ?', ["none"]),
        ]
        assert mine.execute_together(statements) == [[("k0",), ("k1",)], [(5,)], []]
        with mine.store.transaction():
            notes.put("k9", {"i": 9})  # a write the reads must see
            got = mine.execute_together(statements)
        assert [[tuple(row) for row in rows] for rows in got] == [[("k0",), ("k1",)], [(6,)], []]
        with pytest.raises(memstore.MemstoreError), mine.store.transaction():
            notes.put("k10", {"i": 10})
            mine.execute_together([('SELECT count(*) FROM "notes"', []), ("SELECT nothing", [])])
        assert "k10" not in notes and len(notes) == 6


@pytest.mark.parametrize("where", ["file", "postgres"])
@pytest.mark.parametrize("rows", [0, 1, memstore._TUPLES_AS_VALUES, memstore._TUPLES_AS_VALUES + 1])
def test_a_table_of_tuples_joins_in_order(
    where: str, rows: int, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Adapter.tuples: a few rows as a VALUES list on SQLite, more as one JSON array; on
    both engines the same rows, text kept as text (NUL-free, quotes, non-ASCII), in
    order, joined to a table."""

    class Mine(memstore.Adapter):
        layer = None

        def __init__(self, path: Any) -> None:
            self.open_store(path, {})

    url = str(tmp_path / "a.db") if where == "file" else request.getfixturevalue("pg_url")
    wanted = [(f"k{i % 7}", f'it\'s "{i}" é', "10") for i in range(rows)][::-1]
    with Mine(url) as mine:
        mine.store.collection("notes").put_many([(f"k{i}", {"i": i}) for i in range(5)])
        table, columns, order, params = mine.tuples("w", 3, wanted)
        got = mine.execute(
            f"SELECT {columns[0]}, {columns[1]}, {columns[2]}, n.key FROM {table} "
            f'{mine.join_in_order} "notes" AS n ON n.key = {columns[0]} ORDER BY {order}',
            params,
        )
    assert [tuple(row) for row in got] == [(*w, w[0]) for w in wanted if w[0] < "k5"]


def test_a_handle_follows_another_tools_change_of_a_declaration(pg_url: str) -> None:
    """The registry's trigger announces any change, made by memstore or not: a write takes
    those whose announcement has come (one committed an instant before, its announcement
    still on its way, is taken by the next)."""
    with memstore.Store(pg_url) as store, memstore.Store(pg_url) as other:
        notes = store.collection("notes")
        notes.put("before", {})
        sql(other, "UPDATE _memstore_collections SET ttl_seconds = 60 WHERE name = 'notes'")
        time.sleep(0.05)  # the announcement's way from the server
        notes.put("after", {})
        assert notes.ttl is not None and notes.ttl.total_seconds() == 60
        assert next(notes.rows({"key": "after"})).expires_at is not None
        assert next(notes.rows({"key": "before"})).expires_at is None


def test_a_tag_postgresql_cannot_compare_is_refused_from_any_tool(pg_url: str) -> None:
    """A NUL in a tag would fail every search by tags on PostgreSQL (its JSON cannot
    compare it): memstore refuses one, and the table refuses another tool's."""
    with memstore.Store(pg_url) as store:
        store.conversations().create_thread("t", tags=["ok"])
        store.checkpoints().save("t", {}, tags=["ok"])
    for table in ("memstore_threads", "memstore_checkpoints"):
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            other_tool(pg_url, f"UPDATE {table} SET tags = ?", ['["a\\u0000"]'])
    with memstore.Store(pg_url) as store:
        assert [t.id for t in store.conversations().threads(tags=["ok"])] == ["t"]
        assert len(store.checkpoints().find("t", tags=["ok"])) == 1


def test_a_graphs_words_are_the_same_on_both_engines(pg_url: str, tmp_path: Any) -> None:
    """A node's and an edge's words for search (their ids, kind or relation, and every
    text value of their props, depth first) are the same text on PostgreSQL as in SQLite."""
    props = {"a": "one", "b": {"c": ["two", 3, {"d": "three"}], "e": True}, "f": "four é"}
    found = []
    for url in (str(tmp_path / "a.db"), pg_url):
        with memstore.Store(url) as store:
            g = store.graph("g")
            g.add_node("n", "kind", props)
            g.add_node("m", "kind")
            g.add_edge("n", "m", "is_near", props)
            found.append(
                sql(store, "SELECT item, ref, words FROM memstore_graph_text ORDER BY 1, 2")
            )
    assert found[0] == found[1]


def test_a_nul_postgresql_cannot_hold_is_refused_by_every_layer(pg_url: str) -> None:
    """Text with U+0000 (as it is, or as JSON's escape where PostgreSQL reads the JSON's
    text): a ValidationError, and nothing written."""
    with memstore.Store(pg_url) as store:
        conv, g = store.conversations(), store.graph("g")
        conv.create_thread("t")
        g.add_node("a", "thing")
        for call in (
            lambda: conv.add_message("t", "user", "a\x00b"),
            lambda: conv.create_thread("u", title="a\x00b"),
            lambda: g.add_node("b", "thing", {"note": "a\x00b"}),
        ):
            with pytest.raises(memstore.ValidationError):
                call()
        assert conv.messages("t") == [] and [t.id for t in conv.threads()] == ["t"]
        assert [n.id for n in g.nodes()] == ["a"] and store.check() == []
        g.set_profile("p", {"note": "a\x00b"})  # JSON text no one searches: kept as it is
        assert g.profile("p") == {"note": "a\x00b"}


@pytest.mark.parametrize(
    "odd",
    [
        "1e-99999",  # beyond numeric's range: jsonb refuses it, json holds it
        "-2E+123456",
        '"' + "x" * 20_000 + '"',  # a long record
    ],
)
def test_a_filter_reads_every_record_another_tool_wrote(pg_url: str, odd: str) -> None:
    """A record another tool wrote with what jsonb cannot hold but JSON text can (a number
    beyond numeric's range), or a long one: its fields filter on PostgreSQL as on SQLite,
    on one field or several (a filter that parsed each row once as jsonb, tried, failed
    here)."""
    with memstore.Store(":memory:") as lite_store, memstore.Store(pg_url) as pg_store:
        lite, pg = (s.collection("notes") for s in (lite_store, pg_store))
        for notes in (lite, pg):
            notes.put_many([("a", {"n": 1, "u": 5, "v": "x"}), ("b", {"n": 2, "u": 7, "v": "y"})])
        statement = (
            f'INSERT INTO notes (key, body) VALUES (?, \'{{"u": 6, "v": "x", "w": {odd}}}\')'
        )
        sql(lite_store, statement, ["odd"])
        other_tool(pg_url, statement, ["odd"])
        for where in (
            {"u": {"$gte": 6}},
            {"u": {"$gte": 5}, "v": "x"},
            {"$or": [{"u": 6}, {"v": "y"}], "n": {"$exists": False}},
            {"w": {"$exists": True}},
            {"$not": {"u": {"$in": [5, 7]}}},
        ):
            assert pg.keys(where, order_by="key") == lite.keys(where, order_by="key"), where
        assert pg.keys({"u": 6, "v": "x"}) == ["odd"]


def test_text_equality_matches_every_way_of_writing_it(pg_url: str) -> None:
    """On PostgreSQL an equality with a text first looks for it as JSON writes it without
    an escape, a search for bytes; records that write it otherwise (another tool's
    escapes), hold it elsewhere (as a key), or hold an object or a list whose text is
    the one compared, match as on SQLite."""
    bodies = [
        '{"k": "fact"}',
        '{"k": "f\\u0061ct"}',
        '{"k": "\\u00e9t\\u00e9"}',
        '{"k": "été"}',
        '{"fact": 1, "k": "x"}',
        '{"k": {}}',
        '{"k": []}',
        '{"k": ["fact"]}',
        '{"k": "a\\"b"}',
        '{"k": " fact"}',
        '{"k": 5}',
    ]
    with memstore.Store(":memory:") as lite_store, memstore.Store(pg_url) as pg_store:
        lite, pg = (s.collection("notes") for s in (lite_store, pg_store))
        statement = "INSERT INTO notes (key, body) VALUES (?, ?)"
        for i, body in enumerate(bodies):
            sql(lite_store, statement, [f"r{i:02}", body])
            other_tool(pg_url, statement, [f"r{i:02}", body])
        for value in ("fact", "été", "x", "{}", "[]", '["fact"]', 'a"b', " fact", "5", ""):
            for where in ({"k": value}, {"k": {"$ne": value}}, {"$not": {"k": value}}):
                assert pg.keys(where, order_by="key") == lite.keys(where, order_by="key"), where
        assert pg.keys({"k": "fact"}, order_by="key") == ["r00", "r01"]


# Numbers to summarize: none, whole or not, and what is not a number (left out on both).
measures = st.none() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6) | st.sampled_from(["x"])


@SETTINGS
@given(
    records=st.lists(
        st.fixed_dictionaries({"u": usual, "n": st.integers(-3, 3)}, optional={"m": measures}),
        max_size=12,
    ),
    group=st.sampled_from(["u", "n", "s", None]),
)
def test_aggregates_come_out_the_same(
    both: tuple[memstore.Collection, memstore.Collection],
    records: list[dict[str, Any]],
    group: str | None,
) -> None:
    """Groups as SQLite forms and orders them (a JSON field's values too: true with 1,
    numbers before text); a summary of numbers the same, to float precision."""
    if any(isinstance(r.get("m"), str) for r in records):  # SQLite sums text as 0
        records = [r if not isinstance(r.get("m"), str) else {**r, "m": None} for r in records]
    load(both, records)
    lite, pg = both
    for of in (None, "m", "n"):
        expected = lite.aggregate(group_by=group, of=of)
        found = pg.aggregate(group_by=group, of=of)
        assert len(found) == len(expected), (group, of)
        for mine, theirs in zip(found, expected, strict=True):
            assert mine.keys() == theirs.keys()
            for name, value in theirs.items():
                if isinstance(value, float):
                    assert mine[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, of)
                else:  # (equal numbers group together: 1 or 1.0 may stand for them)
                    assert mine[name] == value, (name, of)


def test_check_and_repair_cover_the_schemas_indexes_and_triggers(pg_url: str) -> None:
    """What sql/postgres/ creates (indexes, triggers): check finds one gone, repair makes it
    again, as on SQLite."""
    with memstore.Store(pg_url) as store:
        store.conversations().create_thread("t")
        sql(store, "DROP INDEX memstore_events__kind_idx")
        sql(store, "DROP TRIGGER memstore_messages__count_insert ON memstore_messages")
        assert store.check() == [
            "missing index memstore_events__kind_idx",
            "missing trigger memstore_messages__count_insert",
        ]
        assert store.repair() == [
            "recreated index memstore_events__kind_idx",
            "recreated trigger memstore_messages__count_insert",
        ]
        assert store.check() == []
        store.conversations().add_message("t", "user", "counted again")
        assert store.conversations().thread("t").message_count == 1
