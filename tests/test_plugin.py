"""The Datasette explorer, end to end through datasette.client, on a store built here.

Runs on Datasette 0.65 (the test venv) and 1.0 (.ci/run runs this file there too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

datasette_app = pytest.importorskip("datasette.app")
from datasette import hookspecs  # noqa: E402

import memstore  # noqa: E402

from .conftest import ROOT  # noqa: E402

DATASETTE_1 = not hasattr(hookspecs, "get_metadata")


@pytest.fixture(scope="module")
def agent_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "agent.db"
    with memstore.Store(path) as store:
        events = store.collection("events", fields={"kind": str, "agent": str}, fts=["summary"])
        events.put("e1", {"kind": "error", "agent": "a1", "summary": "tool timeout on web search"})
        events.put(
            "e2",
            {
                "kind": "info",
                "agent": "a1",
                "summary": "plan made",
                "detail": {"steps": list(range(60))},
            },
        )
        events.put("xss", {"kind": "info", "summary": "<script>alert('x')</script> & more"})
        store.collection("secrets", fts=["text"]).put("s1", {"text": "classified timeout"})
        memories = store.collection("memories", vectors={"dim": 3, "model": "toy-3d"})
        memories.put("trains", {"text": "the user likes trains"}, vector=[1.0, 0.1, 0.0])
        memories.put("rail", {"text": "rail passes"}, vector=[0.9, 0.2, 0.0])
        memories.put("food", {"text": "ramen for lunch"}, vector=[0.0, 0.0, 1.0])
        memories.put("a/b <odd>", {"text": "an odd key"}, vector=[0.5, 0.5, 0.5])
        log = store.event_log("planner")
        for i, kind in enumerate(
            ["task_started", "tool_call", "tool_result", "tool_call", "error"]
        ):
            log.append({"id": f"ev{i}", "kind": kind, "payload": {"n": i, "note": "lyon timeout"}})
        conv = store.conversations()
        conv.create_thread("chat-1", title="Train to Lyon", user_id="alice", agent_id="planner")
        conv.add_message("chat-1", "system", "You plan trips.")
        conv.add_message("chat-1", "user", "Find me a train to Lyon")
        conv.add_message(
            "chat-1",
            "assistant",
            None,
            tool_calls=[{"name": "trains", "args": {"to": "Lyon"}}],
            usage={"input_tokens": 100, "output_tokens": 20, "model": "big", "cost": 0.5},
        )
        conv.add_message("chat-1", "tool", {"trains": ["9:04"]}, name="trains")
        branch = conv.branch("chat-1", at=2, branch_id="chat-1-cheap", title="Cheaper")
        conv.add_message(
            branch,
            "assistant",
            "The slow train is cheaper",
            usage={"input_tokens": 7, "output_tokens": 3, "model": "small", "cost": 0.25},
        )
        conv.merge(branch)
        dead = conv.branch("chat-1", at=1, branch_id="chat-1-dead", title="Dead end")
        conv.abandon(dead, reason="wrong idea")
        cp = store.checkpoints()
        first = cp.save("chat-1", {"step": 1, "plan": ["search"]})
        cp.save("chat-1", {"step": 2, "plan": ["search", "book"], "booked": True})
        cp.branch(first, name="alt")
        cp.save("chat-1", {"step": 2, "plan": ["search", "ask"]}, branch="alt")
    return path


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def datasette(path: Path, *, deny: str | None = None) -> Any:
    """A Datasette on the file with memstore's plugin; ``deny`` hides one table from all."""
    settings: dict[str, Any] = {}
    if deny:
        settings = {"databases": {"agent": {"tables": {deny: {"allow": False}}}}}
    kwargs = {"config": settings} if DATASETTE_1 else {"metadata": settings}
    ds = datasette_app.Datasette([str(path)], **kwargs)
    run(ds.invoke_startup())
    return ds


@pytest.fixture(scope="module")
def ds(agent_db: Path) -> Iterator[Any]:
    yield datasette(agent_db)


def get(ds: Any, path: str, method: str = "get") -> Any:
    return run(getattr(ds.client, method)(path))


def test_the_plugin_uses_memstores_public_api_only() -> None:
    source = (ROOT / "plugins" / "memstore_datasette.py").read_text()
    assert "memstore._" not in source


