"""Full-text search: ranking, snippets, filters, errors, and an index that stays in step."""

from __future__ import annotations

from pathlib import Path

import pytest

import memstore

from .dbinfo import on_postgres, triggers


@pytest.fixture
def docs(events: memstore.Collection) -> memstore.Collection:
    events.put_many(
        [
            {
                "id": "a",
                "agent_id": "a1",
                "summary": "tool timeout",
                "text": "the search tool timed out; retry later",
            },
            {
                "id": "b",
                "agent_id": "a1",
                "summary": "timeout and retry",
                "text": "timeout timeout, then retry worked",
            },
            {
                "id": "c",
                "agent_id": "a2",
                "summary": "plan made",
                "text": "agent planned the next three steps",
            },
            {"id": "d", "agent_id": "a2", "summary": "retry", "text": "a retry after the timeout"},
        ],
        key="id",
    )
    return events


def test_ranked_with_snippets(docs: memstore.Collection) -> None:
    hits = docs.search("timeout")
    assert hits[0].key == "b"  # most occurrences ranks first
    assert {h.key for h in hits} == {"a", "b", "d"}
    assert [h.rank for h in hits] == sorted(h.rank for h in hits)
    assert all("[timeout]" in h.snippet for h in hits)
    assert hits[0].record["summary"] == "timeout and retry"


def test_boolean_query_and_where(docs: memstore.Collection) -> None:
    assert {h.key for h in docs.search("timeout AND retry")} == {"a", "b", "d"}
    assert {h.key for h in docs.search("timeout AND retry", where={"agent_id": "a1"})} == {"a", "b"}
    assert {h.key for h in docs.search("timeout NOT tool")} == {"b", "d"}
    assert {h.key for h in docs.search('"three steps"')} == {"c"}
    assert {h.key for h in docs.search("summary: plan")} == {"c"}
    assert {h.key for h in docs.search("plan*")} == {"c"}


def test_limit_offset_and_highlight(docs: memstore.Collection) -> None:
    first, second = docs.search("retry", limit=1), docs.search("retry", limit=1, offset=1)
    assert len(first) == len(second) == 1 and first[0].key != second[0].key
    assert "<b>retry</b>" in docs.search("retry", highlight=("<b>", "</b>"))[0].snippet


def test_diacritics_are_folded(events: memstore.Collection) -> None:
    events.put("x", {"summary": "Café naïve"})
    assert [h.key for h in events.search("cafe naive")] == ["x"]


@pytest.mark.parametrize(
    "text", ['"unbalanced', "AND", "timeout AND", "nosuchcolumn: x", "(", "", "   ", None]
)
def test_bad_fts_syntax_is_a_query_error(docs: memstore.Collection, text: object) -> None:
    with pytest.raises(memstore.QueryError):
        docs.search(text)  # type: ignore[arg-type]


def test_collection_without_fts(store: memstore.Store) -> None:
    with pytest.raises(memstore.QueryError, match="no full-text index"):
        store.collection("plain").search("x")


def test_index_follows_updates_and_deletes(docs: memstore.Collection) -> None:
    docs.put("c", {"summary": "rewritten", "text": "nothing about plans"})
    assert docs.search("planned") == []
    assert [h.key for h in docs.search("rewritten")] == ["c"]
    docs.delete("a")
    assert "a" not in {h.key for h in docs.search("timeout")}
    assert docs.delete_where({"agent_id": "a1"}) == 1
    assert {h.key for h in docs.search("timeout")} == {"d"}
    assert docs.check() == []


def test_bulk_writes_keep_index_and_triggers(events: memstore.Collection) -> None:
    n = memstore.BULK_THRESHOLD * 5
    events.put_many([(f"k{i}", {"summary": f"first{i}"}) for i in range(n)])
    events.put_many([(f"k{i}", {"summary": f"second{i}"}) for i in range(0, n, 2)])
    assert events.search("first0") == []
    assert [h.key for h in events.search("second0")] == ["k0"]
    assert [h.key for h in events.search("first1")] == ["k1"]
    assert events.check() == []
    if not on_postgres(events.store):  # SQLite's FTS5 index is kept by triggers
        assert {t for t in triggers(events.store, "events") if "fts" in t} == {
            "events__fts_insert",
            "events__fts_delete",
            "events__fts_update",
        }
    assert events.delete_where({"summary": {"$contains": "second"}}) == n // 2
    assert events.check() == []
    assert events.count() == n // 2


