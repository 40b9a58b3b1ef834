"""Search and nearest as the store knew it at a time (known_at) against the same reads now.

    python bench/bench_known_at.py             # 100,000 records
    python bench/bench_known_at.py --n 1000000

A temporal collection with full-text search and 64-dimension vectors; after a
moment T, 1 % of the records are corrected (put again: their old versions go
to the version history with their vectors) and 1 % superseded. The reads,
each side's in turn (alternating, median of --rounds):

- search("word"), now and known_at=T (T: the version history and the
  collection's rows both answer);
- nearest(vector, k=10), now and known_at=T.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memstore

WORDS = ["river", "stone", "cloud", "tree", "lake", "hill", "road", "mill", "bell", "field"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp, memstore.Store(Path(tmp) / "k.db") as store:
        facts = store.collection(
            "facts", fts=["text"], temporal=True, vectors={"dim": 64, "model": "m"}
        )
        start = time.perf_counter()
        vectors = rng.normal(size=(args.n, 64)).astype(np.float32)
        batch = 10_000
        for first in range(0, args.n, batch):
            keys = range(first, min(first + batch, args.n))
            facts.put_many(
                ((f"k{i}", {"text": f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} w{i}"}) for i in keys),
                vectors=(vectors[i] for i in keys),
            )
        time.sleep(0.01)
        then = datetime.now(UTC)
        time.sleep(0.01)
        with store.transaction():
            for i in range(0, args.n, 100):
                facts.put(f"k{i}", {"text": f"corrected {WORDS[i % 10]}"}, vector=vectors[i] * -1)
            for i in range(50, args.n, 100):
                facts.supersede(f"k{i}", {"text": "changed"}, at=then, vector=vectors[i] * -1)
        print(f"loaded {args.n:,} records in {time.perf_counter() - start:.0f} s")
        q = rng.normal(size=64)
        cases: dict[str, Callable[[], Any]] = {
            "search now": lambda: facts.search("river", limit=20),
            "search known_at": lambda: facts.search("river", limit=20, known_at=then),
            "nearest now": lambda: facts.nearest(q, k=10),
            "nearest known_at": lambda: facts.nearest(q, k=10, known_at=then),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for i in range(args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                began = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - began)
        medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        print(f"\n{args.n:,} records, medians of {args.rounds} alternating runs (ms)")
        for name, value in medians.items():
            print(f"{name:20} {value:10.2f}")
        for what in ("search", "nearest"):
            ratio = medians[f"{what} known_at"] / medians[f"{what} now"]
            print(f"{what}: known_at / now = {ratio:.2f}")


if __name__ == "__main__":
    main()