def test_overview(ds: Any) -> None:
    page = get(ds, "/-/memstore")
    assert page.status_code == 200
    html = page.text
    assert "Agent memory" in html and f"Schema version {memstore.SCHEMA_VERSION}" in html
    assert ">events</a></td>" in html and "WAL" in html
    assert "memstore_messages" in html and "130 tokens" in html
    assert "/-/memstore/agent/events/planner" in html
    assert "/-/memstore/agent/threads/chat-1" in html
    assert "/-/memstore/agent/checkpoints/chat-1" in html
    assert 'href="/-/memstore"' in get(ds, "/agent").text  # the menu links here


def test_internal_tables_hidden_and_collections_configured(ds: Any) -> None:
    tables = {t["name"]: t for t in get(ds, "/agent.json").json()["tables"]}
    assert tables["_memstore_collections"]["hidden"] is True
    assert tables["events"]["hidden"] is False and tables["events_fts"]["hidden"] is True
    assert tables["events"]["fts_table"] == "events_fts"
    assert tables["memstore_messages"]["fts_table"] == "memstore_messages_fts"
    html = get(ds, "/agent/events").text
    assert "facet-agent-events-kind" in html and "facet-agent-events-agent" in html
    assert "sorted by updated_at descending" in html


def test_fts_search_through_the_table_page(ds: Any) -> None:
    rows = get(ds, "/agent/events.json?_search=timeout&_shape=array").json()
    assert [r["key"] for r in rows] == ["e1"]
    rows = get(ds, "/agent/memstore_messages.json?_search=lyon&_shape=array").json()
    assert [r["position"] for r in rows] == [2]


def test_json_cells_are_pretty_folded_and_escaped(ds: Any) -> None:
    html = get(ds, "/agent/events").text
    assert '<pre class="memstore-json">' in html and "<details><summary>" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_conversation_view(ds: Any) -> None:
    page = get(ds, "/-/memstore/agent/threads/chat-1")
    assert page.status_code == 200
    html = page.text
    order = [
        html.index(text)
        for text in [
            "You plan trips.",
            "Find me a train to Lyon",
            "&#34;trains&#34;",
            "The slow train is cheaper",
        ]
    ]
    assert order == sorted(order)
    assert "role-assistant" in html and "(trains)" in html
    # Tool calls are folded, named in the summary.
    assert '<details class="tool-calls"><summary>1 tool call: trains</summary>' in html
    assert '<time datetime="' in html and " UTC</time>" in html
    assert "0.5000" in html and "0.7500" not in html  # merged copies carry no usage
    assert ">Cheaper</a> at #2" in html and "merged into chat-1" in html
    assert ">Dead end</a> at #1" in html and "memstore-status abandoned" in html
    assert "/-/memstore/agent/threads/chat-1-cheap" in html
    branch = get(ds, "/-/memstore/agent/threads/chat-1-cheap").text
    assert "from chat-1" in branch and "The slow train is cheaper" in branch
    assert "Train to Lyon</a>" in branch  # the tree links back to the root
    missing = get(ds, "/-/memstore/agent/threads/nope")
    assert missing.status_code == 404
    assert "No thread nope in agent." in missing.text and 'href="/-/memstore"' in missing.text
    assert "<title>No such conversation</title>" in missing.text  # inside Datasette's layout
    assert "/-/memstore/memstore.css" in missing.text


def test_event_timeline(ds: Any) -> None:
    page = get(ds, "/-/memstore/agent/events/planner")
    assert page.status_code == 200
    html = page.text
    assert '<svg class="memstore-timeline"' in html
    assert html.count("<rect") >= 4 and "tool_call" in html and "error" in html
    assert "/agent/memstore_events?log=planner&amp;kind=tool_call&amp;at__startswith=" in html
    assert "/agent/memstore_events/" in html  # rows link to their pages
    assert "5 events, seq 1 to 5" in html
    assert 'class="zero"' in html and 'class="grid"' in html  # the scale
    assert 'width="100%"' in html and 'class="memstore-legend"' in html
    missing = get(ds, "/-/memstore/agent/events/nope")
    assert missing.status_code == 404 and "No events in log nope" in missing.text


