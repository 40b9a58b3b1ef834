"""The TTL cache: set/get, expiry, stats, memoize."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import memstore

from .dbinfo import sql


def expire_now(store: memstore.Store, key: str) -> None:
    sql(
        store,
        "UPDATE memstore_cache SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE key = ?",
        (key,),
    )


def test_set_get_delete(store: memstore.Store) -> None:
    cache = store.cache("llm")
    cache.set("k", {"answer": 42})
    assert cache.get("k") == {"answer": 42} and "k" in cache
    assert cache.get("missing") is None and cache.get("missing", "d") == "d"
    cache.set("none", None)
    assert "none" in cache and cache.get("none", "d") is None
    assert cache.delete("k") is True and cache.delete("k") is False
    assert store.cache("other").get("none") is None  # caches are separate


def test_expired_entries_are_misses_and_expire_removes_them(store: memstore.Store) -> None:
    cache = store.cache("c", ttl=timedelta(hours=1))
    cache.set("old", 1)
    cache.set("new", 2)
    cache.set("forever", 3, ttl=None)
    expire_now(store, "old")
    assert cache.get("old") is None and "old" not in cache
    assert cache.expire() == 1
    assert sql(store, "SELECT count(*) FROM memstore_cache") == [(2,)]


def test_stats_count_hits_misses_entries_bytes(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        cache = store.cache("c")
        cache.set("a", "x" * 100)
        cache.get("a")
        cache.get("a")
        cache.get("b")
        assert cache.stats() == {"hits": 2, "misses": 1, "entries": 1, "bytes": 102}
    with memstore.Store(db_path) as store:  # counts are kept in the file, from every process
        cache = store.cache("c")
        cache.get("zzz")
        assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 2


def test_memoize_until_expiry(store: memstore.Store) -> None:
    cache = store.cache("memo")
    calls: list[tuple[Any, ...]] = []

    @cache.memoize(ttl=timedelta(minutes=5))
    def slow(x: int, *, scale: int = 1) -> dict[str, int]:
        calls.append((x, scale))
        return {"value": x * scale}

    assert slow(2) == {"value": 2} and slow(2) == {"value": 2}
    assert slow(2, scale=3) == {"value": 6}
    assert calls == [(2, 1), (2, 3)]
    key = sql(store, "SELECT key FROM memstore_cache ORDER BY created_at LIMIT 1")[0][0]
    assert key.startswith("memoize:") and "slow" in key
    expire_now(store, key)
    assert slow(2) == {"value": 2}
    assert calls == [(2, 1), (2, 3), (2, 1)]
    with pytest.raises(memstore.ValidationError):
        slow({1, 2})  # type: ignore[arg-type]


def test_memoize_caches_none(store: memstore.Store) -> None:
    calls = []

    @store.cache("m").memoize()
    def nothing() -> None:
        calls.append(1)

    nothing()
    nothing()
    assert calls == [1]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.set("k", 1, ttl=-5),
        lambda c: c.set("k", 1, ttl=0),
        lambda c: c.set("k", {1, 2}),
        lambda c: c.set("", 1),
        lambda c: c.set("k", float("nan")),
        lambda c: c.memoize(ttl=-1),
    ],
)
def test_bad_input_writes_nothing(store: memstore.Store, call: Any) -> None:
    cache = store.cache("c")
    with pytest.raises(memstore.ValidationError):
        call(cache)
    assert cache.stats()["entries"] == 0
    with pytest.raises(memstore.ValidationError):
        store.cache("d", ttl=-1)


def test_settings_and_counts_live_in_the_file(db_path: Path) -> None:
    with memstore.Store(db_path) as store:
        store.cache("short", ttl=60)
        other = store.cache("short")  # another handle, no ttl given
        assert other.ttl == 60
        other.set("k", 1)
        expires = store.connection.execute(
            "SELECT expires_at FROM memstore_cache WHERE key = 'k'"
        ).fetchall()[0][0]
        assert expires is not None
        for _ in range(3):
            other.get("k")
        other.get("missing")
    with memstore.Store(db_path) as store:  # the counts were written at close
        cache = store.cache("short")
        assert cache.ttl == 60
        stats = cache.stats()
        assert (stats["hits"], stats["misses"]) == (3, 1)
        for _ in range(memstore.CACHE_COUNTS_FLUSH):
            cache.get("k")
        written = store.connection.execute(
            "SELECT hits FROM memstore_cache_stats WHERE cache = 'short'"
        ).fetchall()[0][0]
        assert written == 3 + memstore.CACHE_COUNTS_FLUSH  # flushed without a set