def test_failed_bulk_write_restores_triggers_and_index(events: memstore.Collection) -> None:
    events.put("keep", {"summary": "kept"})
    records = [(f"k{i}", {"summary": f"word{i}"}) for i in range(memstore.BULK_THRESHOLD * 3)]
    records.append(("bad", {"summary": {1, 2}}))  # type: ignore[dict-item]
    with pytest.raises(memstore.ValidationError):
        events.put_many(records)
    assert events.keys() == ["keep"]
    if not on_postgres(events.store):  # SQLite's FTS5 index is kept by triggers
        assert len({t for t in triggers(events.store, "events") if "fts" in t}) == 3
    events.put("later", {"summary": "single put after failure"})
    assert [h.key for h in events.search("single")] == ["later"]
    assert events.check() == []


@pytest.mark.sqlite_only("PostgreSQL's words are a generated column: they cannot drift")
def test_check_detects_drift_and_rebuild_fixes_it(events: memstore.Collection) -> None:
    events.put("a", {"summary": "original words"})
    conn = events.store.connection
    conn.execute('DROP TRIGGER "events__fts_update"')
    conn.execute(
        "UPDATE events SET body = json_set(body, '$.summary', 'changed words') WHERE key = 'a'"
    )
    assert events.check()
    events.rebuild_fts()
    assert events.check() == []
    assert [h.key for h in events.search("changed")] == ["a"]


def test_bulk_replacing_rows_several_times_keeps_index_exact(events: memstore.Collection) -> None:
    events.put_many([(f"k{i}", {"summary": f"old{i}"}) for i in range(1500)])
    # each existing key three times, in different batches, plus new keys replaced too
    again = [
        (f"k{i % 1500}", {"summary": f"pass{n} value{i % 1500}"})
        for n, i in ((i // 1500, i) for i in range(4500))
    ]
    again += [(f"new{i % 700}", {"summary": f"fresh{i}"}) for i in range(2100)]
    assert events.put_many(again) == 6600
    assert events.count() == 2200
    assert events.check() == []
    assert events.search("old7") == []
    assert [h.key for h in events.search("pass2 AND value7")] == ["k7"]
    assert events.search("pass0 AND value7") == []
    assert [h.key for h in events.search("fresh1400")] == ["new0"]
    assert events.search("fresh0") == []


def test_a_large_load_leaves_no_merging_to_later_writes(db_path: Path) -> None:
    """FTS5 would merge the segments of one big indexing statement bit by bit on every
    later write (single puts ran at a third of their speed): put_many merges them."""
    with memstore.Store(db_path) as store:
        notes = store.collection("notes", fts=["text"])
        notes.put_many(
            (f"k{i}", {"text": f"note {i} about word{i % 97}"})
            for i in range(memstore.ANALYZE_AFTER)
        )
        conn = store.connection
        before = conn.total_changes()
        conn.execute("INSERT INTO notes_fts (notes_fts, rank) VALUES ('merge', -500)")
        assert conn.total_changes() - before < 2  # nothing was left to merge
        assert len(notes.search("word5", limit=500)) == len(range(5, memstore.ANALYZE_AFTER, 97))
        assert store.check() == []


def test_every_hit_has_a_higher_is_better_score(store: memstore.Store) -> None:
    notes = store.collection("notes", fts=["text"])
    notes.put("strong", {"text": "ramen ramen ramen"})
    notes.put("weak", {"text": "ramen, then a long story about many other things at length"})
    hits = notes.search("ramen")
    assert [h.key for h in hits] == ["strong", "weak"]
    assert hits[0].score > hits[1].score > 0
    assert all(h.score == -h.rank for h in hits)
    log = store.event_log("agent")
    log.append({"kind": "note", "payload": {"text": "ramen ramen"}})
    assert all(h.score > 0 for h in log.search("ramen"))
    conv = store.conversations()
    conv.create_thread("t")
    conv.add_message("t", "user", "ramen please")
    assert all(h.score > 0 and h.score == -h.rank for h in conv.search("ramen"))
