"""memstore against what a SQLite expert would hand-write for each workload.

    python bench/bench_expert.py                 # paired ratios at N = 100,000
    python bench/bench_expert.py --n 1000000     # the same at 1M records
    python bench/bench_expert.py --scale         # latency, size and memory at 20k, 200k, 1M

bench_core.py measures memstore against raw apsw on memstore's own schema,
which cannot show a gap in the schema itself. Here the reference is the
schema and SQL an expert would write for the workload, on its own apsw
connection, with the same durability (WAL, synchronous=NORMAL) and the same
records, in the same run:

- the events table keeps the JSON record, with real columns for what is
  filtered, ordered or searched; one compound index (agent_id, event_type,
  timestamp) for the 2-field query and one on created_at for deleting by age,
  and one on event_type for counting, nothing else. memstore gets the
  collection a user would declare: the same three fields, the FTS paths and
  ``indexes=[("agent_id", "event_type", "-timestamp")]``.
- the FTS5 index is kept by whichever is faster for the workload, triggers or
  application code (both are timed; the faster one is the reference);
- the messages table has no FTS at all, so conversation append also reports
  WAL pages written per message.

Each workload runs --runs times, the expert and memstore alternately on fresh
copies of the same file; the ratio of each pair is expert time / memstore
time (1.00: as fast as the expert), and the median of those ratios is
reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import (
    FTS,
    PER_THREAD,
    THREADS,
    Record,
    conversation_script,
    delete_older,
    dumps,
    memstore_append,
    memstore_read,
    now_iso,
)
from bench_core import (
    iter_records as records,
)

import memstore

# The collection a user would declare for these workloads: the fields they filter,
# order or count on (the expert's schema has columns for the same), the FTS paths,
# and the index over several fields for the 2-field query.
FIELDS = {"event_type": str, "agent_id": str, "timestamp": str}
INDEXES = [("agent_id", "event_type", "-timestamp")]
# A workload's side: opened on a file (untimed), it gives the timed call and the closer.
Op = tuple[Callable[[], object], Callable[[], None]]
TARGETS = {
    "bulk insert": 0.9,
    "single put": 0.8,
    "get": 0.9,
    "indexed query": 0.8,
    "count(where)": 0.5,
    "search": 0.9,
    "delete by age": 0.8,
    "conversation append": 0.5,
    "thread read": 0.9,
}

EXPERT_SCHEMA = """
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    event_type TEXT,
    agent_id   TEXT,
    timestamp  TEXT,
    summary    TEXT,
    text       TEXT
);
CREATE INDEX events_agent_type_time ON events (agent_id, event_type, timestamp);
CREATE INDEX events_type ON events (event_type);
CREATE INDEX events_created ON events (created_at);
CREATE VIRTUAL TABLE events_fts USING fts5(
    summary, text, content="events", content_rowid="id"
);
CREATE TABLE threads (
    id              TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,
    last_message_at TEXT,
    message_count   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES threads (id),
    position      INTEGER NOT NULL,
    role          TEXT NOT NULL,
    content       TEXT,
    metadata      TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    model         TEXT,
    cost          REAL NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    UNIQUE (thread_id, position)
);
"""
FTS_TRIGGERS = """
CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN
    INSERT INTO events_fts (rowid, summary, text) VALUES (new.id, new.summary, new.text);
END;
CREATE TRIGGER events_ad AFTER DELETE ON events BEGIN
    INSERT INTO events_fts (events_fts, rowid, summary, text)
    VALUES ('delete', old.id, old.summary, old.text);
END;
CREATE TRIGGER events_au AFTER UPDATE ON events BEGIN
    INSERT INTO events_fts (events_fts, rowid, summary, text)
    VALUES ('delete', old.id, old.summary, old.text);
    INSERT INTO events_fts (rowid, summary, text) VALUES (new.id, new.summary, new.text);
