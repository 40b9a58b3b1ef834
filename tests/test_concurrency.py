"""Several processes on one file: nothing lost, nothing half-written, forks reconnect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import memstore

from .conftest import ROOT, run_processes, run_python
from .dbinfo import on_postgres, triggers

WRITER = """
import sys, memstore
path, n = sys.argv[1], sys.argv[2]
with memstore.Store(path) as store:
    notes = store.collection("notes", fields={"writer": str}, fts=["text"])
    for i in range(150):
        notes.put(f"{n}-{i}", {"writer": n, "text": f"single write {i}"})
    bulk = ({"id": f"{n}-bulk-{i}", "writer": n, "text": "bulk write"} for i in range(300))
    notes.put_many(bulk, key="id")
    for i in range(0, 150, 3):
        notes.delete(f"{n}-{i}")
    with store.transaction():
        for i in range(20):
            notes.put(f"{n}-tx-{i}", {"writer": n, "text": "in one transaction"})
"""


def test_concurrent_writer_processes_lose_nothing(store_url: str) -> None:
    with memstore.Store(store_url) as store:
        store.collection("notes", fields={"writer": str}, fts=["text"])
    env = {"PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(n)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        for n in range(4):
            assert notes.count({"writer": str(n)}) == 100 + 300 + 20
        assert len(notes.search('"bulk write"', limit=2000)) == 1200
        assert len(notes.search('"single write"', limit=2000)) == 400
        assert store.check() == []


KILLED = """
import os, sys, memstore
store = memstore.Store(sys.argv[1])
notes = store.collection("notes", fts=["text"])
notes.put("committed", {"text": "safe"})
with store.transaction():
    notes.put_many([(f"k{i}", {"text": "never committed"}) for i in range(500)])
    notes.put("half", {"text": "never committed"})
    os._exit(9)  # the process dies inside the transaction
"""


def test_killed_process_leaves_no_trace(store_url: str) -> None:
    result = run_python(KILLED, store_url)
    assert result.returncode == 9, result.stderr
    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        assert notes.keys() == ["committed"]
        assert notes.search("committed") == []
        assert store.check() == []
        if not on_postgres(store):  # SQLite's FTS5 index is kept by triggers
            assert len({t for t in triggers(store, "notes") if "fts" in t}) == 3


# Every thread its own Store (its own connection), the first calls of all of them racing to
# create the collection, some to extend its declaration, all writing.
DECLARING = """
import sys, memstore
url, n = sys.argv[1], sys.argv[2]

def work(t):
    with memstore.Store(url, timeout=30) as store:
        notes = store.collection("notes", fields={"writer": str}, fts=["text"])
        if t % 2:
            store.collection("notes", fields={"thread": int}, indexes=[("writer", "thread")])
        for i in range(40):
            notes.put(f"{n}-{t}-{i}", {"writer": n, "thread": t, "text": f"note {i}"})
        notes.put_many([(f"{n}-{t}-bulk-{i}", {"writer": n, "thread": t}) for i in range(60)])
        for i in range(0, 40, 4):
            notes.delete(f"{n}-{t}-{i}")
"""


def test_processes_and_threads_declare_and_write_at_once(store_url: str) -> None:
    """8 processes of 4 threads, each on a connection of its own, on a store with nothing
    in it yet: one of them creates the collection, the others find it; nothing is lost."""
    run_processes(DECLARING, store_url)
    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        assert notes.fields == {"writer": "text", "thread": "integer"}
        assert notes.count() == 8 * 4 * (30 + 60)
        for n in range(8):
            assert notes.count({"writer": str(n), "thread": 3}) == 90
        assert len(notes.search("note", limit=2000)) == 8 * 4 * 30
        assert store.check() == []


FORKED = """
import os, sys, memstore
store = memstore.Store(sys.argv[1])
notes = store.collection("notes")
notes.put("parent", {})
pid = os.fork()
if pid == 0:
    notes.put("child", {})
    os._exit(0 if notes.get("parent") == {} else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
notes.put("parent-again", {})
print(sorted(notes.keys()))
"""


def test_store_survives_fork(db_path: Path) -> None:
    result = run_python(FORKED, str(db_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['child', 'parent', 'parent-again']"


# Every layer at once: each thread its own Store, writing a record with a vector, events,
# messages to a shared thread, checkpoints, a graph's nodes and edges, cache entries and
# a byte store's values, a step at a time, all racing.
EVERY_LAYER = """
import sys, memstore
url, n = sys.argv[1], sys.argv[2]

def work(t):
    me = f"{n}.{t}"
    with memstore.Store(url, timeout=60) as store:
        notes = store.collection("notes", fields={"writer": str}, fts=["text"],
                                 vectors={"dim": 2, "model": "m"})
        log, chat = store.event_log("shared"), store.conversations()
        saves, graph, cache = store.checkpoints(), store.graph("g"), store.cache("c")
        graph.add_node(me, "writer")
        for i in range(10):
            notes.put(f"{me}-{i}", {"writer": me, "text": f"note {i}"}, vector=[1.0, float(i)])
            log.append({"id": f"{me}-{i}", "kind": "step", "payload": {"i": i}})
            chat.add_message("shared", "user", f"{me}-{i}", usage={"input_tokens": 1})
            saves.save(me, {"step": i})
            graph.add_node(f"{me}-{i}", "note")
            graph.add_edge(me, f"{me}-{i}", "wrote")
            cache.set(f"{me}-{i}", i)
"""


def test_every_layer_from_processes_and_threads_at_once(store_url: str) -> None:
    """8 processes of 4 threads, each on a connection of its own, write every layer at once:
    nothing lost, an event log's numbers and a thread's positions gap-free, check clean."""
    with memstore.Store(store_url) as store:
        store.conversations().create_thread("shared")
    run_processes(EVERY_LAYER, store_url)
    writers = [f"{n}.{t}" for n in range(8) for t in range(4)]
    with memstore.Store(store_url) as store:
        notes = store.collection("notes")
        assert notes.count() == 320 and len(notes.nearest([1.0, 9.0], k=1000)) == 320
        assert len(notes.search("note", limit=1000)) == 320
        log = store.event_log("shared")
        assert [e.seq for e in log.read()] == list(range(1, 321)) and log.last_seq() == 320
        chat = store.conversations()
        assert [m.position for m in chat.messages("shared")] == list(range(1, 321))
        assert chat.thread("shared").message_count == 320
        assert chat.usage("shared")["input_tokens"] == 320
        saves = store.checkpoints()
        for writer in writers:
            assert [c.state["step"] for c in saves.history(writer)] == list(range(9, -1, -1))
            assert len(store.graph("g").neighbors(writer)) == 10
        assert len(store.graph("g").nodes()) == 32 * 11
        assert store.cache("c").get("0.0-9") == 9 and store.check() == []
