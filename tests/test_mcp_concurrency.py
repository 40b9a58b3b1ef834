"""Many MCP server processes on one file, as many clients start them: every acknowledged
write is there afterwards, and change notifications cross from one process to another."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp")
from mcp import Client
from mcp.client.stdio import StdioServerParameters

import memstore
import memstore_mcp

from .conftest import CLI, PYTHONPATH

#: A client process: it starts its own server (as every MCP client does), then creates
#: entities and adds observations to them, and prints what the server acknowledged.
WORKER = """
import asyncio, json, os, sys
from mcp import Client
from mcp.client.stdio import StdioServerParameters

db, worker, rounds, cli = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

async def main():
    params = StdioServerParameters(
        command=sys.executable, args=["-c", cli, "mcp", "--db", db, "--profile", "reference"],
        env=dict(os.environ))
    acknowledged = []
    async with Client(params) as client:
        for n in range(rounds):
            name = f"w{worker}-e{n}"
            made = await client.call_tool("create_entities", {"entities": [
                {"name": name, "entityType": "test", "observations": [f"born {n}"]}]})
            if not made.is_error:
                acknowledged.append([name, f"born {n}"])
            added = await client.call_tool("add_observations", {"observations": [
                {"entityName": f"w{(worker + 1) % 8}-e0" if n else name,
                 "contents": [f"seen by {worker} in round {n}"]}]})
            if not added.is_error:
                entity = added.structured_content["results"][0]["entityName"]
                acknowledged.append([entity, f"seen by {worker} in round {n}"])
    print(json.dumps(acknowledged))

asyncio.run(main())
"""


def test_eight_server_processes_lose_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    memstore.Store(db).close()
    rounds = 15
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(n), str(rounds), CLI],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    acknowledged = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        acknowledged += json.loads(out.strip().splitlines()[-1])
    with memstore.Store(db) as store:
        nodes = {n.id: n.props["observations"] for n in store.graph("mcp:default").nodes()}
        assert store.check() == []
    assert len(nodes) == 8 * rounds
    missing = [(name, o) for name, o in acknowledged if o not in nodes.get(name, [])]
    assert missing == []
    # Every creation and every observation on an entity that existed was acknowledged.
    assert len(acknowledged) >= 8 * rounds


async def test_a_write_by_another_process_reaches_this_ones_subscribers(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with memstore.Store(db) as store:
        server = memstore_mcp.build_server(store, scope="team")
        params = StdioServerParameters(
            command=sys.executable,
            args=["-c", CLI, "mcp", "--db", str(db), "--scope", "team"],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        async with Client(server) as listener, Client(params) as writer:
            made = await writer.call_tool("remember", {"text": "first", "key": "plan"})
            assert not made.is_error
            uri = "memstore://memories/plan"
            read = await listener.read_resource(uri)
            assert json.loads(read.contents[0].text)["text"] == "first"
            async with listener.listen(resource_subscriptions=[uri, "memstore://graph"]) as events:
                start = time.monotonic()
                changed = await writer.call_tool(
                    "update", {"key": "plan", "text": "second", "if_version": 1}
                )
                assert not changed.is_error
                event = await asyncio.wait_for(events.__anext__(), timeout=10)
                delay = time.monotonic() - start
                assert getattr(event, "uri", None) == uri
                assert delay < 5, delay  # a quarter second when idle (BENCHMARKS.md)
                await writer.call_tool(
                    "add_facts", {"entities": [{"name": "Plan", "type": "plan"}]}
                )
                # The plan may be announced again before the graph (seen once in CI, the
                # cause not pinned down): an updated-resource notice is a hint to read
                # again, so repeats are allowed, anything else is not.
                seen = []
                while "memstore://graph" not in seen:
                    event = await asyncio.wait_for(events.__anext__(), timeout=10)
                    seen.append(getattr(event, "uri", None))
                assert set(seen) <= {uri, "memstore://graph"}, seen
            read = await listener.read_resource(uri)
            assert json.loads(read.contents[0].text)["text"] == "second"
