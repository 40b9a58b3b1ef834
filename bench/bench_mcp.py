"""memstore's MCP server against the reference memory server's file, and recall at scale.

    python bench/bench_mcp.py                 # 8 processes x 40 writes each, 10,000 memories

1. Lost writes. Every MCP client starts its own server process, so several
   servers on one memory file is the normal deployment. The reference "memory"
   server keeps its graph in one JSONL file and handles each tool call by
   reading the whole file, changing the graph in memory and writing the whole
   file back. ``reference_worker`` below does exactly that with the file's own
   format (one JSON object a line: entities, then relations), as a server
   process would for each create_entities call; memstore's side is 8 real
   ``memstore mcp --profile reference`` processes, each driven by its own SDK
   client over stdio, on one SQLite file. Both count the writes acknowledged
   and the writes present afterwards.
2. Notification delay: how long after another process's write this process's
   subscriber hears of it (``resources/updated`` through subscriptions/listen).
3. recall on a store of 10,000 memories: milliseconds per call, and the most
   tokens any answer took against its budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    str(ROOT / p) for p in (".", "plugins", "cli", "demo", "legacy", "adapters", "mcp_server")
]
sys.path[:0] = MODULES
CLI = "import memstore_cli; memstore_cli.main()"

import memstore  # noqa: E402
import memstore_mcp  # noqa: E402

REFERENCE_WORKER = """
import json, sys, time
from pathlib import Path

path, worker, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def load_graph():  # the reference server's loadGraph
    try:
        lines = path.read_text().split("\\n")
    except FileNotFoundError:
        return {"entities": [], "relations": []}
    graph = {"entities": [], "relations": []}
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        if item["type"] == "entity":
            graph["entities"].append({k: item[k] for k in ("name", "entityType", "observations")})
        if item["type"] == "relation":
            graph["relations"].append({k: item[k] for k in ("from", "to", "relationType")})
    return graph

def save_graph(graph):  # and its saveGraph: the whole file, rewritten
    lines = [json.dumps({"type": "entity", **e}) for e in graph["entities"]]
    lines += [json.dumps({"type": "relation", **r}) for r in graph["relations"]]
    path.write_text("\\n".join(lines))

acknowledged = []
for n in range(rounds):
    name = f"w{worker}-e{n}"
    try:
        graph = load_graph()  # createEntities
        if all(e["name"] != name for e in graph["entities"]):
            graph["entities"].append({"name": name, "entityType": "test", "observations": []})
        save_graph(graph)
        acknowledged.append(name)
    except (ValueError, KeyError):
        pass  # a half-written file: the tool call fails, the client is told
print(json.dumps(acknowledged))
"""

MEMSTORE_WORKER = """
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
                {"name": name, "entityType": "test", "observations": []}]})
            if not made.is_error:
                acknowledged.append(name)
    print(json.dumps(acknowledged))

asyncio.run(main())
"""


def run_workers(code: str, target: str, processes: int, rounds: int) -> tuple[list[str], float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(MODULES)}
    start = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, target, str(n), str(rounds), CLI],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    acknowledged: list[str] = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        if worker.returncode:
            raise SystemExit(err)
        acknowledged += json.loads(out.strip().splitlines()[-1])
    return acknowledged, time.perf_counter() - start


def lost_writes(workdir: Path, processes: int, rounds: int) -> dict[str, Any]:
    reference_file = workdir / "memory.jsonl"
    acknowledged, seconds = run_workers(REFERENCE_WORKER, str(reference_file), processes, rounds)
    present, corrupt = set(), 0
    for line in reference_file.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:  # two writers' halves on one line
            corrupt += 1
            continue
        if item.get("type") == "entity":
            present.add(item["name"])
    reference = {
        "acknowledged": len(acknowledged),
        "present": len(present & set(acknowledged)),
        "lost": len(set(acknowledged) - present),
        "corrupt lines": corrupt,
        "seconds": seconds,
    }
    db = workdir / "memory.db"
    memstore.Store(db).close()
    acknowledged, seconds = run_workers(MEMSTORE_WORKER, str(db), processes, rounds)
    with memstore.Store(db) as store:
        present = {n.id for n in store.graph("mcp:default").nodes()}
    ours = {
        "acknowledged": len(acknowledged),
        "present": len(present & set(acknowledged)),
        "lost": len(set(acknowledged) - present),
        "seconds": seconds,
    }
    return {"reference file": reference, "memstore": ours}


async def notification_delays(workdir: Path, trials: int) -> list[float]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    db = workdir / "notify.db"
    delays = []
    with memstore.Store(db) as store:
        server = memstore_mcp.build_server(store, scope="team")
        params = StdioServerParameters(
            command=sys.executable,
            args=["-c", CLI, "mcp", "--db", str(db), "--scope", "team"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(MODULES)},
        )
        async with Client(server) as listener, Client(params) as writer:
            await writer.call_tool("remember", {"text": "v0", "key": "k"})
            uri = "memstore://memories/k"
            async with listener.listen(resource_subscriptions=[uri]) as events:
                for n in range(trials):
                    start = time.perf_counter()
                    await writer.call_tool("update", {"key": "k", "text": f"v{n + 1}"})
                    await asyncio.wait_for(events.__anext__(), timeout=10)
                    delays.append(time.perf_counter() - start)
    return delays


async def recall_at_scale(workdir: Path, memories: int, queries: int) -> dict[str, Any]:
    from mcp import Client

    words = ["train", "plane", "ramen", "meeting", "budget", "lyon", "paris", "hotel", "code"]
    db = workdir / "recall.db"
    with memstore.Store(db) as store:
        collection = memstore_mcp.Memory(store).memories
        collection.put_many(
            (
                f"default/m{i:05d}",
                {
                    "text": f"memory {i}: {words[i % 9]} and {words[(i * 7) % 9]} "
                    + "detail " * (i % 40),
                    "kind": "note",
                    "tags": [words[i % 9]],
                    "importance": 0.5,
                    "scope": "default",
                    "digest": memstore_mcp.content_hash(f"memory {i}"),
                    "version": 1,
                },
            )
            for i in range(memories)
        )
        server = memstore_mcp.build_server(store)
        times, worst = [], 0.0
        async with Client(server) as client:
            for n in range(queries):
                budget = [200, 500, 2000, 8000][n % 4]
                query = f"{words[n % 9]} {words[(n + 3) % 9]}"
                start = time.perf_counter()
                result = await client.call_tool(
                    "recall", {"query": query, "token_budget": budget, "limit": 50}
                )
                times.append(time.perf_counter() - start)
                content = result.structured_content or {}
                worst = max(worst, content.get("tokens", 0) / budget)
    return {
        "memories": memories,
        "median ms": statistics.median(times) * 1000,
        "p95 ms": sorted(times)[int(len(times) * 0.95)] * 1000,
        "largest tokens / budget": worst,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for rounds in (40,):
            print(
                json.dumps({"lost writes, 8 processes": lost_writes(workdir, 8, rounds)}, indent=2)
            )
        delays = asyncio.run(notification_delays(workdir, 20))
        print(
            json.dumps(
                {
                    "notification delay ms": {
                        "median": statistics.median(delays) * 1000,
                        "max": max(delays) * 1000,
                        "poll every": memstore_mcp.POLL_SECONDS * 1000,
                    }
                },
                indent=2,
            )
        )
        print(json.dumps({"recall": asyncio.run(recall_at_scale(workdir, 10_000, 100))}, indent=2))


if __name__ == "__main__":
    main()
