"""The reliability suite: crashes, contention, a model of the API, and generated hostile input.

- Crashes: a real process writes every layer and says what was acknowledged;
  it is killed (SIGKILL) at a random moment; nothing acknowledged may be lost
  and the file must pass a full check. ``MEMSTORE_CRASH_TRIALS=200`` runs 200
  trials (the README's figures); the everyday run does a few.
- Contention: processes times threads writing at once, a stdlib reader and a
  backup beside them: no BusyError, nothing lost.
- A hypothesis state machine drives the public API against a plain-Python model.
- Generated hostile input at every public entry point and the command line:
  a correct result or a memstore error, and the stored data's fingerprint
  unchanged when refused.

Each test writes what it measured to artifacts/reliability/<name>.json.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import memstore

from . import postgres
from .conftest import CIPHERS, PYTHONPATH, ROOT, TEST_KEY, memstore_cli
from .test_hostile import fingerprint

FIGURES = ROOT / "artifacts" / "reliability"
CRASH_TRIALS = int(os.environ.get("MEMSTORE_CRASH_TRIALS", "6"))


def record(name: str, figures: dict[str, Any]) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


# --------------------------------------------------------------------------
# Crashes
# --------------------------------------------------------------------------

WRITER = r"""
import os, sys, memstore
store = memstore.Store(sys.argv[1], key=os.environ.get("MEMSTORE_TEST_KEY"))
notes = store.collection("notes", fields={"n": int}, fts=["text"], history=True)
log = store.event_log("agent")
conv = store.conversations()
if "chat" not in {t.id for t in conv.threads()}:
    conv.create_thread("chat")
cp = store.checkpoints()
cache = store.cache("llm")
graph = store.graph("facts")
start = int(sys.argv[2])
def ack(*parts):
    print(*parts, flush=True)
for i in range(start, start + 100000):
    notes.put(f"n{i}", {"n": i, "text": f"note {i}"}); ack("note", f"n{i}")
    seq = log.append({"id": f"e{i}", "kind": "tick", "payload": {"i": i}})
    ack("event", f"e{i}", seq)
    pos = conv.add_message("chat", "user", f"message {i}"); ack("message", pos)
    cid = cp.save("chat", {"i": i}); ack("checkpoint", cid)
    cache.set(f"k{i}", i); ack("cache", f"k{i}")
    graph.add_node(f"x{i}", "thing"); ack("node", f"x{i}")
    if i % 7 == 0:
        notes.put_many([(f"b{i}-{j}", {"n": j, "text": "bulk"}) for j in range(80)])
        ack("bulk", i)
    if i % 5 == 0:
        notes.put(f"n{i}", {"n": -i, "text": f"note {i} again"}); ack("again", f"n{i}")
