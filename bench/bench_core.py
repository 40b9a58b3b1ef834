"""memstore against hand-written apsw code on the same schema, in the same run.

    python bench/bench_core.py            # N = 100,000 records
    python bench/bench_core.py --n 20000  # quicker

Both sides get a file laid out by memstore.Store.collection: the same table,
generated columns, indexes and FTS5 table, WAL, synchronous=NORMAL. Each
workload has the same meaning on both sides (reads skip expired records,
the FTS index is kept in step, cleanup deletes in batches of 1000). The raw
side uses the faster of two hand-written ways to keep FTS in step: from
application code (triggers dropped) or by the triggers. Times are the best of
--runs, on a fresh copy of the file for workloads that write. The ratio is
raw time / memstore time: 1.00 means as fast as raw apsw.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memstore

FIELDS = {"event_type": str, "agent_id": str, "timestamp": str, "duration": float}
FTS = ["summary", "text"]
WORDS = [
    *["agent", "tool", "call", "timeout", "retry", "error", "plan", "search", "memory"],
    *["cache", "result", "user", "answer", "model", "token", "budget", "context", "window"],
    *["step", "task", "goal", "observation"],
]
TARGETS = {
    "bulk insert": 0.9,
    "single put": 0.8,
    "get": 0.7,
    "indexed query": 0.8,
    "search": 0.9,
    "cleanup": 0.8,
    "conversation append": 0.8,
}
TRIGGERS = ("events__fts_insert", "events__fts_delete", "events__fts_update")
INSERT = (
    "INSERT INTO events (key, body, created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, NULL)"
)
FTS_NEW_ROWS = (
    "INSERT INTO events_fts (rowid, summary, text) "
    "SELECT id, summary, text FROM events WHERE id > ?"
)

Record = dict[str, object]


def iter_records(n: int, seed: int = 7, prefix: str = "evt") -> Iterator[Record]:
    """Agent events of about 450 bytes of JSON, one at a time (a million fit nowhere twice)."""
    rnd = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(n):
        yield {
            "id": f"{prefix}-{i:07d}",
            "event_type": rnd.choice(["error", "info", "warn", "tool_call", "decision"]),
            "agent_id": f"agent-{rnd.randrange(50)}",
            "timestamp": (start + timedelta(seconds=i * 7)).isoformat(),
            "duration": round(rnd.random() * 10, 3),
            "summary": " ".join(rnd.choices(WORDS, k=6)),
            "text": " ".join(rnd.choices(WORDS, k=25)),
            "payload": {
                "tool": rnd.choice(["web", "python", "sql"]),
                "tokens": rnd.randrange(4000),
            },
        }


def make_records(n: int, seed: int = 7, prefix: str = "evt") -> list[Record]:
    return list(iter_records(n, seed, prefix))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(record: object) -> str:
    return ENCODER.encode(record)


class Raw:
    """The hand-written reference on an apsw connection of its own.

    With ``triggers=False`` it drops memstore's FTS triggers and keeps the
    index from application code; with ``triggers=True`` it lets them work.
    """

    def __init__(self, path: Path, *, triggers: bool = False) -> None:
        self.conn = apsw.Connection(str(path))
        self.conn.set_busy_timeout(5000)
        self.conn.execute("PRAGMA journal_mode = WAL").fetchall()
        self.conn.execute("PRAGMA synchronous = NORMAL")
        if not triggers:
            for name in TRIGGERS:
                self.conn.execute(f'DROP TRIGGER IF EXISTS "{name}"')

    def bulk_insert(self, records: list[Record]) -> None:
        stamp = now_iso()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        first = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchall()[0][0]
        c.executemany(INSERT, [(r["id"], dumps(r), stamp, stamp) for r in records])
        c.execute(FTS_NEW_ROWS, (first,))
        c.execute("COMMIT")

    def put(self, key: str, record: Record) -> None:
        stamp = now_iso()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute(INSERT, (key, dumps(record), stamp, stamp))
        c.execute(
            "INSERT INTO events_fts (rowid, summary, text) VALUES (?, ?, ?)",
            (c.last_insert_rowid(), record.get("summary"), record.get("text")),
        )
        c.execute("COMMIT")

    def put_by_trigger(self, key: str, record: Record) -> None:
        stamp = now_iso()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute(INSERT, (key, dumps(record), stamp, stamp))
        c.execute("COMMIT")

    def get(self, key: str) -> object:
        sql = "SELECT body, expires_at FROM events WHERE key = ?"
        rows = self.conn.execute(sql, (key,)).fetchall()
        if rows and (rows[0][1] is None or rows[0][1] > now_iso()):
            return json.loads(rows[0][0])
        raise KeyError(key)

    def query(self, agent: str, kind: str) -> list[object]:
        rows = self.conn.execute(
            "SELECT body FROM events AS t WHERE (t.expires_at IS NULL OR t.expires_at > ?) "
            "AND t.agent_id IS ? AND t.event_type IS ? "
            "ORDER BY t.timestamp DESC, t.id DESC LIMIT 100",
            (now_iso(), agent, kind),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def search(self, text: str, agent: str) -> list[object]:
        rows = self.conn.execute(
            "SELECT t.key, t.body, events_fts.rank, snippet(events_fts, -1, '[', ']', '…', 12) "
            "FROM events_fts JOIN events AS t ON t.id = events_fts.rowid "
            "WHERE events_fts MATCH ? AND (t.expires_at IS NULL OR t.expires_at > ?) "
            "AND t.agent_id IS ? ORDER BY events_fts.rank LIMIT 20",
            (text, now_iso(), agent),
        ).fetchall()
        return [(k, json.loads(b), r, s) for k, b, r, s in rows]

    def cleanup(self, cutoff: str) -> int:
        return delete_older(self.conn, cutoff, unindex=True)

    def close(self) -> None:
        self.conn.close()


def delete_older(conn: apsw.Connection, cutoff: str, *, unindex: bool) -> int:
    """Delete the events created before ``cutoff``, 1000 per transaction; ``unindex``
    removes them from events_fts first (without triggers doing it)."""
    total = 0
    while True:
        with conn:
            found = conn.execute("SELECT id FROM events WHERE created_at < ? LIMIT 1000", (cutoff,))
            ids = [r[0] for r in found.fetchall()]
            ids_json = json.dumps(ids)
            if unindex:
                conn.execute(
                    "INSERT INTO events_fts (events_fts, rowid, summary, text) "
                    "SELECT 'delete', id, summary, text FROM events "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (ids_json,),
                )
            delete = "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))"
            conn.execute(delete, (ids_json,))
        total += len(ids)
        if len(ids) < 1000:
            return total


THREADS, PER_THREAD = 100, 50


def conversation_script() -> list[tuple[str, str, str, dict[str, object] | None]]:
    """100 threads x 50 messages, interleaved as agents would write them."""
    rnd = random.Random(5)
    script = []
    for turn in range(PER_THREAD):
        for t in range(THREADS):
            role = "user" if turn % 2 == 0 else "assistant"
            text = " ".join(rnd.choices(WORDS, k=30))
            usage = (
                {
                    "input_tokens": rnd.randrange(4000),
                    "output_tokens": rnd.randrange(500),
                    "model": "model-a",
                    "cost": 0.001,
                }
                if role == "assistant"
                else None
            )
            script.append((f"thread-{t:03d}", role, text, usage))
    return script


def raw_conversation(conn: apsw.Connection, script: list[tuple[str, str, str, Any]]) -> int:
    """The same inserts and reads as memstore's add_message and messages, by hand."""
    for t in range(THREADS):
        conn.execute(
            "INSERT INTO memstore_threads (id, tags, metadata, created_at) "
            "VALUES (?, '[]', '{}', ?)",
            (f"thread-{t:03d}", now_iso()),
        )
    for thread_id, role, text, usage in script:
        usage = usage or {}
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        now = now_iso()
        conn.execute("BEGIN IMMEDIATE")
        position = conn.execute(
            "SELECT coalesce(max(position), 0) + 1 FROM memstore_messages WHERE thread_id = ?",
            (thread_id,),
        ).fetchall()[0][0]
        conn.execute(
            "INSERT INTO memstore_messages (thread_id, position, role, content, content_type, "
            "metadata, input_tokens, output_tokens, total_tokens, model, cost, created_at) "
            "VALUES (?, ?, ?, ?, 'text', '{}', ?, ?, ?, ?, ?, ?)",
            (
                thread_id,
                position,
                role,
                text,
                tokens_in,
                tokens_out,
                tokens_in + tokens_out,
                usage.get("model"),
                usage.get("cost", 0.0),
                now,
            ),
        )
        conn.execute(
            "UPDATE memstore_threads SET last_message_at = ?, message_count = message_count + 1 "
            "WHERE id = ?",
            (now, thread_id),
        )
        conn.execute("COMMIT")
    read = 0
    for t in range(THREADS):
        rows = conn.execute(
            "SELECT thread_id, position, role, content, content_type, name, tool_calls, metadata, "
            "input_tokens, output_tokens, total_tokens, model, cost, created_at, merged_from "
            "FROM memstore_messages WHERE thread_id = ? ORDER BY position",
            (f"thread-{t:03d}",),
        ).fetchall()
        read += len([(r[:7], json.loads(r[7]), r[8:]) for r in rows])
    return read