END;
"""
INSERT = (
    "INSERT INTO events (key, body, created_at, event_type, agent_id, timestamp, summary, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT = (
    INSERT + " ON CONFLICT (key) DO UPDATE SET body = excluded.body, "
    "event_type = excluded.event_type, agent_id = excluded.agent_id, "
    "timestamp = excluded.timestamp, summary = excluded.summary, text = excluded.text"
)


def row(r: Record, stamp: str) -> tuple[Any, ...]:
    return (
        r["id"],
        dumps(r),
        stamp,
        r.get("event_type"),
        r.get("agent_id"),
        r.get("timestamp"),
        r.get("summary"),
        r.get("text"),
    )


def connect(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5000)
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class Expert:
    """The hand-written reference. ``triggers`` keeps FTS by triggers, else from app code."""

    def __init__(self, path: Path, *, triggers: bool = False) -> None:
        self.conn = connect(path)
        self.triggers = triggers
        if triggers:
            self.conn.execute(FTS_TRIGGERS)

    @staticmethod
    def create(path: Path) -> None:
        conn = connect(path)
        conn.execute(EXPERT_SCHEMA)
        conn.close()

    def bulk_insert(self, rows: Iterator[Record], cache_kib: int | None = None) -> None:
        c, stamp = self.conn, now_iso()
        if cache_kib:
            c.execute(f"PRAGMA cache_size = {-cache_kib}")
        with c:
            first = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchall()[0][0]
            c.executemany(INSERT, (row(r, stamp) for r in rows))
            c.execute(
                "INSERT INTO events_fts (rowid, summary, text) "
                "SELECT id, summary, text FROM events WHERE id > ?",
                (first,),
            )
        c.execute("PRAGMA optimize")

    def put(self, r: Record) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        if self.triggers:
            c.execute(UPSERT, row(r, now_iso()))
        else:
            old = c.execute(
                "SELECT id, summary, text FROM events WHERE key = ?", (r["id"],)
            ).fetchall()
            if old:
                c.execute(
                    "INSERT INTO events_fts (events_fts, rowid, summary, text) "
                    "VALUES ('delete', ?, ?, ?)",
                    old[0],
                )
            new_id = c.execute(UPSERT + " RETURNING id", row(r, now_iso())).fetchall()[0][0]
            c.execute(
                "INSERT INTO events_fts (rowid, summary, text) VALUES (?, ?, ?)",
                (new_id, r.get("summary"), r.get("text")),
            )
        c.execute("COMMIT")

    def get(self, key: str) -> object:
        found = self.conn.execute("SELECT body FROM events WHERE key = ?", (key,)).fetchall()
        if not found:
            raise KeyError(key)
        return json.loads(found[0][0])

    def query(self, agent: str, kind: str) -> list[object]:
        found = self.conn.execute(
            "SELECT body FROM events WHERE agent_id = ? AND event_type = ? "
            "ORDER BY timestamp DESC LIMIT 100",
            (agent, kind),
        )
        return [json.loads(b) for (b,) in found]

    def count(self, kind: str) -> int:
        sql = "SELECT count(*) FROM events WHERE event_type = ?"
        return int(self.conn.execute(sql, (kind,)).fetchall()[0][0])

    def search(self, text: str, agent: str) -> list[object]:
        found = self.conn.execute(
            "SELECT e.key, e.body, events_fts.rank FROM events_fts "
            "JOIN events AS e ON e.id = events_fts.rowid "
            "WHERE events_fts MATCH ? AND e.agent_id = ? ORDER BY events_fts.rank LIMIT 20",
            (text, agent),
        )
        return [(k, json.loads(b), rank) for k, b, rank in found]

    def delete_by_age(self, cutoff: str) -> int:
        return delete_older(self.conn, cutoff, unindex=not self.triggers)

    def close(self) -> None:
        self.conn.close()


def expert_append(conn: apsw.Connection, script: list[tuple[str, str, str, Any]]) -> None:
    """add_message by hand: a transaction per message, next position, insert, thread counts."""
    for t in range(THREADS):
        conn.execute(
            "INSERT INTO threads (id, created_at) VALUES (?, ?)", (f"thread-{t:03d}", now_iso())
        )
    for thread_id, role, text, usage in script:
        usage = usage or {}
        now = now_iso()
        with conn:
            position = conn.execute(
                "SELECT coalesce(max(position), 0) + 1 FROM messages WHERE thread_id = ?",
                (thread_id,),
            ).fetchall()[0][0]
            conn.execute(
                "INSERT INTO messages (thread_id, position, role, content, metadata, "
                "input_tokens, output_tokens, model, cost, created_at) "
                "VALUES (?, ?, ?, ?, '{}', ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    position,
                    role,
                    text,
                    usage.get("input_tokens", 0),
                    usage.get("output_tokens", 0),
                    usage.get("model"),
                    usage.get("cost", 0.0),
                    now,
                ),
            )
            conn.execute(
                "UPDATE threads SET last_message_at = ?, message_count = message_count + 1 "
                "WHERE id = ?",
                (now, thread_id),
            )


def expert_read(conn: apsw.Connection) -> int:
    read = 0
    for t in range(THREADS):
        found = conn.execute(
            "SELECT position, role, content, metadata, input_tokens, output_tokens, model, cost, "
            "created_at FROM messages WHERE thread_id = ? ORDER BY position",
            (f"thread-{t:03d}",),
        )
        read += len([(*r[:3], json.loads(r[3]), *r[4:]) for r in found])
    return read


def wal_pages(path: Path) -> int:
    """Frames in the WAL file: the pages written since autocheckpoint was turned off."""
    size = Path(f"{path}-wal").stat().st_size
    return max(0, (size - 32) // (4096 + 24))


# -- measuring ---------------------------------------------------------------


class Files:
    """Source files built once; every run gets a fresh copy (cp of a live WAL loses rows)."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def checkpoint(self, path: Path) -> None:
        conn = apsw.Connection(str(path))
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        conn.close()

    def copy(self, source: Path, name: str) -> Path:
        path = self.work / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.checkpoint(source)
        shutil.copy(source, path)
        return path


