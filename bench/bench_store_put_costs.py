"""Where a single LangGraph store put's time goes: memstore's layers against SqliteStore's.

    python bench/bench_store_put_costs.py               # 20,000 items, 5 runs
    python bench/bench_store_put_costs.py --items 100000 --runs 7

bench_langgraph.py compares ``MemstoreStore.put`` with LangGraph's
``SqliteStore.put`` (issue 24's "store put"). This takes the two apart, layer
by layer, in the same run: µs per single put of a new item (5,000 puts into a
store of --items items in 1,000 namespaces, each in a transaction of its own,
``synchronous=NORMAL`` on both sides), medians of runs, the ways in a shuffled order each run.

- ``SqliteStore.put``, and the SQL it runs alone (``BEGIN``, its ``INSERT OR
  REPLACE``, ``COMMIT``, on sqlite3, on its schema).
- ``MemstoreStore.put`` with the full-text index on and off; memstore's own
  layer alone (``Collection.put`` of the same records); and memstore's SQL
  alone (``BEGIN IMMEDIATE``, the file's data version, the upsert,
  ``COMMIT``, on apsw, on the schema of the store without the full-text
  index).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "adapters"), str(ROOT / "bench")]
from bench_langgraph import load, sqlite_store, store_items  # noqa: E402

import memstore  # noqa: E402
from memstore_langgraph import MemstoreStore, _item_key  # noqa: E402

PUTS = 5000


def value(i: int) -> dict[str, Any]:
    return {"kind": "fact", "score": i % 10}


def sides(
    work: Path, items: list[Any], stack: contextlib.ExitStack
) -> dict[str, Callable[[int], float]]:
    """Per way of putting: a function doing PUTS puts (run ``run``), returning µs a put."""
    theirs = stack.enter_context(sqlite_store(work / "theirs.db"))
    load(theirs, items)
    mine = stack.enter_context(MemstoreStore(work / "mine.db"))
    load(mine, items)
    plain = stack.enter_context(MemstoreStore(work / "mine-nofts.db", fts=False))
    load(plain, items)
    conn = plain.store.connection
    upsert = plain.items._upsert_sql

    def timed(put: Callable[[int, int], None]) -> Callable[[int], float]:
        def run(run: int) -> float:
            started = time.perf_counter()
            for i in range(PUTS):
                put(run, i)
            return (time.perf_counter() - started) / PUTS * 1e6

        return run

    def namespace(i: int) -> tuple[str, str]:
        return ("users", f"u{i % 1000:04d}")

    def their_sql(run: int, i: int) -> None:
        theirs.conn.execute("BEGIN")
        theirs.conn.execute(
            "INSERT OR REPLACE INTO store (prefix, key, value, created_at, updated_at, "
            "expires_at, ttl_minutes) VALUES (?, ?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
            "NULL, NULL)",
            (".".join(namespace(i)), f"sql{run}-{i}", json.dumps(value(i)).encode()),
        )
        theirs.conn.execute("COMMIT")

    def my_layer(run: int, i: int) -> None:
        ns = namespace(i)
        key = f"layer{run}-{i}"
        record = {"namespace": ".".join(ns), "key": key, "value": value(i), "ttl": None}
        mine.items.put(_item_key(ns, key), record)

    def my_sql(run: int, i: int) -> None:
        ns = namespace(i)
        key = f"sql{run}-{i}"
        body = json.dumps(
            {"namespace": ".".join(ns), "key": key, "value": value(i), "ttl": None},
            separators=(",", ":"),
        )
        stamp = memstore._iso(memstore._utcnow())
        conn.execute("BEGIN IMMEDIATE")
        conn.data_version()  # what Collection._fresh asks, on SQLite
        conn.execute(upsert, (_item_key(ns, key), body, stamp, stamp, None)).fetchall()
        conn.execute("COMMIT")

    return {
        "SqliteStore.put": timed(lambda run, i: theirs.put(namespace(i), f"p{run}-{i}", value(i))),
        "SqliteStore's SQL alone": timed(their_sql),
        "MemstoreStore.put": timed(lambda run, i: mine.put(namespace(i), f"p{run}-{i}", value(i))),
        "MemstoreStore.put, fts=False": timed(
            lambda run, i: plain.put(namespace(i), f"p{run}-{i}", value(i))
        ),
        "memstore's layer alone (Collection.put)": timed(my_layer),
        "memstore's SQL alone, fts=False": timed(my_sql),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000, help="items in each store")
    parser.add_argument("--runs", type=int, default=5, help="runs of each way of putting")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memstore-put-costs-"))
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        ways = sides(work, store_items(args.items), stack)
        order = list(ways)
        for run in range(args.runs):
            random.Random(run).shuffle(order)
            for name in order:
                times.setdefault(name, []).append(ways[name](run))
    print(
        f"{args.runs} runs, {PUTS:,} puts each, {args.items:,} items; SQLite "
        f"{memstore.apsw.sqlite_lib_version()} (memstore), {sqlite3.sqlite_version} (sqlite3)"
    )
    print()
    print("| way of putting | µs a put (median) |")
    print("|---|---:|")
    for name in ways:
        got = times[name]
        print(f"| {name} | {statistics.median(got):.1f} |")


if __name__ == "__main__":
    main()
