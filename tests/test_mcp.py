"""`memstore mcp`: the MCP server, driven by the SDK's own client, in-process, over stdio and
over HTTP, with both profiles, bad arguments and a closed store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

import memstore  # noqa: E402
import memstore_mcp  # noqa: E402

from .conftest import CLI, PYTHONPATH, memstore_cli  # noqa: E402


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
def opened(db: Path) -> Iterator[memstore.Store]:
    with memstore.Store(db) as store:
        yield store


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    """A tool's structured result; an error result raises AssertionError with its text."""
    result = await client.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, text
    if result.structured_content is None:
        return text
    content = result.structured_content
    return content.get("result", content) if set(content) == {"result"} else content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    """A tool call that must fail: its message (never a traceback)."""
    result = await client.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error, text
    assert "Traceback" not in text
    return text


def alice(store: memstore.Store) -> Client:
    """A client of a server on ``store`` in the scope alice (a fixture would enter and
    leave the client in two tasks, which anyio refuses)."""
    return Client(memstore_mcp.build_server(store, scope="alice"))


async def test_the_tools_have_annotations_schemas_and_descriptions(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {
            "remember",
            "recall",
            "get",
            "update",
            "supersede",
            "forget",
            "history",
            "add_facts",
            "search_graph",
            "open_nodes",
            "delete_facts",
            "search_conversations",
            "log_event",
            "recent_activity",
            "memory_info",
        }
        for name in ("recall", "get", "history", "search_graph", "open_nodes", "memory_info"):
            assert tools[name].annotations.read_only_hint is True, name
        assert tools["forget"].annotations.destructive_hint is True
        assert tools["remember"].annotations.read_only_hint is False
        recall = tools["recall"].input_schema["properties"]
        assert {"query", "q", "token_budget", "cursor", "mode", "since"} <= set(recall)
        assert "description" in recall["token_budget"] and tools["recall"].description
        assert all(t.output_schema for t in tools.values())


async def test_remember_recall_and_duplicates(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        first = await call(
            client, "remember", text="The user prefers trains to planes", tags=["travel"]
        )
        assert first["stored"] is True
        again = await call(client, "remember", content="the user prefers   TRAINS to planes")
        assert again == {"key": first["key"], "stored": False, "duplicate_of": first["key"]}
        await call(client, "remember", text="Lunch at the ramen place on Fridays", kind="habit")
        found = await call(client, "recall", q="trains")
        assert [m["key"] for m in found["memories"]] == [first["key"]]
        hit = found["memories"][0]
        assert "[trains]" in hit["why"] and hit["tags"] == ["travel"] and "score" in hit
        assert hit["created_at"] <= hit["updated_at"]
        assert found["truncated"] is False and found["next_cursor"] is None
        assert (await call(client, "recall", query="ramen", kinds=["habit"]))["memories"]
        assert not (await call(client, "recall", query="ramen", kinds=["note"]))["memories"]
        assert (await call(client, "recall", query="trains", tags=["travel"]))["memories"]
        assert not (await call(client, "recall", query="trains", tags=["work"]))["memories"]
        assert len((await call(client, "recall", since="1h"))["memories"]) == 2  # newest first
        assert not (await call(client, "recall", since="2999-01-01T00:00:00Z"))["memories"]
        # Words FTS5 would refuse are words like any others.
        assert (await call(client, "recall", q='trains AND "planes'))["memories"]


async def test_recall_stays_within_its_budget_and_pages(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        for i in range(40):
            await call(client, "remember", text=f"memory {i} about trains " + "x" * 200)
        seen: list[str] = []
        cursor = None
        while True:
            page = await call(
                client, "recall", q="trains", token_budget=300, limit=200, cursor=cursor
            )
            assert page["tokens"] <= 300
            text = json.dumps(page["memories"], ensure_ascii=False)
            assert memstore_mcp.count_tokens(text) <= 300 + 10 * len(page["memories"])
            seen += [m["key"] for m in page["memories"]]
            if not page["next_cursor"]:
                break
            cursor = page["next_cursor"]
        assert len(seen) == len(set(seen)) == 40
        long = await call(client, "remember", text="trains " * 2000)
        cut = await call(client, "recall", q="trains", token_budget=100, limit=1)
        assert cut["memories"][0]["key"] == long["key"] and cut["memories"][0]["cut"] is True
        assert cut["tokens"] <= 100


async def test_update_refuses_a_moved_version_and_history_keeps_it(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        key = (await call(client, "remember", text="The meeting is on Monday"))["key"]
        got = await call(client, "get", key=key)
        assert got["version"] == 1 and got["text"] == "The meeting is on Monday"
        assert got["created_at"] == got["updated_at"] and got["created_at"].endswith("Z")
        changed = await call(
            client, "update", key=key, text="The meeting is on Tuesday", if_version=1
        )
        assert changed["version"] == 2
        late = await error(client, "update", key=key, text="Wednesday", if_version=1)
        assert "ConflictError" in late and "version 2, not 1" in late
        assert (await call(client, "get", id=key))["text"] == "The meeting is on Tuesday"
        await call(client, "update", key=key, patch={"tags": ["work"], "importance": 0.9})
        versions = (await call(client, "history", key=key))["versions"]
        assert [v["text"] for v in versions] == [
            "The meeting is on Monday",
            "The meeting is on Tuesday",
            "The meeting is on Tuesday",
        ]
        assert "ValidationError" in await error(client, "update", key=key, patch={"scope": "bob"})


async def test_forget_soft_then_hard(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        keep = (await call(client, "remember", text="keep this"))["key"]
        soft = (await call(client, "remember", text="wrong fact", kind="fact"))["key"]
        hard = (await call(client, "remember", text="secret", kind="secret"))["key"]
        assert (await call(client, "forget", key=soft))["forgotten"] == [soft]
        assert "NotFoundError" in await error(client, "get", key=soft)
        assert not (await call(client, "recall", q="wrong"))["memories"]
        assert (await call(client, "history", key=soft))["versions"][-1]["forgotten"] is True
        gone = await call(client, "forget", where={"kind": "secret"}, hard=True)
        assert gone["forgotten"] == [hard]
        assert (await call(client, "memory_info"))["memories"] == 1
        assert (await call(client, "forget", keys=["nope"]))["missing"] == ["nope"]
        assert "ValidationError" in await error(client, "forget")
        assert (await call(client, "get", key=keep))["text"] == "keep this"


async def test_the_graph_in_one_transaction(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        added = await call(
            client,
            "add_facts",
            entities=[
                {"name": "Ada", "type": "person", "observations": ["wrote the first program"]},
                {"name": "Engine", "type": "machine"},
            ],
            relations=[{"from": "Ada", "to": "Engine", "type": "programmed"}],
        )
        assert added["created_entities"] == ["Ada", "Engine"]
        # A relation to a missing entity refuses the whole call: nothing of it is written.
        text = await error(
            client,
            "add_facts",
            entities=[{"name": "Babbage", "type": "person"}],
            relations=[{"from": "Babbage", "to": "Nobody", "type": "knew"}],
        )
        assert "NotFoundError" in text
        found = await call(client, "search_graph", q="program")
        assert [e["name"] for e in found["entities"]] == ["Ada"]
        opened = await call(client, "open_nodes", names=["Ada"], depth=1)
        assert {e["name"] for e in opened["entities"]} == {"Ada", "Engine"}
        assert opened["relations"] == [
            {"from": "Ada", "to": "Engine", "relationType": "programmed"}
        ]
        assert (await call(client, "open_nodes", names=["Babbage"]))["missing"] == ["Babbage"]
        deleted = await call(
            client,
            "delete_facts",
            observations=[{"entity": "Ada", "observations": ["wrote the first program"]}],
            relations=[{"from": "Ada", "to": "Engine", "type": "programmed"}],
        )
        assert deleted["deleted"] == {"entities": 0, "relations": 1, "observations": 1}


async def test_events_conversations_activity_and_info(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        assert (await call(client, "log_event", kind="tool_call", payload={"tool": "search"}))[
            "seq"
        ] == 1
        conv = opened.conversations()
        conv.create_thread("mine", agent_id="alice")
        conv.add_message("mine", "user", "Book the train to Lyon")
        conv.create_thread("theirs", agent_id="bob")
        conv.add_message("theirs", "user", "Book the train to Lyon for bob")
        found = await call(client, "search_conversations", q="Lyon")
        assert [m["thread"] for m in found["messages"]] == ["mine"]
        await call(client, "remember", text="The train leaves at 9:04")
        await call(client, "add_facts", entities=[{"name": "Lyon", "type": "city"}])
        activity = await call(client, "recent_activity", timeframe="1h")
        assert len(activity["memories"]) == 1 and activity["events"][0]["kind"] == "tool_call"
        assert activity["entities"][0]["name"] == "Lyon"
        info = await call(client, "memory_info")
        assert info["scope"] == "alice" and info["memories"] == 1 and info["entities"] == 1
        assert info["tokens_counted_as"]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("remember", {}, "ValidationError"),
        ("remember", {"text": "a", "content": "b"}, "once"),
        ("remember", {"text": "x", "ttl": "7"}, "not a duration"),
        ("recall", {"since": "yesterday"}, "since"),
        ("recall", {"q": "x", "mode": "vector"}, "needs embeddings"),
        ("recall", {"cursor": "garbage"}, "cursor"),
        ("recall", {"token_budget": 99}, "token_budget"),
        ("get", {"key": ""}, "ValidationError"),
        ("get", {"key": "x" * 600}, "ValidationError"),
        ("update", {"key": "nope", "text": "x"}, "NotFoundError"),
        ("forget", {"where": {"$where": 1}}, "QueryError"),
        ("add_facts", {"entities": [{"name": ""}]}, "ValidationError"),
        ("add_facts", {"entities": ["Ada"]}, "entities"),  # the schema refuses it
        ("search_graph", {}, "QueryError"),
        ("open_nodes", {"names": [1]}, "names"),
        ("log_event", {"kind": ""}, "ValidationError"),
        ("recent_activity", {"timeframe": "forever"}, "since"),
        ("nosuch", {}, "nosuch"),
    ],
)
async def test_bad_arguments_are_tool_errors_and_change_nothing(
    opened: memstore.Store, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with alice(opened) as client:
        before = opened.stats()["layers"], opened.collection("mcp_memories").count()
        assert message in await error(client, tool, **arguments)
        assert (opened.stats()["layers"], opened.collection("mcp_memories").count()) == before
        assert (await call(client, "memory_info"))["scope"] == "alice"  # the connection lives on


async def test_one_scope_cannot_read_anothers(opened: memstore.Store) -> None:
    async with Client(memstore_mcp.build_server(opened, scope="alice")) as alice:
        key = (await call(alice, "remember", text="alice's secret plan", key="plan"))["key"]
        await call(alice, "add_facts", entities=[{"name": "Plan", "type": "secret"}])
    async with Client(memstore_mcp.build_server(opened, scope="bob")) as bob:
        assert not (await call(bob, "recall", q="secret plan"))["memories"]
        assert not (await call(bob, "recall"))["memories"]
        assert "NotFoundError" in await error(bob, "get", key=key)
        assert "NotFoundError" in await error(bob, "update", key=key, text="mine now")
        assert (await call(bob, "forget", key=key))["forgotten"] == []
        assert not (await call(bob, "search_graph", q="plan"))["entities"]
        assert (await call(bob, "remember", text="bob's plan", key="plan"))["key"] == "plan"
    async with Client(memstore_mcp.build_server(opened, scope="alice")) as alice:
        assert (await call(alice, "get", key="plan"))["text"] == "alice's secret plan"


async def test_the_scope_comes_from_the_clients_root(opened: memstore.Store) -> None:
    from mcp_types import ListRootsResult, Root

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///home/me/projects/trip-planner")])

    server = memstore_mcp.build_server(opened)
    async with Client(server, list_roots_callback=roots, mode="legacy") as client:
        await call(client, "remember", text="from the trip planner")
        assert (await call(client, "memory_info"))["scope"] == "trip-planner"


async def test_a_read_only_server_offers_no_write(opened: memstore.Store) -> None:
    async with Client(memstore_mcp.build_server(opened, read_only=True)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {
            "recall",
            "get",
            "history",
            "search_graph",
            "open_nodes",
            "search_conversations",
            "recent_activity",
            "memory_info",
        }
        assert "remember" in await error(client, "remember", text="x")


async def test_a_closed_store_is_a_tool_error(db: Path) -> None:
    store = memstore.Store(db)
    async with Client(memstore_mcp.build_server(store)) as client:
        await call(client, "remember", text="before")
        store.close()
        assert "closed" in await error(client, "recall", q="before")
        assert "closed" in await error(client, "memory_info")


async def test_vectors_rank_by_meaning_and_report_similar(opened: memstore.Store) -> None:
    def embed(texts: list[str]) -> list[list[float]]:
        return [[t.count(c) + 0.01 for c in "aeiou"] for t in texts]

    vectors = {"dim": 5, "model": "vowels", "embed": embed}
    server = memstore_mcp.build_server(opened, vectors=vectors)
    async with Client(server) as client:
        await call(client, "remember", text="aaaa ooo")
        similar = await call(client, "remember", text="aaa oo")
        assert similar["similar"] and similar["similar"][0]["text"] == "aaaa ooo"
        hybrid = await call(client, "recall", q="aaaa oo", mode="auto")
        assert hybrid["memories"] and isinstance(hybrid["memories"][0]["why"], dict)
        near = await call(client, "recall", q="aaaa oo", mode="vector")
        assert near["memories"][0]["why"].startswith("meaning")
        # The graph's entities are embedded too: search_graph finds by meaning what no
        # word of the query matches, and ranks by words and meaning fused.
        await call(
            client,
            "add_facts",
            entities=[
                {"name": "Zoo", "type": "place", "observations": ["good food, cool rooms"]},
                {"name": "Bar", "type": "place", "observations": ["a calm aa bar"]},
            ],
        )
        found = await call(client, "search_graph", q="oooooo")
        assert found["entities"][0]["name"] == "Zoo"
        assert (await call(client, "search_graph", q="calm"))["entities"][0]["name"] == "Bar"


# --------------------------------------------------------------------------
# The reference profile
# --------------------------------------------------------------------------


async def test_the_reference_profiles_nine_tools(opened: memstore.Store) -> None:
    server = memstore_mcp.build_server(opened, profile="reference")
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {
            "create_entities",
            "create_relations",
            "add_observations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "read_graph",
            "search_nodes",
            "open_nodes",
        }
        ada = {"name": "Ada", "entityType": "person", "observations": ["mathematician"]}
        engine = {"name": "Engine", "entityType": "machine", "observations": []}
        created = await client.call_tool("create_entities", {"entities": [ada, engine]})
        # As the reference words it: the list as indented JSON, and the structured content.
        assert json.loads(created.content[0].text) == [ada, engine]
        assert created.content[0].text.startswith("[\n  {")
        assert created.structured_content == {"entities": [ada, engine]}
        assert (await call(client, "create_entities", entities=[ada]))["entities"] == []
        link = {"from": "Ada", "to": "Engine", "relationType": "programmed"}
        assert (await call(client, "create_relations", relations=[link]))["relations"] == [link]
        assert (await call(client, "create_relations", relations=[link]))["relations"] == []
        added = await call(
            client,
            "add_observations",
            observations=[{"entityName": "Ada", "contents": ["mathematician", "poet's child"]}],
        )
        assert added["results"] == [{"entityName": "Ada", "addedObservations": ["poet's child"]}]
        missing = await error(
            client, "add_observations", observations=[{"entityName": "Bob", "contents": ["x"]}]
        )
        assert "Entity with name Bob not found" in missing
        graph = await call(client, "read_graph")
        assert graph["relations"] == [link] and len(graph["entities"]) == 2
        found = await call(client, "search_nodes", query="POET")
        assert [e["name"] for e in found["entities"]] == ["Ada"] and found["relations"] == []
        both = await call(client, "open_nodes", names=["Ada", "Engine", "Nobody"])
        assert both["relations"] == [link]
        done = await client.call_tool(
            "delete_observations",
            {"deletions": [{"entityName": "Ada", "observations": ["poet's child"]}]},
        )
        assert done.content[0].text == "Observations deleted successfully"
        assert done.structured_content == {
            "success": True,
            "message": "Observations deleted successfully",
        }
        relations = await client.call_tool("delete_relations", {"relations": [link]})
        assert relations.content[0].text == "Relations deleted successfully"
        entities = await client.call_tool("delete_entities", {"entityNames": ["Engine"]})
        assert entities.content[0].text == "Entities deleted successfully"
        assert (await call(client, "read_graph"))["entities"] == [
            {"name": "Ada", "entityType": "person", "observations": ["mathematician"]}
        ]


REFERENCE_FILE = [
    {"type": "entity", "name": "Ada", "entityType": "person", "observations": ["a", "b"]},
    {"type": "entity", "name": "Engine", "entityType": "machine", "observations": []},
    {"type": "relation", "from": "Ada", "to": "Engine", "relationType": "programmed"},
    {"type": "relation", "from": "Ada", "to": "Ada", "relationType": "admires"},
    {"type": "relation", "from": "Ada", "to": "Ghost", "relationType": "knew"},
]


def test_a_reference_memory_file_comes_and_goes_losslessly(tmp_path: Path) -> None:
    source = tmp_path / "memory.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in REFERENCE_FILE))
    db = tmp_path / "agent.db"
    dry = memstore_cli("import", str(source), "--dry-run", "--json", db=db)
    assert dry.returncode == 3  # a dry run creates no store
    memstore.Store(db).close()
    dry = memstore_cli("import", str(source), "--dry-run", "--json", db=db)
    assert json.loads(dry.stdout)["entities"] == 2
    with memstore.Store(db) as store:
        assert store.graph("mcp:default").nodes() == []
    done = memstore_cli("import", str(source), db=db)
    assert done.returncode == 0 and "imported 2 entities, 3 relations" in done.stdout
    back = tmp_path / "back.jsonl"
    exported = memstore_cli("export", str(back), "--format", "reference", db=db)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in back.read_text().splitlines()]
    key = json.dumps
    assert sorted(map(key, lines)) == sorted(map(key, REFERENCE_FILE))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "entity", "name": "x", "entityType": "t"}\nnot json\n')
    failed = memstore_cli("import", str(bad), db=db)
    assert failed.returncode == 1 and "line 2" in failed.stderr
    with memstore.Store(db) as store:
        assert "x" not in {n.id for n in store.graph("mcp:default").nodes()}


# --------------------------------------------------------------------------
# Real transports: stdio and HTTP, as a client starts them
# --------------------------------------------------------------------------


def server_params(db: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", CLI, "mcp", "--db", str(db), *args],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )


@pytest.mark.parametrize("profile", ["memstore", "reference"])
async def test_over_stdio(db: Path, profile: str) -> None:
    async with Client(server_params(db, "--profile", profile, "--scope", "s1")) as client:
        if profile == "memstore":
            key = (await call(client, "remember", text="over stdio"))["key"]
            assert (await call(client, "get", key=key))["text"] == "over stdio"
            assert "ValidationError" in await error(client, "get", key="")
        else:
            entity = {"name": "Stdio", "entityType": "transport", "observations": []}
            assert (await call(client, "create_entities", entities=[entity]))["entities"]
            assert (await call(client, "read_graph"))["entities"] == [entity]
    with memstore.Store(db) as store:
        assert store.check() == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(db: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "mcp", "--db", str(db), "--http", str(port)],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_over_http_two_clients_share_one_server(http_server: str) -> None:
    async with Client(http_server) as first, Client(http_server) as second:
        key = (await call(first, "remember", text="shared over http"))["key"]
        assert (await call(second, "get", key=key))["text"] == "shared over http"
        assert "NotFoundError" in await error(second, "get", key="nope")
        assert (await call(first, "memory_info"))["memories"] == 1


def test_the_http_address_is_checked(db: Path) -> None:
    for value, message in [("99999", "1 to 65535"), ("host:port", "HOST:PORT")]:
        result = memstore_cli("mcp", "--db", str(db), "--http", value)
        assert result.returncode == 1 and message in result.stderr, result
    assert memstore_mcp.parse_http("8765") == ("127.0.0.1", 8765)
    assert memstore_mcp.parse_http("[::1]:8765") == ("::1", 8765)


async def test_recall_of_ten_thousand_memories_never_exceeds_its_budget(
    opened: memstore.Store,
) -> None:
    words = ["train", "plane", "ramen", "meeting", "budget", "lyon", "paris", "hotel", "code"]
    memory = memstore_mcp.Memory(opened, scope="alice")
    memory.memories.put_many(
        (
            f"alice/m{i:05d}",
            {
                "text": f"{words[i % 9]} {words[i * 7 % 9]} " + 'détail\n"quoted" ' * (i % 60),
                "kind": "note",
                "tags": [words[i % 9]],
                "importance": 0.5,
                "scope": "alice",
                "digest": memstore_mcp.content_hash(str(i)),
                "version": 1,
            },
        )
        for i in range(10_000)
    )
    async with alice(opened) as client:
        for budget in (100, 120, 333, 2000, 9000):
            for query in ("train lyon", "ramen", "détail quoted"):
                found = await call(client, "recall", q=query, token_budget=budget, limit=200)
                text = json.dumps(found["memories"], ensure_ascii=False)
                assert found["tokens"] <= budget, (budget, query)
                assert memstore_mcp.count_tokens(text) <= budget + 5, (budget, query)
                assert found["memories"] and found["truncated"]


async def every_tool(client: Client, profile: str) -> None:
    """Each tool of the profile once, as a client would call it, results checked."""
    if profile == "memstore":
        key = (await call(client, "remember", text="every tool", tags=["t"], key="k1"))["key"]
        assert (await call(client, "recall", q="tool"))["memories"][0]["key"] == key
        assert (await call(client, "get", key=key))["version"] == 1
        assert (await call(client, "update", key=key, text="every tool, changed"))["version"] == 2
        assert len((await call(client, "history", key=key))["versions"]) == 2
        facts = await call(
            client,
            "add_facts",
            entities=[{"name": "A", "type": "t"}, {"name": "B", "type": "t"}],
            relations=[{"from": "A", "to": "B", "type": "knows"}],
        )
        assert facts["created_entities"] == ["A", "B"]
        assert (await call(client, "search_graph", q="A"))["entities"]
        assert (await call(client, "open_nodes", names=["A"], depth=1))["relations"]
        assert (await call(client, "delete_facts", entities=["B"]))["deleted"]["entities"] == 1
        assert (await call(client, "log_event", kind="checked"))["seq"] == 1
        assert (await call(client, "search_conversations", q="nothing"))["messages"] == []
        assert (await call(client, "recent_activity", timeframe="1h"))["memories"]
        assert (await call(client, "forget", key=key))["forgotten"] == [key]
        assert (await call(client, "memory_info"))["memories"] == 0
        assert "NotFoundError" in await error(client, "get", key=key)
    else:
        a = {"name": "A", "entityType": "t", "observations": []}
        b = {"name": "B", "entityType": "t", "observations": ["x"]}
        link = {"from": "A", "to": "B", "relationType": "knows"}
        assert (await call(client, "create_entities", entities=[a, b]))["entities"] == [a, b]
        assert (await call(client, "create_relations", relations=[link]))["relations"] == [link]
        added = await call(
            client, "add_observations", observations=[{"entityName": "A", "contents": ["y"]}]
        )
        assert added["results"][0]["addedObservations"] == ["y"]
        assert len((await call(client, "read_graph"))["entities"]) == 2
        assert (await call(client, "search_nodes", query="y"))["entities"][0]["name"] == "A"
        assert (await call(client, "open_nodes", names=["A", "B"]))["relations"] == [link]
        await call(
            client, "delete_observations", deletions=[{"entityName": "A", "observations": ["y"]}]
        )
        await call(client, "delete_relations", relations=[link])
        await call(client, "delete_entities", entityNames=["B"])
        assert (await call(client, "read_graph")) == {"entities": [a], "relations": []}
        assert "not found" in await error(
            client, "add_observations", observations=[{"entityName": "B", "contents": ["z"]}]
        )


@pytest.mark.parametrize("profile", ["memstore", "reference"])
async def test_every_tool_over_stdio(db: Path, profile: str) -> None:
    async with Client(server_params(db, "--profile", profile)) as client:
        await every_tool(client, profile)


@pytest.mark.parametrize("profile", ["memstore", "reference"])
async def test_every_tool_over_http(db: Path, profile: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "mcp",
            "--db",
            str(db),
            "--profile",
            profile,
            "--http",
            str(port),
        ],
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            await every_tool(client, profile)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_a_memory_that_changed_is_recalled_as_it_was(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        key = (await call(client, "remember", text="The office is in Lyon", key="office"))["key"]
        changed = await call(
            client, "supersede", key=key, text="The office is in Paris", at="2026-03-01T00:00:00Z"
        )
        assert changed["text"] == "The office is in Paris" and changed["version"] == 2
        assert (await call(client, "get", key=key))["text"] == "The office is in Paris"
        then = await call(client, "get", key=key, as_of="2026-02-01T00:00:00Z")
        assert then["text"] == "The office is in Lyon"
        now = await call(client, "recall", q="office")
        assert [m["text"] for m in now["memories"]] == ["The office is in Paris"]
        before = await call(client, "recall", q="office", as_of="2026-02-01T00:00:00Z")
        assert [m["text"] for m in before["memories"]] == ["The office is in Lyon"]
        assert "ValidationError" in await error(
            client, "supersede", key=key, text="Nice", at="2000-01-01T00:00:00Z"
        )
        assert "QueryError" in await error(client, "recall", q="office", as_of="last year")


async def test_recall_ranks_by_the_recall_score(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        await call(client, "remember", text="trains are nice", importance=0.1, key="low")
        await call(client, "remember", text="trains are fine", importance=0.9, key="high")
        found = await call(client, "recall", q="trains")
        assert [m["key"] for m in found["memories"]] == ["high", "low"]
        scores = [m["score"] for m in found["memories"]]
        assert scores[0] > scores[1] > 0


async def test_memories_recalled_often_rank_higher(opened: memstore.Store) -> None:
    async with alice(opened) as client:
        await call(client, "remember", text="trains at nine", key="often")
        await call(client, "remember", text="trains at ten", key="rare")
        for _ in range(20):
            await call(client, "recall", q="nine")  # recalls "often" only
        found = await call(client, "recall", q="trains")
        assert [m["key"] for m in found["memories"]] == ["often", "rare"]