def paired(
    files: Files,
    runs: int,
    expert: Callable[[Path], Op],
    mine: Callable[[Path], Op],
    expert_source: Path,
    mine_source: Path,
    writes: bool,
) -> tuple[float, float, float]:
    """(expert median s, memstore median s, median of the paired ratios)."""
    times: dict[str, list[float]] = {"expert": [], "memstore": []}
    paths = {
        "expert": files.copy(expert_source, "expert.db"),
        "memstore": files.copy(mine_source, "memstore.db"),
    }
    for i in range(runs):
        order = [("expert", expert), ("memstore", mine)]
        for side, fn in order if i % 2 == 0 else reversed(order):
            if writes:
                paths[side] = files.copy(
                    expert_source if side == "expert" else mine_source, f"{side}.db"
                )
            op, close = fn(paths[side])  # opening and closing are not timed
            start = time.perf_counter()
            op()
            times[side].append(time.perf_counter() - start)
            close()
    ratios = [e / m for e, m in zip(times["expert"], times["memstore"], strict=True)]
    return (
        statistics.median(times["expert"]),
        statistics.median(times["memstore"]),
        statistics.median(ratios),
    )


def with_expert(fn: Callable[[Expert], object], *, triggers: bool = False) -> Callable[[Path], Op]:
    def open_(path: Path) -> Op:
        expert = Expert(path, triggers=triggers)
        return lambda: fn(expert), expert.close

    return open_


def with_collection(fn: Callable[[memstore.Collection], object]) -> Callable[[Path], Op]:
    def open_(path: Path) -> Op:
        store = memstore.Store(path)
        events = store.collection("events")
        return lambda: fn(events), store.close

    return open_


def with_store(fn: Callable[[memstore.Store], object]) -> Callable[[Path], Op]:
    def open_(path: Path) -> Op:
        store = memstore.Store(path)
        return lambda: fn(store), store.close

    return open_


def with_connection(fn: Callable[[apsw.Connection], object]) -> Callable[[Path], Op]:
    def open_(path: Path) -> Op:
        conn = connect(path)
        return lambda: fn(conn), conn.close

    return open_


def once(opener: Callable[[Path], Op], path: Path) -> None:
    op, close = opener(path)
    op()
    close()


def declare(path: Path) -> None:
    with memstore.Store(path) as store:
        store.collection("events", fields=FIELDS, fts=FTS, indexes=INDEXES)