def memstore_append(store: memstore.Store, script: list[tuple[str, str, str, Any]]) -> None:
    conv = store.conversations()
    for t in range(THREADS):
        conv.create_thread(f"thread-{t:03d}")
    for thread_id, role, text, usage in script:
        conv.add_message(thread_id, role, text, usage=usage)


def memstore_read(store: memstore.Store) -> int:
    conv = store.conversations()
    return sum(len(conv.messages(f"thread-{t:03d}")) for t in range(THREADS))


def memstore_conversation(store: memstore.Store, script: list[tuple[str, str, str, Any]]) -> int:
    memstore_append(store, script)
    return memstore_read(store)


def trigger_variant(records: list[Record], when: str, flag: bool) -> Callable[[Path], None]:
    """Bulk insert with an FTS insert trigger, or one a flag table makes skip (for the notes)."""

    def run(path: Path) -> None:
        conn = apsw.Connection(str(path))
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_flag (x)")
        conn.execute('DROP TRIGGER IF EXISTS "events__fts_insert"')
        conn.execute(
            f'CREATE TRIGGER "events__fts_insert" AFTER INSERT ON events {when} BEGIN '
            "INSERT INTO events_fts (rowid, summary, text) "
            "VALUES (new.id, new.summary, new.text); END"
        )
        stamp = now_iso()
        conn.execute("BEGIN IMMEDIATE")
        if flag:
            conn.execute("INSERT INTO bench_flag VALUES (1)")
        first = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchall()[0][0]
        conn.executemany(INSERT, [(r["id"], dumps(r), stamp, stamp) for r in records])
        if flag:
            conn.execute(FTS_NEW_ROWS, (first,))
            conn.execute("DELETE FROM bench_flag")
        conn.execute("COMMIT")
        conn.close()

    return run