def test_checkpoint_view_diffs(ds: Any) -> None:
    html = get(ds, "/-/memstore/agent/checkpoints/chat-1").text
    assert "3 checkpoints on 2 branches" in html
    assert '<li class="added">+ <code>booked</code> true</li>' in html
    assert '<li class="changed">~ <code>step</code> 1 → 2</li>' in html
    assert '<li class="changed">~ <code>plan[1]</code>' not in html
    assert '<li class="added">+ <code>plan[1]</code> &#34;ask&#34;</li>' in html
    tree = html[html.index('<ul class="memstore-tree">') :]
    tree = tree[: tree.index("<h2>")]
    assert tree.index(">main</a>") < tree.index(">alt</a> from") and "<ul><li>" in tree
    assert "2 checkpoints" in tree and "1 checkpoint," in tree


def test_search_everything(ds: Any) -> None:
    html = get(ds, "/-/memstore/search?q=timeout").text
    assert "collection events" in html and "collection secrets" in html
    assert "event log planner" in html
    html = get(ds, "/-/memstore/search?q=lyon").text
    assert "conversation" in html and "/-/memstore/agent/threads/chat-1#m2" in html
    assert "<th>found in</th>" in html and "<mark>Lyon</mark>" in html
    odd = get(ds, '/-/memstore/search?q="unbalanced AND (')
    assert odd.status_code == 200 and "Search syntax error: unterminated string" in odd.text
    literal = get(ds, "/-/memstore/search?q=timeout (").text
    assert "Search syntax error" in literal and "<mark>timeout</mark>" in literal
    syntax = get(ds, "/-/memstore/search?q=lyon OR timeout").text  # FTS5 syntax works
    assert "Search syntax error" not in syntax and "<mark>Lyon</mark>" in syntax
    assert "collection events" in syntax
    xss = get(ds, "/-/memstore/search?q=script").text
    assert "<script>alert" not in xss and "&lt;<mark>script</mark>&gt;" in xss


def test_search_indexes_the_messages_memstore_has_not_yet(tmp_path: Path) -> None:
    """memstore indexes messages in batches; the explorer's search catches up first."""
    path = tmp_path / "agent.db"
    store = memstore.Store(path)
    conv = store.conversations()
    conv.create_thread("t")
    conv.add_message("t", "user", "a zeppelin to Oslo")
    pending = store.connection.execute(memstore.PENDING_MESSAGES_SQL).fetchall()
    assert pending == [(1,)]  # still open: the message waits for the index
    ds = datasette(path)
    html = get(ds, "/-/memstore/search?q=zeppelin").text
    assert "<mark>zeppelin</mark>" in html and "/-/memstore/agent/threads/t#m1" in html
    assert store.connection.execute(memstore.PENDING_MESSAGES_SQL).fetchall() == [(0,)]
    assert store.check() == []
    store.close()


def test_searches_index_the_records_memstore_has_not_yet(tmp_path: Path) -> None:
    """A collection's new records wait for its index in batches (sql/0013); the explorer's
    search and Datasette's own table search both catch up first."""
    path = tmp_path / "agent.db"
    store = memstore.Store(path)
    notes = store.collection("notes", fts=["text"])
    notes.put("a", {"text": "a zeppelin over Lyon"})
    indexed = "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'zeppelin'"
    assert store.connection.execute(indexed).fetchall() == [(0,)]  # open: it waits
    ds = datasette(path)
    rows = get(ds, "/agent/notes.json?_search=zeppelin&_shape=array").json()
    assert [r["key"] for r in rows] == ["a"]
    notes.put("b", {"text": "another zeppelin"})
    html = get(ds, "/-/memstore/search?q=zeppelin").text
    assert "collection notes" in html and html.count("<mark>zeppelin</mark>") == 2
    assert store.check() == []
    store.close()


def test_no_write_route(ds: Any) -> None:
    for path in [
        "/-/memstore",
        "/-/memstore/search?q=x",
        "/-/memstore/agent/threads/chat-1",
        "/-/memstore/agent/events/planner",
        "/-/memstore/agent/checkpoints/chat-1",
        "/-/memstore/memstore.css",
    ]:
        for method in ("post", "put", "delete", "patch"):
            assert get(ds, path, method).status_code in (403, 405), (method, path)
    assert get(ds, "/-/memstore/memstore.css").status_code == 200


def test_hidden_table_stays_hidden_and_uncounted(agent_db: Path) -> None:
    restricted = datasette(agent_db, deny="secrets")
    assert get(restricted, "/agent/secrets").status_code == 403
    assert ">secrets</a>" not in get(restricted, "/-/memstore").text
    assert "collection secrets" not in get(restricted, "/-/memstore/search?q=timeout").text
    restricted = datasette(agent_db, deny="memstore_messages")
    assert get(restricted, "/-/memstore/agent/threads/chat-1").status_code == 404
    assert "memstore_messages" not in get(restricted, "/-/memstore").text
    assert "conversation" not in get(restricted, "/-/memstore/search?q=lyon").text