def build(work: Path, n: int) -> dict[str, Path]:
    """Empty and full files for both sides, and aged ones (half the records made long ago)."""
    files = {
        name: work / f"{name}.db"
        for name in ("expert-empty", "mine-empty", "expert-full", "mine-full")
    }
    Expert.create(files["expert-empty"])
    declare(files["mine-empty"])
    shutil.copy(files["expert-empty"], files["expert-full"])
    shutil.copy(files["mine-empty"], files["mine-full"])
    once(with_expert(lambda e: e.bulk_insert(records(n))), files["expert-full"])
    once(with_collection(lambda c: c.put_many(records(n), key="id")), files["mine-full"])
    for side in ("expert", "mine"):
        aged = work / f"{side}-aged.db"
        shutil.copy(Files(work).copy(files[f"{side}-full"], f"{side}-aged-src.db"), aged)
        conn = connect(aged)
        conn.execute(
            "UPDATE events SET created_at = '2000-01-01T00:00:00.000000Z' WHERE id % 2 = 0"
        )
        conn.close()
        files[f"{side}-aged"] = aged
    return files


def compare(n: int, runs: int) -> list[tuple[str, str, float, float, float]]:
    work = Path(tempfile.mkdtemp(prefix="memstore-expert-"))
    files, results = build(work, n), []
    copies = Files(work)
    rnd = random.Random(1)
    extra = list(records(2000, seed=99, prefix="new"))
    get_keys = [f"evt-{rnd.randrange(n):07d}" for _ in range(20_000)]
    kinds = ["error", "info", "warn"]
    queries = [(f"agent-{rnd.randrange(50)}", rnd.choice(kinds)) for _ in range(500)]
    texts = ["timeout AND retry", "memory", "tool NOT error", '"context window"']
    # A search ranks every match (common words: most records), so fewer at 1M.
    searches = [
        (rnd.choice(texts), f"agent-{rnd.randrange(50)}")
        for _ in range(max(30, min(300, 300 * 100_000 // n)))
    ]
    count_kinds = [rnd.choice(kinds) for _ in range(50)]
    age = datetime.now(UTC) - datetime(2001, 1, 1, tzinfo=UTC)

    def run(
        name: str,
        what: str,
        expert: Callable[[Path], Op],
        mine: Callable[[Path], Op],
        source: str,
        writes: bool,
    ) -> None:
        e, m, ratio = paired(
            copies, runs, expert, mine, files[f"expert-{source}"], files[f"mine-{source}"], writes
        )
        results.append((name, what, e, m, ratio))
        print(f"{name:20} expert {e:8.4f}s  memstore {m:8.4f}s  ratio {ratio:5.2f}", flush=True)

    run(
        "bulk insert",
        f"{n:,} records, one call",
        with_expert(lambda e: e.bulk_insert(records(n))),
        with_collection(lambda c: c.put_many(records(n), key="id")),
        "empty",
        writes=True,
    )
    run(
        "bulk insert, 64 MiB cache",
        "the same, the expert also raising SQLite's page cache to memstore's bulk size",
        with_expert(lambda e: e.bulk_insert(records(n), cache_kib=memstore.BULK_CACHE_KIB)),
        with_collection(lambda c: c.put_many(records(n), key="id")),
        "empty",
        writes=True,
    )
    # The expert keeps FTS in step by triggers or from application code: the faster one.
    variants = {
        flag: paired(
            copies,
            runs,
            with_expert(lambda e: [e.put(r) for r in extra], triggers=flag),
            with_collection(lambda c: [c.put(str(r["id"]), r) for r in extra]),
            files["expert-full"],
            files["mine-full"],
            True,
        )
        for flag in (False, True)
    }
    e, m, ratio = min(variants.values(), key=lambda v: v[0])
    fastest = "triggers" if variants[True][0] < variants[False][0] else "application code"
    results.append(
        (
            "single put",
            f"{len(extra):,} puts, a transaction each (expert: FTS by {fastest})",
            e,
            m,
            ratio,
        )
    )
    print(f"{'single put':20} expert {e:8.4f}s  memstore {m:8.4f}s  ratio {ratio:5.2f} ({fastest})")
    run(
        "get",
        f"{len(get_keys):,} gets by key",
        with_expert(lambda e: [e.get(k) for k in get_keys]),
        with_collection(lambda c: [c.get(k) for k in get_keys]),
        "full",
        writes=False,
    )
    run(
        "indexed query",
        f"{len(queries)} queries: 2 fields, ordered, limit 100",
        with_expert(lambda e: [e.query(a, k) for a, k in queries]),
        with_collection(
            lambda c: [
                c.query({"agent_id": a, "event_type": k}, order_by="-timestamp", limit=100)
                for a, k in queries
            ]
        ),
        "full",
        writes=False,
    )
    run(
        "count(where)",
        f"{len(count_kinds)} counts of one event type",
        with_expert(lambda e: [e.count(k) for k in count_kinds]),
        with_collection(lambda c: [c.count({"event_type": k}) for k in count_kinds]),
        "full",
        writes=False,
    )
    run(
        "search",
        f"{len(searches)} searches with a filter, top 20",
        with_expert(lambda e: [e.search(t, a) for t, a in searches]),
        with_collection(lambda c: [c.search(t, where={"agent_id": a}) for t, a in searches]),
        "full",
        writes=False,
    )
    delete_variants = [
        paired(
            copies,
            runs,
            with_expert(lambda e: e.delete_by_age("2001-01-01T00:00:00.000000Z"), triggers=flag),
            with_collection(lambda c: c.cleanup(older_than=age)),
            files["expert-aged"],
            files["mine-aged"],
            True,
        )
        for flag in (False, True)
    ]
    e, m, ratio = min(delete_variants, key=lambda v: v[0])
    results.append(("delete by age", f"{n // 2:,} of {n:,} records, batches of 1000", e, m, ratio))
    print(f"{'delete by age':20} expert {e:8.4f}s  memstore {m:8.4f}s  ratio {ratio:5.2f}")

    script = conversation_script()

    expert_conv = with_connection(lambda conn: expert_append(conn, script))
    mine_conv = with_store(lambda store: memstore_append(store, script))

    run(
        "conversation append",
        f"{THREADS} threads x {PER_THREAD} messages, a transaction each",
        expert_conv,
        mine_conv,
        "empty",
        writes=True,
    )
    for side, fn in (("expert", expert_conv), ("mine", mine_conv)):
        files[f"{side}-chat"] = copies.copy(files[f"{side}-empty"], f"{side}-chat.db")
        once(fn, files[f"{side}-chat"])
    run(
        "thread read",
        f"every message of {THREADS} threads, in order",
        with_connection(expert_read),
        with_store(memstore_read),
        "chat",
        writes=False,
    )
    pages = {}
    for side, fn in (("expert", expert_conv), ("mine", mine_conv)):
        path = copies.copy(files[f"{side}-empty"], f"{side}-pages.db")
        pages[side] = measure_wal_pages(path, fn)
    results.append(
        (
            "WAL pages per append",
            "pages written to the WAL per message",
            pages["expert"],
            pages["mine"],
            pages["expert"] / pages["mine"],
        )
    )
    print(f"WAL pages per append: expert {pages['expert']:.1f}  memstore {pages['mine']:.1f}")
    shutil.rmtree(work, ignore_errors=True)
    return results


def measure_wal_pages(path: Path, fn: Callable[[Path], Op]) -> float:
    """WAL pages per message, with checkpoints held off by a reader kept open on the file."""
    holder = apsw.Connection(str(path))
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM sqlite_master").fetchall()  # pins the WAL
    try:
        op, close = fn(path)
        op()
        pages = wal_pages(path) / (THREADS * PER_THREAD)
        close()
        return pages
    finally:
        holder.execute("COMMIT")
        holder.close()


def table(results: list[tuple[str, str, float, float, float]], n: int, runs: int) -> str:
    lines = [
        f"N = {n:,} records, median of {runs} paired runs; SQLite {apsw.sqlite_lib_version()}, "
        f"apsw {apsw.apsw_version()}, Python {sys.version.split()[0]}",
        "",
        "| workload | what | expert | memstore | expert / memstore | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, what, e, m, ratio in results:
        if name == "WAL pages per append":
            lines.append(f"| {name} | {what} | {e:.1f} | {m:.1f} | {ratio:.2f} | |")
            continue
        target = TARGETS.get(name)
        verdict = (
            "" if target is None else f"≥ {target} " + ("met" if ratio >= target else "MISSED")
        )
        lines.append(f"| {name} | {what} | {e:.3f} s | {m:.3f} s | {ratio:.2f} | {verdict} |")
    return "\n".join(lines)


# -- scale: latency, size and memory ---------------------------------------------


def scale_child(path: str, n: int, side: str) -> None:
    """Run in a subprocess: p50/p95 of get, indexed query and count; peak RSS."""
    rnd = random.Random(3)
    kinds = ["error", "info", "warn"]
    calls: dict[str, Callable[[], object]]
    if side == "expert":
        expert = Expert(Path(path))
        calls = {
            "get": lambda: expert.get(f"evt-{rnd.randrange(n):07d}"),
            "indexed query": lambda: expert.query(f"agent-{rnd.randrange(50)}", rnd.choice(kinds)),
            "count(where)": lambda: expert.count(rnd.choice(kinds)),
        }
    else:
        c = memstore.Store(path).collection("events")
        calls = {
            "get": lambda: c.get(f"evt-{rnd.randrange(n):07d}"),
            "indexed query": lambda: c.query(
                {"agent_id": f"agent-{rnd.randrange(50)}", "event_type": rnd.choice(kinds)},
                order_by="-timestamp",
                limit=100,
            ),
            "count(where)": lambda: c.count({"event_type": rnd.choice(kinds)}),
        }
    out: dict[str, Any] = {}
    for name, call in calls.items():
        for _ in range(20):  # warm the page cache
            call()
        times = []
        repeat = 2000 if name == "get" else 200 if name == "indexed query" else 30
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        times.sort()
        out[name] = (times[len(times) // 2], times[int(len(times) * 0.95)])
    # VmHWM, not ru_maxrss: Linux carries the parent's peak over into a child's ru_maxrss.
    status = Path("/proc/self/status").read_text()
    out["peak_rss"] = int(status.split("VmHWM:")[1].split()[0]) * 1024
    print(json.dumps(out))


def scale(sizes: list[int]) -> str:
    work = Path(tempfile.mkdtemp(prefix="memstore-scale-"))
    lines = [
        "| records | side | get p50 / p95 | indexed query p50 / p95 | count(where) p50 / p95 "
        "| bytes per record | peak RSS |",
        "|---:|---|---|---|---|---:|---:|",
    ]
    for n in sizes:
        for side in ("expert", "memstore"):
            fill = records(n)
            path = work / f"{side}-{n}.db"
            if side == "expert":
                Expert.create(path)
                once(with_expert(lambda e, rows=fill: e.bulk_insert(rows)), path)
            else:
                declare(path)
                once(with_collection(lambda c, rows=fill: c.put_many(rows, key="id")), path)
            Files(work).checkpoint(path)
            size = path.stat().st_size
            child = subprocess.run(
                [sys.executable, __file__, "--scale-child", str(path), str(n), side],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(child.stdout)
            cells = [
                f"{got[k][0] * 1000:.3f} / {got[k][1] * 1000:.3f} ms"
                for k in ("get", "indexed query", "count(where)")
            ]
            lines.append(
                f"| {n:,} | {side} | {' | '.join(cells)} | {size / n:.0f} | "
                f"{got['peak_rss'] / 2**20:.0f} MiB |"
            )
            print(lines[-1], flush=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--scale-child":
        scale_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="records in the store")
    parser.add_argument("--runs", type=int, default=5, help="paired runs per workload")
    parser.add_argument(
        "--scale",
        nargs="*",
        type=int,
        metavar="N",
        help="latency, bytes per record and peak RSS at these sizes (default 20k 200k 1M)",
    )
    args = parser.parse_args()
    if args.scale is not None:
        print()
        print(scale(args.scale or [20_000, 200_000, 1_000_000]))
        return
    results = compare(args.n, args.runs)
    print()
    print(table(results, args.n, args.runs))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
