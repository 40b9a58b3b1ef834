"""The cost of encryption at rest: memstore on an encrypted file against the same on a plain one.

    .venv-encrypted/bin/python bench/bench_encryption.py            # 50,000 records, 5 runs
    .venv-encrypted/bin/python bench/bench_encryption.py --n 10000

Needs apsw-sqlite3mc in apsw's place (README, "Encryption at rest"). Both sides
are the same code on a fresh file (WAL, synchronous=NORMAL), the one opened with
a key (ChaCha20-Poly1305, SQLite3 Multiple Ciphers' defaults) and the other
without; the runs alternate which goes first. Each workload's ratio is
plain time / encrypted time (1.00: encryption costs nothing), the median of the
runs' ratios. "open" is a Store's opening of an existing file, where the key's
derivation (PBKDF2) is paid once per connection; "cold get" reads records after
the page cache was emptied (a new connection), where each page is decrypted.
Each side runs with memstore's own settings: an encrypted store's page cache
is 32 MiB, a plain store's SQLite's default 2 MiB (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import memstore

KEY = "a passphrase for the benchmark"
WORDS = [
    *["agent", "tool", "call", "timeout", "retry", "error", "plan"],
    *["search", "memory", "cache", "result", "user", "answer"],
]


def workloads(path: Path, key: str | None, n: int) -> dict[str, float]:
    """Seconds per workload on a fresh store at ``path``."""
    rnd = random.Random(7)
    records = [
        (
            f"k{i:07d}",
            {
                "kind": rnd.choice(WORDS),
                "n": i,
                "text": " ".join(rnd.choices(WORDS, k=12)),
            },
        )
        for i in range(n)
    ]
    took: dict[str, float] = {}

    def timed(name: str, work: Callable[[], object]) -> None:
        started = time.perf_counter()
        work()
        took[name] = time.perf_counter() - started

    with memstore.Store(path, key=key) as store:
        notes = store.collection("notes", fields={"kind": str, "n": int}, fts=["text"])
        timed("bulk insert", lambda: notes.put_many(records))
        keys = [f"k{rnd.randrange(n):07d}" for _ in range(2000)]
        timed("single put (2,000)", lambda: [notes.put(f"new{i}", {"n": i}) for i in range(2000)])
        timed("get (2,000)", lambda: [notes.get(k) for k in keys])
        timed(
            "indexed query (500)",
            lambda: [
                notes.query({"kind": rnd.choice(WORDS)}, order_by="-n", limit=20)
                for _ in range(500)
            ],
        )
        timed(
            "search (500)", lambda: [notes.search(rnd.choice(WORDS), limit=10) for _ in range(500)]
        )
    timed("open (20)", lambda: [memstore.Store(path, key=key).close() for _ in range(20)])
    with memstore.Store(path, key=key) as store:
        notes = store.collection("notes")
        timed("cold get (2,000)", lambda: [notes.get(k) for k in keys])
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="records (default 50,000)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not getattr(memstore.apsw, "mc_version", None):
        sys.exit("needs apsw-sqlite3mc in apsw's place: see README, 'Encryption at rest'")
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="memstore-bench-") as folder:
        for run in range(args.runs):
            sides = [("plain", None), ("encrypted", KEY)]
            for side, key in sides if run % 2 == 0 else sides[::-1]:
                path = Path(folder) / f"{side}{run}.db"
                for name, seconds in workloads(path, key, args.n).items():
                    times.setdefault(name, {}).setdefault(side, []).append(seconds)
    print(f"{memstore.apsw.mc_version}, SQLite {memstore.apsw.sqlite_lib_version()}; ", end="")
    print(f"{args.n:,} records, {args.runs} runs")
    print()
    print("| workload | plain | encrypted | plain / encrypted |")
    print("|---|---:|---:|---:|")
    for name, got in times.items():
        ratio = statistics.median(
            p / e for p, e in zip(got["plain"], got["encrypted"], strict=True)
        )
        print(
            f"| {name} | {statistics.median(got['plain']):.3f} s "
            f"| {statistics.median(got['encrypted']):.3f} s | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