def test_other_databases_are_left_alone(tmp_path: Path) -> None:
    import sqlite3

    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE things (body TEXT)")
    conn.execute("""INSERT INTO things VALUES ('{"a": 1}')""")
    conn.commit()
    conn.close()
    ds = datasette_app.Datasette([str(plain)])
    run(ds.invoke_startup())
    assert "memstore-json" not in get(ds, "/plain/things").text
    assert "No memstore database" in get(ds, "/-/memstore").text
    assert json.loads(get(ds, "/plain.json").text)["tables"][0]["hidden"] is False


def test_database_page_lists_collections_first(ds: Any) -> None:
    html = get(ds, "/agent").text
    script = html[html.index("var collections = ") :]
    assert script.startswith('var collections = ["events", "memories", "secrets"];')
    assert "memstore-group" in script
    assert "var collections" not in get(ds, "/agent/events").text  # the database page only


@pytest.mark.parametrize(
    ("first", "last", "label", "buckets"),
    [
        (
            "2026-01-01T00:05:10Z",
            "2026-01-01T00:08:00Z",
            "minute",
            ["2026-01-01T00:05", "2026-01-01T00:06", "2026-01-01T00:07", "2026-01-01T00:08"],
        ),
        (
            "2026-01-01T23:10:00Z",
            "2026-01-02T00:15:00Z",
            "10 minutes",
            [f"2026-01-01T23:{m}" for m in "12345"] + ["2026-01-02T00:0", "2026-01-02T00:1"],
        ),
        ("2026-01-01T10:00:00Z", "2026-01-03T09:00:00Z", "hour", None),
        ("2026-01-31T10:00:00Z", "2026-02-01T09:00:00Z", "hour", None),
        ("2025-12-31T14:00:00Z", "2026-01-01T04:00:00Z", "hour", None),
        ("2026-01-01T10:00:00Z", "2026-02-20T09:00:00Z", "day", None),
        (
            "2024-11-03T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "month",
            ["2024-11", "2024-12"]
            + [f"2025-{m:02}" for m in range(1, 13)]
            + ["2026-01", "2026-02"],
        ),
    ],
)
def test_timeline_buckets_cover_the_span_with_empty_ones(
    first: str, last: str, label: str, buckets: list[str] | None
) -> None:
    import memstore_datasette

    found_label, width, keys = memstore_datasette._buckets(first, last)
    assert found_label == label and len(keys) <= memstore_datasette.MAX_BUCKETS
    assert keys[0] == first[:width] and keys[-1] == last[:width]
    assert keys == sorted(set(keys))  # every bucket once, in time order
    if buckets is not None:
        assert keys == buckets


def test_timeline_gridlines_are_round_numbers() -> None:
    import memstore_datasette

    assert memstore_datasette._ticks(1) == [0, 1]
    assert memstore_datasette._ticks(7) == [0, 2, 4, 6, 8]
    assert memstore_datasette._ticks(10) == [0, 2, 4, 6, 8, 10]
    assert memstore_datasette._ticks(1234) == [0, 500, 1000, 1500]


def test_vectors_in_the_overview_and_similar_records(ds: Any) -> None:
    assert "4 of 3 dims (toy-3d, cosine)" in get(ds, "/-/memstore").text
    table = get(ds, "/agent/memories").text
    assert '/-/memstore/agent/similar/memories/trains">similar</a>' in table
    assert "/-/memstore/agent/similar/memories/a%2Fb%20%3Codd%3E" in table  # quoted, escaped
    assert "similar</a>" not in get(ds, "/agent/events").text  # no vectors there
    page = get(ds, "/-/memstore/agent/similar/memories/trains")
    assert page.status_code == 200
    html = page.text
    assert "the user likes trains" in html and "toy-3d" in html
    assert html.index(">rail</a>") < html.index(">a/b &lt;odd&gt;</a>") < html.index(">food</a>")
    assert ">trains</a>" not in html.split("<table", 1)[1]  # not its own neighbour
    odd = get(ds, "/-/memstore/agent/similar/memories/a%2Fb%20%3Codd%3E")
    assert odd.status_code == 200 and "<odd>" not in odd.text
    for missing in ("memories/nope", "events/e1", "nothere/x"):
        assert get(ds, f"/-/memstore/agent/similar/{missing}").status_code == 404
    assert get(ds, "/-/memstore/agent/similar/memories/trains", method="post").status_code == 405


