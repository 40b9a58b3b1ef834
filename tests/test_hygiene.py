"""Memory hygiene without an LLM: dedup on write, pinning, soft forget and purge, reads
counted in batches, the recall score, and consolidation helpers an agent's model drives."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

import memstore

from .dbinfo import on_connections, sql


@pytest.fixture
def notes(store: memstore.Store) -> memstore.Collection:
    return store.collection(
        "notes", fts=["text"], ttl="1h", hygiene={"dedup": "exact", "policy": "skip"}
    )


def test_dedup_skips_content_already_stored(notes: memstore.Collection) -> None:
    first = notes.remember({"text": "The user prefers trains"})
    assert first.action == "stored" and first.duplicate_of is None
    again = notes.remember({"text": "  the USER prefers\ttrains "})
    assert again == memstore.Remembered(first.key, False, first.key, "skipped")
    assert notes.put("other", {"text": "the user prefers trains"}) == first.key  # put too
    assert notes.count() == 1 and "other" not in notes
    assert notes.remember({"text": "something else"}).stored


@pytest.mark.parametrize(("policy", "count"), [("merge", 1), ("keep", 2)])
def test_the_dedup_policy_decides(store: memstore.Store, policy: str, count: int) -> None:
    c = store.collection(
        "c", fts=["text"], history=True, hygiene={"dedup": "exact", "policy": policy}
    )
    first = c.remember({"text": "Ramen on Fridays", "source": "chat"})
    second = c.remember({"text": "ramen on fridays", "tags": ["food"]})
    assert second.duplicate_of == first.key and c.count() == count
    if policy == "merge":
        assert second.key == first.key and second.action == "merged"
        assert c.get(first.key) == {"text": "ramen on fridays", "source": "chat", "tags": ["food"]}
        assert c.history(first.key)[0].record["source"] == "chat"
    else:
        assert second.key != first.key and second.action == "kept both"
        assert c.candidates_for_merge() == [sorted([first.key, second.key])]


def test_pinned_records_never_expire_nor_go_by_retention(notes: memstore.Collection) -> None:
    keep = notes.add({"text": "the user's name is Ada"})
    other = notes.add({"text": "passing remark"})
    assert notes.pin(keep) == 1
    notes.put(keep, {"text": "the user's name is Ada Lovelace"}, ttl=1)  # a pin outlasts a TTL
    assert next(notes.rows({"key": keep})).expires_at is None
    sql(
        notes.store,
        "UPDATE notes SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE key = ?",
        (other,),
    )
    assert notes.cleanup(keep_last=0) == 1
    assert notes.keys() == [keep]
    assert notes.unpin(keep) == 1 and notes.cleanup(keep_last=0) == 1


def test_soft_forget_hides_and_purge_removes(notes: memstore.Collection) -> None:
    key = notes.add({"text": "a wrong fact"})
    assert notes.forget(key, "missing") == 1
    assert notes.get(key, None) is None and notes.count() == 0
    assert notes.search("wrong") == [] and notes.keys() == []
    assert notes.forget(key) == 0  # forgotten already
    assert notes.unforget(key) == 1 and notes.get(key) == {"text": "a wrong fact"}
    notes.forget(key)
    assert notes.purge(older_than="1h") == 0  # forgotten just now
    assert notes.purge() == 1
    assert sql(notes.store, "SELECT count(*) FROM notes") == [(0,)]


def test_reads_are_counted_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "reads.db"
    with memstore.Store(path) as store:
        notes = store.collection("notes", fts=["text"], hygiene=True)
        key = notes.add({"text": "read me often"})
        notes.search("often")  # the first search indexes the new record (sql/0013)
        writes = store.connection.total_changes()
        for _ in range(5):
            notes.get(key, track=True)
        assert [h.key for h in notes.search("often", track=True)] == [key]
        assert store.connection.total_changes() == writes  # nothing written yet
    with memstore.Store(path) as again:  # close wrote what was counted
        count, last = again["notes"].accesses([key])[key]
        assert count == 6 and last is not None


def test_reinforcement_ranks_memories_read_often_higher(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    c = store.collection("c", fts=["text"], hygiene=True, vectors={"dim": 2, "model": "m"})
    c.put("rare", {"text": "trains and planes"}, vector=[1.0, 0.0])
    c.put("often", {"text": "trains and planes"}, vector=[1.0, 0.0])
    for _ in range(30):
        c.get("often", track=True)
    memstore._flush_accesses(store)
    plain = c.hybrid("trains", vector=[1.0, 0.0], k=2)
    assert [h.key for h in plain] == ["rare", "often"]  # the same content: insertion order
    reinforced = c.hybrid("trains", vector=[1.0, 0.0], k=2, reinforcement=True)
    assert [h.key for h in reinforced] == ["often", "rare"]
    assert reinforced[0].scores["reinforcement"] == pytest.approx(1 + 0.1 * math.log1p(30))


def test_the_recall_score_is_documented_arithmetic() -> None:
    day = timedelta(days=1).total_seconds()
    assert memstore.recall_score(0.03) == 0.03
    assert memstore.recall_score(
        0.03, age_seconds=day, half_life_seconds=day, importance=0.5
    ) == pytest.approx(0.0075)
    assert memstore.recall_score(1, access_count=9) == pytest.approx(1 + 0.1 * math.log(10))
    assert memstore.recall_score(1, importance=7) == 1  # clamped
    with pytest.raises(memstore.ValidationError):
        memstore.recall_score(float("nan"))
    with pytest.raises(memstore.ValidationError):
        memstore.recall_score(1, age_seconds=1, half_life_seconds=0)


def test_merge_keeps_provenance(notes: memstore.Collection) -> None:
    notes.put("a", {"text": "meets on mondays"})
    notes.put("b", {"text": "meeting is every monday"})
    notes.put("c", {"text": "weekly monday meeting"})
    merged = notes.merge(["a", "b", "c"], into="a", record={"text": "a meeting every Monday"})
    assert merged == ["b", "c"] and notes.merged_from("a") == ["b", "c"]
    assert notes.keys() == ["a"] and notes.get("a") == {"text": "a meeting every Monday"}
    with pytest.raises(memstore.NotFoundError):
        notes.merge(["a"], into="nope")
    assert notes.unforget("b") == 1 and notes.merged_from("a") == ["c"]


def test_candidates_for_merge_by_vectors(store: memstore.Store) -> None:
    pytest.importorskip("numpy")
    c = store.collection("c", hygiene=True, vectors={"dim": 2, "model": "m"})
    c.put("x1", {"t": 1}, vector=[1.0, 0.0])
    c.put("x2", {"t": 2}, vector=[0.999, 0.01])
    c.put("y", {"t": 3}, vector=[0.0, 1.0])
    assert c.candidates_for_merge(threshold=0.99) == [["x1", "x2"]]
    assert c.candidates_for_merge(threshold=1.0) == []
    with pytest.raises(memstore.ValidationError):
        c.candidates_for_merge(threshold=0)


def test_without_hygiene_the_calls_say_so(store: memstore.Store) -> None:
    plain = store.collection("plain", fts=["text"])
    plain.put("a", {"text": "x"})
    for call in (
        lambda: plain.remember({"text": "y"}),
        lambda: plain.pin("a"),
        lambda: plain.forget("a"),
        lambda: plain.purge(),
        lambda: plain.merge(["a"], into="a"),
        lambda: plain.candidates_for_merge(),
        lambda: plain.get("a", track=True),
        lambda: plain.search("x", track=True),
    ):
        with pytest.raises(memstore.QueryError, match="hygiene=True"):
            call()
    with pytest.raises(memstore.ValidationError):
        store.collection("bad", hygiene={"dedup": "fuzzy"})
    with pytest.raises(memstore.ValidationError):
        store.collection("bad", hygiene={"policy": "overwrite"})
    assert "bad" not in store and plain.get("a") == {"text": "x"}


def test_hygiene_declared_later_and_checked(store: memstore.Store) -> None:
    c = store.collection("c", fts=["text"])
    c.put_many([(f"k{i}", {"text": "same text"}) for i in range(3)])
    c = store.collection("c", hygiene={"dedup": "exact", "policy": "skip"})
    c.put_many([(f"k{i}", {"text": "same text"}) for i in range(3)])  # hashes filled
    assert c.candidates_for_merge() == [["k0", "k1", "k2"]]
    assert store.check() == []


def test_near_duplicates_by_vector_similarity(store: memstore.Store) -> None:
    pytest.importorskip("numpy")

    def embed(texts: list[str]) -> list[list[float]]:
        return [[t.count(c) + 0.01 for c in "aeiou"] for t in texts]

    c = store.collection(
        "c",
        fts=["text"],
        vectors={"dim": 5, "model": "vowels", "embed": embed},
        hygiene={"dedup": "near", "threshold": 0.99, "policy": "skip"},
    )
    first = c.remember({"text": "aaaa eee"})
    near = c.remember({"text": "aaaa eee!"})  # another text, the same meaning (by the toy model)
    assert near.duplicate_of == first.key and near.action == "skipped"
    assert c.remember({"text": "ooo uuu"}).stored
    assert c.put("z", {"text": "aaaa  eee."}) == first.key and c.count() == 2
    with pytest.raises(memstore.ValidationError, match="threshold"):
        store.collection("d", hygiene={"dedup": "near", "threshold": 1.5})
    with pytest.raises(memstore.ValidationError, match="near"):
        store.collection("d", hygiene={"dedup": "exact", "threshold": 0.5})


def test_reads_counted_by_code_that_read_its_own_way(notes: memstore.Collection) -> None:
    key = notes.add({"text": "counted"})
    notes.count_reads([key, key])
    assert notes.accesses([key])[key][0] == 2  # not written yet, but counted
    memstore._flush_accesses(notes.store)
    count, last = notes.accesses([key, "missing"])[key]
    assert count == 2 and last is not None
    with pytest.raises(memstore.ValidationError):
        notes.count_reads("a string")


def test_reopening_with_hygiene_true_keeps_its_settings(store: memstore.Store) -> None:
    store.collection("c", hygiene={"dedup": "exact", "policy": "merge"})
    again = store.collection("c", hygiene=True)
    assert again.hygiene == {"dedup": "exact", "policy": "merge"}
    assert store.collection("d", hygiene=True).hygiene == {"dedup": None, "policy": "skip"}


def test_forgotten_records_stay_hidden_without_any_ttl(store: memstore.Store) -> None:
    c = store.collection("c", fts=["text"], hygiene=True)  # no TTL: no record expires
    c.put("a", {"text": "x"})
    c.put("b", {"text": "x"})
    c.forget("a")
    assert c.count() == 1 and c.keys() == ["b"] and [h.key for h in c.search("x")] == ["b"]
    assert c.delete_where({}) == 2  # deleting by filter takes the forgotten too


def test_the_same_content_remembered_on_many_connections_is_stored_once(store_url: str) -> None:
    """Each remember looks for a record of the same content, then writes: on PostgreSQL
    two at once found none and stored both."""
    with memstore.Store(store_url) as store:
        store.collection("notes", fts=["text"], hygiene={"dedup": "exact", "policy": "skip"})

    def work(store: memstore.Store, n: int) -> None:
        notes = store.collection("notes")
        for i in range(40):
            notes.remember({"text": f"fact number {i}"}, key=f"{n}-{i}")

    on_connections(store_url, work)
    with memstore.Store(store_url) as store:
        assert len(store["notes"]) == 40
        assert store.check() == []
