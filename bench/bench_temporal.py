"""as_of queries on a temporal collection against the same queries without as_of.

    python bench/bench_temporal.py             # 1,000,000 records
    python bench/bench_temporal.py --n 100000

A temporal collection (issue 22) keeps each record's validity period in two
indexed columns, and superseded facts as rows of their own. The target: an
as_of query at 1M records within 2x of the same query without as_of. The
collection has 1M records over 1,000 agents (a declared, indexed field), 1 %
of them superseded once; the queries, each side's in turn (alternating, median
of 200):

- the 20 newest of one agent (an indexed filter and an order);
- one record by key (get);
- how many records one agent has (count);
- a put of a correction (a record put again under its key: in the temporal
  collection, its old version goes to the history).

Without as_of a temporal collection still reads "as of now", so the bench
also runs the same queries on a plain (not temporal) collection of the same
records: the cost of being temporal at all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memstore

PAST = "2026-01-15T00:00:00Z"


def load(store: memstore.Store, name: str, n: int, temporal: bool) -> memstore.Collection:
    c = store.collection(name, fields={"agent": str}, temporal=temporal or None)
    c.put_many(
        ((f"k{i:07d}", {"agent": f"a{i % 1000}", "n": i, "text": "fact"}) for i in range(n)),
    )
    if temporal:
        with store.transaction():
            for i in range(0, n, 100):  # 1 % superseded
                c.supersede(
                    f"k{i:07d}",
                    {"agent": f"a{i % 1000}", "n": i, "text": "newer"},
                    at="2026-02-01T00:00:00Z",
                )
    return c


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, memstore.Store(Path(tmp) / "t.db") as store:
        start = time.perf_counter()
        plain = load(store, "plain", args.n, False)
        facts = load(store, "facts", args.n, True)
        print(f"loaded 2 x {args.n:,} records in {time.perf_counter() - start:.0f} s")
        cases: dict[str, Callable[[int], Any]] = {
            "plain: newest 20 of an agent": lambda i: plain.query(
                {"agent": f"a{i % 1000}"}, order_by="-updated_at", limit=20
            ),
            "temporal: newest 20 of an agent": lambda i: facts.query(
                {"agent": f"a{i % 1000}"}, order_by="-updated_at", limit=20
            ),
            "temporal as_of: newest 20 of an agent": lambda i: facts.query(
                {"agent": f"a{i % 1000}"}, order_by="-updated_at", limit=20, as_of=PAST
            ),
            "plain: get": lambda i: plain.get(f"k{(i * 7919) % args.n:07d}"),
            "temporal: get": lambda i: facts.get(f"k{(i * 7919) % args.n:07d}"),
            "temporal as_of: get": lambda i: facts.get(f"k{(i * 7919) % args.n:07d}", as_of=PAST),
            "plain: count of an agent": lambda i: plain.count({"agent": f"a{i % 1000}"}),
            "temporal: count of an agent": lambda i: facts.count({"agent": f"a{i % 1000}"}),
            "temporal as_of: count of an agent": lambda i: facts.count(
                {"agent": f"a{i % 1000}"}, as_of=PAST
            ),
            # A correction of a record: put again under its key.
            "plain: put": lambda i: plain.put(
                f"k{(i * 104729) % args.n:07d}", {"agent": "a1", "n": i, "text": "put"}
            ),
            "temporal: put": lambda i: facts.put(
                f"k{(i * 104729) % args.n:07d}", {"agent": "a1", "n": i, "text": "put"}
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for i in range(args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                times[name].append(timed(lambda name=name, i=i: cases[name](i)))
        medians = {name: statistics.median(t) * 1e6 for name, t in times.items()}
        print(f"\n{args.n:,} records, medians of {args.rounds} alternating runs (µs)")
        for name, value in medians.items():
            print(f"{name:42} {value:10.1f}")
        for what in ("newest 20 of an agent", "get", "count of an agent"):
            ratio = medians[f"temporal as_of: {what}"] / medians[f"temporal: {what}"]
            cost = medians[f"temporal: {what}"] / medians[f"plain: {what}"]
            print(f"{what}: as_of / without = {ratio:.2f}; temporal / plain = {cost:.2f}")
        cost = medians["temporal: put"] / medians["plain: put"]
        print(f"put (a correction): temporal / plain = {cost:.2f}")


if __name__ == "__main__":
    main()