def test_similar_records_respect_permissions(agent_db: Path) -> None:
    hidden = datasette(agent_db, deny="memories")
    assert get(hidden, "/-/memstore/agent/similar/memories/trains").status_code == 404
    assert "toy-3d" not in get(hidden, "/-/memstore").text


def test_a_query_fts5_cannot_parse_falls_back_to_its_words(
    ds: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    html = get(ds, "/-/memstore/search?q=timeout AND").text
    assert "Search syntax error" in html
    assert "collection events" in html and "<mark>timeout</mark>" in html
    # The user's mistake is shown on the page, not logged as raw SQL in the terminal.
    assert "MATCH" not in capfd.readouterr().err


def test_the_landing_page_is_the_overview(ds: Any) -> None:
    landing = get(ds, "/")
    assert landing.status_code == 302 and landing.headers["location"] == "/-/memstore"


def test_a_datasette_without_memstore_files_keeps_its_index(tmp_path: Path) -> None:
    import sqlite3

    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    assert get(datasette(plain), "/").status_code == 200


def run_datasette(*args: str, entry_points: bool) -> str:
    """`datasette serve ... --get` in a process of its own; without entry points, the plugin
    can only come from --plugins-dir (as from a checkout that is not installed)."""
    import subprocess
    import sys

    # Datasette's own switch (its mere presence): with it, no installed plugin is loaded.
    switch = "" if entry_points else "sys._called_from_test = True\n"
    code = f"import sys\n{switch}from datasette.cli import cli\ncli(sys.argv[1:])\n"
    ran = subprocess.run(
        [sys.executable, "-c", code, "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    return ran.stdout


def test_datasette_loads_plugins_dir_as_the_readme_says(agent_db: Path) -> None:
    plugins = run_datasette(
        str(agent_db), "--plugins-dir", "plugins", "--get", "/-/plugins.json", entry_points=False
    )
    assert [p["name"] for p in json.loads(plugins)] == ["memstore_datasette.py"]
    page = run_datasette(
        str(agent_db), "--plugins-dir", "plugins", "--get", "/-/memstore", entry_points=False
    )
    assert "<title>Agent memory</title>" in page and ">events</a>" in page


def test_an_installed_plugin_and_plugins_dir_together_act_once(agent_db: Path) -> None:
    page = run_datasette(
        str(agent_db), "--plugins-dir", "plugins", "--get", "/-/memstore", entry_points=True
    )
    assert page.count(">Agent memory</a>") == 1
    assert page.count("/-/memstore/memstore.css") == 1


def test_a_temporal_records_timeline(tmp_path: Path) -> None:
    path = tmp_path / "mem.db"
    with memstore.Store(path) as store:
        facts = store.collection("facts", fts=["text"], temporal=True)
        facts.put("ceo", {"text": "Alice <b>"}, valid_from="2026-01-01T00:00:00Z")
        facts.supersede("ceo", {"text": "Bob"}, at="2026-03-01T00:00:00Z")
        facts.put("odd\x1fkey", {"text": "a key holding char(31)"})
        store.collection("plain").put("k", {})
    ds = datasette(path)
    table = get(ds, "/mem/facts").text
    assert "/-/memstore/mem/facts/facts/ceo" in table and ">timeline</a>" in table
    assert "superseded" in table  # the old fact's row, shown as its subject's
    assert table.count(" · superseded ") == 1  # not the key that holds char(31)
    assert "/-/memstore/mem/facts/facts/odd%1Fkey" in table
    page = get(ds, "/-/memstore/mem/facts/facts/ceo")
    assert page.status_code == 200
    html = page.text
    assert html.index("Alice") < html.index("Bob") and "(superseded)" in html
    assert "&lt;b&gt;" in html and "<b>" not in html.split("Timeline of ceo")[1]
    assert "Versions the store replaced" in html and ">update<" in html
    assert get(ds, "/-/memstore/mem/facts/facts/nobody").status_code == 404
    assert get(ds, "/-/memstore/mem/facts/plain/k").status_code == 404
    assert ">timeline</a>" not in get(ds, "/mem/plain").text