"""


def crash_trial(
    path: Path | str,
    start: int,
    delay: float,
    crash: Callable[[], None] | None = None,
    key: str | None = None,
) -> dict[str, list[list[str]]]:
    """Run the writer (on a file encrypted with ``key``, if given), kill it after ``delay``
    seconds (or ``crash`` its database server under it, when given); return what it
    acknowledged."""
    secret = {"MEMSTORE_TEST_KEY": key} if key is not None else {}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(start)],
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    if crash is None:
        proc.send_signal(signal.SIGKILL)
    else:
        crash()
    out, err = proc.communicate(timeout=60)
    if crash is None:
        assert proc.returncode == -signal.SIGKILL, err
    else:  # the writer's next statement met the lost connection: a memstore error
        assert proc.returncode == 1 and "memstore.MemstoreError" in err, err
    acks: dict[str, list[list[str]]] = {}
    complete = out[: out.rfind("\n") + 1]  # a line cut short by the kill acknowledges nothing
    for line in complete.splitlines():
        kind, *rest = line.split()
        acks.setdefault(kind, []).append(rest)
    return acks


def verify(path: Path | str, acks: dict[str, list[list[str]]], key: str | None = None) -> int:
    """Every acknowledged write is in the file, and the file is sound; return how many."""
    with memstore.Store(path, key=key) as store:
        assert store.check(full=True) == []
        notes = store.collection("notes")
        log = store.event_log("agent")
        conv = store.conversations()
        for (key,) in acks.get("note", []):
            assert key in notes
        for key, seq in acks.get("event", []):
            assert log.get(key).seq == int(seq)
        positions = {m.position for m in conv.messages("chat")}
        assert {int(p) for (p,) in acks.get("message", [])} <= positions
        for (cid,) in acks.get("checkpoint", []):
            store.checkpoints().get(cid)
        cache = store.cache("llm")
        for (key,) in acks.get("cache", []):
            assert key in cache
        for (node,) in acks.get("node", []):
            store.graph("facts").node(node)
        for (i,) in acks.get("bulk", []):
            assert notes.count({"key": {"$in": [f"b{i}-{j}" for j in range(80)]}}) == 80
        for (key,) in acks.get("again", []):
            assert notes.get(key)["n"] <= 0
        assert [e.seq for e in log.read()] == list(range(1, log.last_seq() + 1))
        return sum(len(v) for v in acks.values())


def test_killed_writers_lose_no_acknowledged_write(store_url: str) -> None:
    """On PostgreSQL the server rolls back what a killed client left open, and releases
    its locks (the next writer's sequences go on without a gap)."""
    postgresql = store_url.startswith("postgresql://")
    rnd = random.Random(20261122)
    acknowledged = 0
    for trial in range(CRASH_TRIALS):
        delay = rnd.uniform(0.4, 1.2) if postgresql else rnd.uniform(0.15, 0.6)
        acks = crash_trial(store_url, trial * 100_000, delay)
        acknowledged += verify(store_url, acks)
    assert acknowledged > 0
    record(
        "crash-postgresql" if postgresql else "crash",
        {"trials": CRASH_TRIALS, "acknowledged_writes": acknowledged, "lost": 0},
    )


@pytest.mark.skipif(not CIPHERS, reason="needs apsw-sqlite3mc (.ci/run's .venv-encrypted)")
def test_killed_writers_lose_no_acknowledged_write_to_an_encrypted_file(tmp_path: Path) -> None:
    path, rnd, acknowledged = tmp_path / "agent.db", random.Random(20261204), 0
    for trial in range(CRASH_TRIALS):
        acks = crash_trial(path, trial * 100_000, rnd.uniform(0.15, 0.6), key=TEST_KEY)
        acknowledged += verify(path, acks, key=TEST_KEY)
    assert acknowledged > 0 and memstore.looks_encrypted(path)
    record("crash-encrypted", {"trials": CRASH_TRIALS, "acknowledged_writes": acknowledged})


def test_a_crashed_server_loses_no_acknowledged_write() -> None:
    """The server itself crashes under the writer (every backend killed, no checkpoint)
    and recovers from its WAL: with its durable defaults (fsync, synchronous_commit on),
    every write memstore acknowledged is there, and every sequence gap-free."""
    try:
        server, home = postgres.start(durable=True)
    except postgres.Unavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {err}")
        pytest.skip(str(err))
    if home is None:
        server.stop()
        pytest.skip("MEMSTORE_TEST_PG names a server that is not the suite's to crash")
    rnd = random.Random(20261205)
    trials, acknowledged = max(2, CRASH_TRIALS // 2), 0
    try:
        url = server.new_database()
        for trial in range(trials):
            delay = rnd.uniform(0.6, 1.5)
            acks = crash_trial(url, trial * 100_000, delay, server.crash_and_restart)
            acknowledged += verify(url, acks)
    finally:
        server.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    assert acknowledged > 0
    record(
        "server-crash-postgresql",
        {"trials": trials, "acknowledged_writes": acknowledged, "lost": 0},
    )


# --------------------------------------------------------------------------
# Contention
# --------------------------------------------------------------------------

CONTENDER = r"""
import sys, threading, memstore
path, n = sys.argv[1], sys.argv[2]
errors = []
def work(t):
    try:
        with memstore.Store(path) as store:
            notes = store.collection("notes", fields={"w": str}, fts=["text"])
            log = store.event_log(f"log-{n}-{t}")
            for i in range(60):
                notes.put(f"{n}-{t}-{i}", {"w": f"{n}-{t}", "text": f"written {i}"})
                log.append({"kind": "tick"})
                if i % 20 == 0:
                    notes.put_many([(f"{n}-{t}-b{i}-{j}", {"w": f"{n}-{t}"}) for j in range(70)])
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(len(errors)); print("\n".join(errors))
"""


def test_processes_and_threads_with_a_reader_and_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    memstore.Store(path).collection("notes", fields={"w": str}, fts=["text"])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(path), str(n)],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    reads, stop = [0], threading.Event()

    def read() -> None:  # Python's own sqlite3, as another tool would
        conn = sqlite3.connect(path, timeout=30)
        while not stop.is_set():
            conn.execute("SELECT count(*) FROM notes").fetchall()
            reads[0] += 1
        conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    with memstore.Store(path) as store:
        store.backup(tmp_path / "during.db")
    busy_errors = 0
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        busy_errors += int(out.splitlines()[0])
        assert out.splitlines()[0] == "0", out
    stop.set()
    reader.join()
    with memstore.Store(path) as store:
        notes = store.collection("notes")
        for n in range(3):
            for t in range(3):
                assert notes.count({"w": f"{n}-{t}"}) == 60 + 3 * 70
                assert len(store.event_log(f"log-{n}-{t}")) == 60
        assert store.check(full=True) == []
    with memstore.Store(tmp_path / "during.db") as copy:
        assert copy.check(full=True) == []
    assert reads[0] > 0
    record(
        "contention",
        {
            "processes": 3,
            "threads_each": 3,
            "writes": 9 * (60 * 2 + 3 * 70),
            "stdlib_reads": reads[0],
            "busy_errors": busy_errors,
        },
    )


# --------------------------------------------------------------------------
# The public API against a plain-Python model
# --------------------------------------------------------------------------

small_keys = st.sampled_from([f"k{i}" for i in range(8)])
small_records = st.fixed_dictionaries(
    {"n": st.integers(-5, 5), "text": st.sampled_from(["alpha", "beta", "alpha beta", ""])}
)


class StoreModel(RuleBasedStateMachine):
    """Collections, an event log and a cache, checked against dicts and lists after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"memstore-model-{os.getpid()}"
        self.dir.mkdir(exist_ok=True)
        self.path = self.dir / f"model-{time.monotonic_ns()}.db"
        self.store = memstore.Store(self.path)
        self.notes = self.store.collection("notes", fields={"n": int}, fts=["text"])
        self.model: dict[str, dict[str, Any]] = {}
        self.events: list[str] = []
        self.cache: dict[str, Any] = {}

    @rule(key=small_keys, record=small_records)
    def put(self, key: str, record: dict[str, Any]) -> None:
        self.notes.put(key, record)
        self.model[key] = record

    @rule(batch=st.dictionaries(small_keys, small_records, max_size=8))
    def put_many(self, batch: dict[str, dict[str, Any]]) -> None:
        assert self.notes.put_many(batch) == len(batch)
        self.model.update(batch)

    @rule(key=small_keys)
    def delete(self, key: str) -> None:
        assert self.notes.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(n=st.integers(-5, 5))
    def delete_where(self, n: int) -> None:
        gone = [k for k, r in self.model.items() if r["n"] > n]
        assert self.notes.delete_where({"n": {"$gt": n}}) == len(gone)
        for k in gone:
            del self.model[k]

    @rule(key=small_keys, record=small_records)
    def failed_transaction(self, key: str, record: dict[str, Any]) -> None:
        with pytest.raises(ZeroDivisionError), self.store.transaction():
            self.notes.put(key, record)
            self.store.event_log("agent").append({"kind": "lost"})
            _ = 1 / 0

    @rule(kind=st.sampled_from(["a", "b"]))
    def append(self, kind: str) -> None:
        seq = self.store.event_log("agent").append({"kind": kind})
        self.events.append(kind)
        assert seq == len(self.events)

    @rule(key=small_keys, value=st.integers())
    def cache_set(self, key: str, value: int) -> None:
        self.store.cache("c").set(key, value)
        self.cache[key] = value

    @rule(keep=st.integers(0, 8))
    def keep_last(self, keep: int) -> None:
        kept = set(self.notes.keys(order_by=["-created_at"], limit=keep)) if keep else set()
        self.notes.cleanup(keep_last=keep)
        assert set(self.notes.keys()) == kept
        self.model = {k: v for k, v in self.model.items() if k in kept}

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = memstore.Store(self.path)
        self.notes = self.store.collection("notes")

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert {r.key: r.record for r in self.notes.rows()} == self.model
        assert self.notes.count({"n": {"$gte": 0}}) == sum(r["n"] >= 0 for r in self.model.values())
        found = {h.key for h in self.notes.search("alpha", limit=100)}
        assert found == {k for k, r in self.model.items() if "alpha" in r["text"]}
        assert [e.kind for e in self.store.event_log("agent").read()] == self.events
        cache = self.store.cache("c")
        assert all(cache.get(k) == v for k, v in self.cache.items())

    def teardown(self) -> None:
        assert self.store.check() == []
        self.store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


StoreModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, print_blob=True
)
test_store_against_a_model = StoreModel.TestCase


# --------------------------------------------------------------------------
# Generated hostile input at every public entry point and the command line
# --------------------------------------------------------------------------

hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**400, -1, 0]),
    st.floats(),  # NaN and infinities too
    st.text(max_size=20),
    st.sampled_from(["\ud800", "\x00", "", " ", "a" * 5000, "$gt", "'; DROP TABLE notes; --"]),
    st.binary(max_size=8),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.sampled_from([timedelta(days=10**6), timedelta(seconds=-1), object(), math.inf]),
)
hostile = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.one_of(st.text(max_size=5), st.none(), st.integers()), children, max_size=3
        )
    ),
    max_leaves=8,
)

ENTRY_POINTS: dict[str, Callable[[memstore.Store, Any], Any]] = {
    "Store": lambda s, v: memstore.Store(":memory:", timeout=v),
    "Store max_size": lambda s, v: memstore.Store(":memory:", max_size=v),
    "collection name": lambda s, v: s.collection(v),
    "collection fields": lambda s, v: s.collection("notes", fields=v),
    "collection fts": lambda s, v: s.collection("notes", fts=v),
    "collection ttl": lambda s, v: s.collection("notes", ttl=v),
    "put key": lambda s, v: s.collection("notes").put(v, {"n": 1}),
    "put record": lambda s, v: s.collection("notes").put("k", v),
    "put ttl": lambda s, v: s.collection("notes").put("k", {"n": 1}, ttl=v),
    "put_many": lambda s, v: s.collection("notes").put_many(v),
    "get": lambda s, v: s.collection("notes").get(v, None),
    "query where": lambda s, v: s.collection("notes").query(v),
    "query field": lambda s, v: s.collection("notes").query({"n": v}),
    "query order_by": lambda s, v: s.collection("notes").query(order_by=v),
    "query limit": lambda s, v: s.collection("notes").query(limit=v),
    "search": lambda s, v: s.collection("notes").search(v),
    "aggregate": lambda s, v: s.collection("notes").aggregate(v, of="n"),
    "cleanup": lambda s, v: s.collection("notes").cleanup(older_than=v),
    "delete_where": lambda s, v: s.collection("notes").delete_where(v),
    "store cleanup": lambda s, v: s.cleanup(keep_last=v),
    "event append": lambda s, v: s.event_log("log").append(v),
    "event payload": lambda s, v: s.event_log("log").append({"kind": "k", "payload": v}),
    "event read": lambda s, v: s.event_log("log").read(since=v),
    "thread": lambda s, v: s.conversations().create_thread(v),
    "message": lambda s, v: s.conversations().add_message("t", "user", v),
    "message usage": lambda s, v: s.conversations().add_message("t", "user", "x", usage=v),
    "threads": lambda s, v: s.conversations().threads(user_id=v),
    "checkpoint": lambda s, v: s.checkpoints().save("t", v),
    "checkpoint find": lambda s, v: s.checkpoints().find("t", where=v),
    "checkpoint history": lambda s, v: s.checkpoints().history("t", before=v),
    "graph node": lambda s, v: s.graph("g").add_node(v, "kind", None),
    "graph props": lambda s, v: s.graph("g").add_node("x", "kind", v),
    "graph neighbors": lambda s, v: s.graph("g").neighbors("x", depth=v),
    "cache set": lambda s, v: s.cache("c").set("k", v),
    "cache ttl": lambda s, v: s.cache("c").set("k", 1, ttl=v),
    "profile": lambda s, v: s.graph("g").set_profile("p", v),
    # every other public call, with the hostile value where a caller could put it
    "add": lambda s, v: s.collection("notes").add(v),
    "delete": lambda s, v: s.collection("notes").delete(v),
    "contains": lambda s, v: v in s.collection("notes"),
    "keys": lambda s, v: s.collection("notes").keys(offset=v),
    "rows": lambda s, v: list(s.collection("notes").rows(v)),
    "count": lambda s, v: s.collection("notes").count(v),
    "aggregate of": lambda s, v: s.collection("notes").aggregate(of=v),
    "percentiles": lambda s, v: s.collection("notes").aggregate(of="n", percentiles=v),
    "search where": lambda s, v: s.collection("notes").search("a", where=v),
    "search highlight": lambda s, v: s.collection("notes").search("a", highlight=v),
    "set_ttl": lambda s, v: s.collection("notes").set_ttl(v),
    "import_rows": lambda s, v: s.collection("notes").import_rows(v),
    "import row": lambda s, v: s.collection("notes").import_rows([{"key": "k", "record": v}]),
    "history": lambda s, v: s.collection("notes").history(v),
    "revert": lambda s, v: s.collection("notes").revert("k", v),
    "drop_collection": lambda s, v: s.drop_collection(v),
    "event log name": lambda s, v: s.event_log(v).append({"kind": "k"}),
    "append_many": lambda s, v: s.event_log("log").append_many(v),
    "event get": lambda s, v: s.event_log("log").get(v),
    "tail": lambda s, v: s.event_log("log").tail(v),
    "replay": lambda s, v: s.event_log("log").replay(lambda a, e: a, v, until=v),
    "snapshot": lambda s, v: s.event_log("log").snapshot(v),
    "event search": lambda s, v: s.event_log("log").search("start", kinds=v),
    "event cleanup": lambda s, v: s.event_log("log").cleanup(keep_last=v),
    "thread get": lambda s, v: s.conversations().thread(v),
    "messages": lambda s, v: s.conversations().messages("t", before=v),
    "last_messages": lambda s, v: s.conversations().last_messages("t", v),
    "tool calls": lambda s, v: s.conversations().add_message("t", "assistant", "x", tool_calls=v),
    "message role": lambda s, v: s.conversations().add_message("t", v, "x"),
    "trim": lambda s, v: s.conversations().trim("t", keep_last=v),
    "usage": lambda s, v: s.conversations().usage(v),
    "conversation search": lambda s, v: s.conversations().search(v),
    "branch": lambda s, v: s.conversations().branch("t", at=v),
    "merge": lambda s, v: s.conversations().merge(v),
    "abandon": lambda s, v: s.conversations().abandon("t", reason=v),
    "tree": lambda s, v: s.conversations().tree(v),
    "threads order": lambda s, v: s.conversations().threads(order_by=v),
    "checkpoint get": lambda s, v: s.checkpoints().get(v),
    "checkpoint metadata": lambda s, v: s.checkpoints().save("t", {}, metadata=v),
    "checkpoint tags": lambda s, v: s.checkpoints().save("t", {}, tags=v),
    "checkpoint branch": lambda s, v: s.checkpoints().branch(v, name="b"),
    "checkpoint latest": lambda s, v: s.checkpoints().latest("t", branch=v),
    "checkpoint diff": lambda s, v: s.checkpoints().diff(v),
    "checkpoint cleanup": lambda s, v: s.checkpoints().cleanup("t", keep_last=v),
    "edge": lambda s, v: s.graph("g").add_edge("x", v, "r"),
    "edge weight": lambda s, v: s.graph("g").add_edge("x", "x2", "r", weight=v),
    "nodes": lambda s, v: s.graph("g").nodes(kind=v),
    "neighbors direction": lambda s, v: s.graph("g").neighbors("x", direction=v),
    "graph import": lambda s, v: s.graph("g2").import_(v),
    "cache get": lambda s, v: s.cache("c").get(v),
    "cache name": lambda s, v: s.cache(v),
    "memoize": lambda s, v: s.cache("c").memoize()(lambda *a: 1)(v),
    "state_diff": lambda s, v: memstore.state_diff(v, {"a": v}),
    "check_collection_name": lambda s, v: memstore.check_collection_name(v),
    "Key": lambda s, v: memstore.Key(v),
    "Store key": lambda s, v: memstore.Store(":memory:", key=v),
    "looks_encrypted": lambda s, v: memstore.looks_encrypted(v),
    "encrypt path": lambda s, v: memstore.encrypt(v, "k"),
    "encrypt key": lambda s, v: memstore.encrypt("/nonexistent/agent.db", v),
    "rekey new_key": lambda s, v: memstore.rekey("/nonexistent/agent.db", "k", v),
    "decrypt dest": lambda s, v: memstore.decrypt("/nonexistent/agent.db", v, "k"),
    "Store path": lambda s, v: memstore.Store(v, create=False).close(),
    "StorePool path": lambda s, v: memstore.StorePool(v, create=False).close(),
    "StorePool size": lambda s, v: memstore.StorePool(s.path, size=v).close(),
    "StorePool wait": lambda s, v: memstore.StorePool(s.path, wait=v).close(),
    "copy source": lambda s, v: memstore.copy(v, "/nonexistent/copy.db"),
}

HOSTILE_SETTINGS = settings(
    max_examples=int(os.environ.get("MEMSTORE_HOSTILE_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TRIED: dict[str, int] = {"calls": 0, "refused": 0, "raw_errors": 0}


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[memstore.Store]:
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    with memstore.Store(path) as store:
        notes = store.collection("notes", fields={"n": int}, fts=["text"], history=True)
        notes.put("k", {"n": 1, "text": "a"})
        store.event_log("log").append({"kind": "start"})
        store.conversations().create_thread("t")
        store.checkpoints().save("t", {"step": 1})
        store.graph("g").add_node("x", "kind")
        store.graph("g").add_node("x2", "kind")
        yield store
    record("hostile", TRIED)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@HOSTILE_SETTINGS
@given(value=hostile)
def test_generated_hostile_input(hostile_store: memstore.Store, entry: str, value: Any) -> None:
    before = fingerprint(hostile_store)
    TRIED["calls"] += 1
    try:
        ENTRY_POINTS[entry](hostile_store, value)
    except memstore.MemstoreError:
        TRIED["refused"] += 1
        assert fingerprint(hostile_store) == before
    except Exception:
        TRIED["raw_errors"] += 1
        raise
    assert hostile_store.check() == []


texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "-1", "0", "7", "7d", "1e400s", "99999999999d", "\ud800", "a" * 300]),
)
json_texts = st.one_of(
    st.sampled_from(["{bad", "[]", "null", '{"n": {"$gt": 99999999999999999999}}', '{"$or": []}']),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=6,
    ).map(lambda v: json.dumps(v, allow_nan=True)),
)
CLI_ARGS = st.one_of(
    st.tuples(st.just("put"), st.just("notes"), texts, json_texts).map(list),
    st.tuples(st.just("put"), st.just("notes"), st.just("--ttl"), texts, texts).map(list),
    st.tuples(st.just("get"), st.sampled_from(["notes", "nope"]), texts).map(list),
    st.tuples(st.just("delete"), st.just("notes"), texts).map(list),
    st.tuples(st.just("query"), st.just("notes"), st.just("--where"), json_texts).map(list),
    st.tuples(st.just("query"), st.just("notes"), st.just("--order-by"), texts).map(list),
    st.tuples(st.just("search"), st.just("notes"), texts).map(list),
    st.tuples(st.just("cleanup"), st.just("--older-than"), texts).map(list),
    st.tuples(st.just("cleanup"), st.just("--keep-last"), texts, st.just("--dry-run")).map(list),
    st.tuples(st.just("collection"), st.just("create"), texts, st.just("--field"), texts).map(list),
    st.tuples(st.just("collection"), st.just("create"), texts, st.just("--fts"), texts).map(list),
    st.tuples(st.just("collection"), st.sampled_from(["show", "drop"]), texts).map(list),
    st.lists(texts, max_size=5),
)
NDJSON = st.one_of(
    st.none(),
    st.lists(json_texts, max_size=4).map("\n".join),
    st.text(max_size=40),
)


CLI_TRIED: dict[str, Any] = {"calls": 0, "by_exit_code": {}}


@settings(
    max_examples=int(os.environ.get("MEMSTORE_CLI_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(args=CLI_ARGS, stdin=NDJSON)
def test_generated_command_lines(tmp_path: Path, args: list[str], stdin: str | None) -> None:
    db = tmp_path / "cli.db"
    if not db.exists():
        with memstore.Store(db) as store:
            store.collection("notes", fields={"n": int}).put("k", {"n": 1})
    safe = [a for a in args if a not in {"export", "import", "backup"}]  # they would write files
    result = memstore_cli(*safe, db=db, stdin=stdin)  # a traceback is re-raised here
    CLI_TRIED["calls"] += 1
    assert result.returncode in (0, 1, 2, 3, 4), result
    codes = CLI_TRIED["by_exit_code"]
    codes[str(result.returncode)] = codes.get(str(result.returncode), 0) + 1
    record("cli", CLI_TRIED)
    with memstore.Store(db) as store:
        assert store.check() == []