def best_of(runs: int, fn: Callable[[], object], setup: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        setup()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class Bench:
    def __init__(self, work: Path, runs: int) -> None:
        self.work, self.runs = work, runs
        self.results: list[tuple[str, str, float, float | None]] = []

    def copy(self, name: str, source: Path) -> Path:
        """A fresh copy of a checkpointed file (cp of a live WAL file would lose rows)."""
        path = self.work / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        with memstore.Store(source) as store:
            store.connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        shutil.copy(source, path)
        return path

    def time(self, fn: Callable[[Path], object], source: Path, writes: bool) -> float:
        holder: dict[str, Path] = {"path": self.copy("run.db", source)}

        def setup() -> None:
            if writes:
                holder["path"] = self.copy("run.db", source)

        return best_of(self.runs, lambda: fn(holder["path"]), setup)

    def compare(
        self,
        name: str,
        what: str,
        raw: Callable[[Path], object],
        mine: Callable[[Path], object],
        source: Path,
        writes: bool,
    ) -> None:
        raw_t = self.time(raw, source, writes)
        mem_t = self.time(mine, source, writes)
        self.results.append((name, what, raw_t, mem_t))
        print(f"{name:16} raw {raw_t:7.3f}s  memstore {mem_t:7.3f}s  ratio {raw_t / mem_t:5.2f}")

    def table(self) -> str:
        lines = [
            "| workload | what | raw apsw | memstore | raw / memstore | target |",
            "|---|---|---:|---:|---:|---|",
        ]
        for name, what, raw_t, mem_t in self.results:
            if mem_t is None:
                lines.append(f"| {name} | {what} | {raw_t:.3f} s | | | |")
                continue
            ratio = raw_t / mem_t
            target = TARGETS.get(name)
            verdict = (
                "" if target is None else f"≥ {target} " + ("met" if ratio >= target else "MISSED")
            )
            lines.append(
                f"| {name} | {what} | {raw_t:.3f} s | {mem_t:.3f} s | {ratio:.2f} | {verdict} |"
            )
        return "\n".join(lines)


def with_raw(fn: Callable[[Raw], object], *, triggers: bool = False) -> Callable[[Path], object]:
    def run(path: Path) -> object:
        raw = Raw(path, triggers=triggers)
        try:
            return fn(raw)
        finally:
            raw.close()

    return run


def with_memstore(fn: Callable[[memstore.Collection], object]) -> Callable[[Path], object]:
    def run(path: Path) -> object:
        with memstore.Store(path) as store:
            return fn(store.collection("events"))

    return run


def alternating(runs: int) -> Iterator[tuple[int, str]]:
    """(run, side) for each run, the side going first alternating from run to run."""
    for run in range(runs):
        yield from ((run, side) for side in (("theirs", "mine"), ("mine", "theirs"))[run % 2])


def paired(
    runs: int, work: Path, theirs: Callable[[Path], None], mine: Callable[[Path], None]
) -> tuple[float, float, float]:
    """Median times of both sides and the median ratio theirs / mine, on fresh files."""
    times: dict[str, list[float]] = {"theirs": [], "mine": []}
    for run, side in alternating(runs):
        started = time.perf_counter()
        (theirs if side == "theirs" else mine)(work / f"{side}-{run}-{time.monotonic_ns()}.db")
        times[side].append(time.perf_counter() - started)
    return medians(times)


def medians(times: dict[str, list[float]]) -> tuple[float, float, float]:
    """Median times of both sides ("theirs", "mine": a list each, run by run) and the median
    of the runs' ratios theirs / mine."""
    ratios = [t / m for t, m in zip(times["theirs"], times["mine"], strict=True)]
    return (
        statistics.median(times["theirs"]),
        statistics.median(times["mine"]),
        statistics.median(ratios),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="records in the store")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    n = args.n
    records = make_records(n)
    extra = make_records(2000, seed=99, prefix="new")
    rnd = random.Random(1)
    get_keys = [f"evt-{rnd.randrange(n):07d}" for _ in range(20_000)]
    kinds = ["error", "info", "warn"]
    queries = [(f"agent-{rnd.randrange(50)}", rnd.choice(kinds)) for _ in range(500)]
    texts = ["timeout AND retry", "memory", "tool NOT error", '"context window"']
    searches = [(rnd.choice(texts), f"agent-{rnd.randrange(50)}") for _ in range(300)]

    work = Path(tempfile.mkdtemp(prefix="memstore-bench-"))
    bench = Bench(work, args.runs)
    empty, full, aged = work / "empty.db", work / "full.db", work / "aged.db"
    with memstore.Store(empty) as store:
        store.collection("events", fields=FIELDS, fts=FTS)
    shutil.copy(empty, full)
    with memstore.Store(full) as store:
        store.collection("events").put_many(records, key="id")
    shutil.copy(bench.copy("aged-source.db", full), aged)
    conn = apsw.Connection(str(aged))  # half the records made long ago, for cleanup
    conn.execute("UPDATE events SET created_at = '2000-01-01T00:00:00.000000Z' WHERE id % 2 = 0")
    conn.close()

    bench.compare(
        "bulk insert",
        f"{n:,} records, one call",
        with_raw(lambda r: r.bulk_insert(records)),
        with_memstore(lambda c: c.put_many(records, key="id")),
        empty,
        writes=True,
    )
    app_code = bench.time(with_raw(lambda r: [r.put(str(x["id"]), x) for x in extra]), full, True)
    by_trigger = with_raw(
        lambda r: [r.put_by_trigger(str(x["id"]), x) for x in extra], triggers=True
    )
    trigger_t = bench.time(by_trigger, full, True)
    bench.results.append(("single put, raw from app code", "raw variant", app_code, None))
    bench.results.append(("single put, raw by trigger", "raw variant", trigger_t, None))
    best_single = (
        by_trigger
        if trigger_t <= app_code
        else with_raw(lambda r: [r.put(str(x["id"]), x) for x in extra])
    )
    bench.compare(
        "single put",
        f"{len(extra):,} puts, a transaction each",
        best_single,
        with_memstore(lambda c: [c.put(str(x["id"]), x) for x in extra]),
        full,
        writes=True,
    )
    bench.compare(
        "get",
        f"{len(get_keys):,} gets by key",
        with_raw(lambda r: [r.get(k) for k in get_keys]),
        with_memstore(lambda c: [c.get(k) for k in get_keys]),
        full,
        writes=False,
    )
    bench.compare(
        "indexed query",
        f"{len(queries)} queries: 2 fields, ordered, limit 100",
        with_raw(lambda r: [r.query(a, k) for a, k in queries]),
        with_memstore(
            lambda c: [
                c.query({"agent_id": a, "event_type": k}, order_by="-timestamp", limit=100)
                for a, k in queries
            ]
        ),
        full,
        writes=False,
    )
    bench.compare(
        "search",
        f"{len(searches)} searches with a filter, limit 20",
        with_raw(lambda r: [r.search(t, a) for t, a in searches]),
        with_memstore(lambda c: [c.search(t, where={"agent_id": a}) for t, a in searches]),
        full,
        writes=False,
    )
    age = datetime.now(UTC) - datetime(2001, 1, 1, tzinfo=UTC)
    bench.compare(
        "cleanup",
        f"{n // 2:,} of {n:,} records by age, batches of 1000",
        with_raw(lambda r: r.cleanup("2001-01-01T00:00:00.000000Z")),
        with_memstore(lambda c: c.cleanup(older_than=age)),
        aged,
        writes=True,
    )
    script = conversation_script()

    def raw_conv(path: Path) -> object:
        conn = apsw.Connection(str(path))
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return raw_conversation(conn, script)
        finally:
            conn.close()

    def mem_conv(path: Path) -> object:
        with memstore.Store(path) as store:
            return memstore_conversation(store, script)

    bench.compare(
        "conversation append",
        f"{THREADS} threads x {PER_THREAD} messages, a call each; then every history read",
        raw_conv,
        mem_conv,
        empty,
        writes=True,
    )
    flagged = "WHEN NOT EXISTS (SELECT 1 FROM bench_flag)"
    for label, variant in [
        ("raw, per-row trigger", trigger_variant(records, "", False)),
        ("raw, trigger skipped by a flag", trigger_variant(records, flagged, True)),
    ]:
        bench.results.append(
            (f"bulk insert, {label}", "raw variant", bench.time(variant, empty, True), None)
        )

    print()
    print(
        f"N = {n:,} records, best of {args.runs}; SQLite {apsw.sqlite_lib_version()}, "
        f"apsw {apsw.apsw_version()}, Python {sys.version.split()[0]}"
    )
    print()
    print(bench.table())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
