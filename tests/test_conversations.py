"""Conversations: threads, messages with token usage, search, trim, branches and merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import memstore

from .conftest import run_processes
from .dbinfo import on_connections, other_tool, sql


@pytest.fixture
def conv(store: memstore.Store) -> memstore.Conversations:
    return store.conversations()


def usage(i: int, o: int, model: str = "small", cost: float = 0.001) -> dict[str, Any]:
    return {"input_tokens": i, "output_tokens": o, "model": model, "cost": cost}


def contents(messages: list[memstore.Message]) -> list[Any]:
    return [m.content for m in messages]


def test_thread_and_messages(conv: memstore.Conversations) -> None:
    tid = conv.create_thread(
        "t1", title="Trip", user_id="u1", agent_id="a1", tags=["travel"], metadata={"lang": "fr"}
    )
    assert tid == "t1"
    assert conv.add_message("t1", "system", "You plan trips.") == 1
    assert conv.add_message("t1", "user", "Train to Lyon?") == 2
    assert (
        conv.add_message(
            "t1",
            "assistant",
            None,
            tool_calls=[{"name": "search_trains", "args": {"to": "Lyon"}}],
            usage=usage(100, 20),
        )
        == 3
    )
    assert conv.add_message("t1", "tool", {"trains": ["9:04", "10:04"]}, name="search_trains") == 4
    assert (
        conv.add_message("t1", "assistant", "The 9:04.", usage=usage(150, 10), metadata={"k": 1})
        == 5
    )
    thread = conv.thread("t1")
    assert thread.message_count == 5 and thread.last_message_at is not None
    assert (thread.title, thread.user_id, thread.tags, thread.metadata) == (
        "Trip",
        "u1",
        ["travel"],
        {"lang": "fr"},
    )
    messages = conv.messages("t1")
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2].tool_calls == [{"name": "search_trains", "args": {"to": "Lyon"}}]
    assert (
        messages[3].content == {"trains": ["9:04", "10:04"]} and messages[3].name == "search_trains"
    )
    assert (messages[4].input_tokens, messages[4].output_tokens, messages[4].total_tokens) == (
        150,
        10,
        160,
    )
    assert messages[4].metadata == {"k": 1}
    assert contents(conv.last_messages("t1", 2)) == [{"trains": ["9:04", "10:04"]}, "The 9:04."]
    assert [m.position for m in conv.messages("t1", before=4, limit=2)] == [2, 3]
    assert [m.position for m in conv.messages("t1", after=1, limit=2)] == [2, 3]


def test_usage_totals_equal_sum_of_messages(conv: memstore.Conversations) -> None:
    conv.create_thread("a")
    conv.create_thread("b")
    conv.add_message("a", "user", "hi")
    conv.add_message("a", "assistant", "x", usage=usage(10, 5, "small", 0.01))
    conv.add_message(
        "a",
        "assistant",
        "y",
        usage={
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 12,
            "model": "big",
            "cost": 0.5,
        },
    )
    conv.add_message("b", "assistant", "z", usage=usage(1, 1, "small", 0.02))
    a = conv.usage("a")
    assert (a["messages"], a["input_tokens"], a["output_tokens"], a["total_tokens"]) == (
        3,
        17,
        8,
        27,
    )
    assert a["cost"] == pytest.approx(0.51)
    assert a["by_model"]["big"]["total_tokens"] == 12 and a["by_model"]["small"]["messages"] == 1
    everything = conv.usage()
    messages = conv.messages("a") + conv.messages("b")
    assert everything["total_tokens"] == sum(m.total_tokens for m in messages) == 29
    assert everything["cost"] == pytest.approx(sum(m.cost for m in messages))
    assert everything["by_model"]["small"]["input_tokens"] == 11
    # Messages with no model are an entry of their own, so the entries add up to the totals.
    assert everything["by_model"][None]["messages"] == 1
    for key in ("messages", "input_tokens", "total_tokens"):
        assert sum(e[key] for e in everything["by_model"].values()) == everything[key]


def test_unknown_usage_fields_are_named_once_quoted(conv: memstore.Conversations) -> None:
    conv.create_thread("a")
    with pytest.raises(memstore.ValidationError) as caught:
        conv.add_message("a", "assistant", "x", usage={"tokens": 3})
    assert "unknown usage fields 'tokens'; use " in str(caught.value)
    assert "\"'" not in str(caught.value)


def test_threads_filters_and_order(conv: memstore.Conversations) -> None:
    for i in range(6):
        conv.create_thread(
            f"t{i}",
            user_id="u1" if i < 4 else "u2",
            agent_id="a1",
            tags=["x", "even"] if i % 2 == 0 else ["x"],
        )
        for _ in range(i):
            conv.add_message(f"t{i}", "user", f"message in {i}")
    assert [t.id for t in conv.threads(user_id="u1")] == ["t3", "t2", "t1", "t0"]
    assert [t.id for t in conv.threads(tags=["even"], order_by="id")] == ["t0", "t2", "t4"]
    assert [t.id for t in conv.threads(min_messages=4, order_by="-message_count")] == ["t5", "t4"]
    assert [t.id for t in conv.threads(user_id="u1", limit=2)] == ["t3", "t2"]
    assert len(conv.threads(created_after=datetime.now(UTC) - timedelta(hours=1))) == 6
    assert conv.threads(created_after="2999-01-01T00:00:00Z") == []
    with pytest.raises(memstore.QueryError):
        conv.threads(order_by="title; DROP TABLE x")


def test_search_messages(conv: memstore.Conversations) -> None:
    conv.create_thread("a")
    conv.create_thread("b")
    conv.add_message("a", "user", "what is the weather in Lyon")
    conv.add_message("b", "user", "book a hotel in Lyon near the station")
    conv.add_message("b", "assistant", {"answer": "Hotel du Rhône"})
    hits = conv.search("lyon")
    assert {h.key for h in hits} == {"a", "b"}
    assert [h.key for h in conv.search("lyon", thread_id="b")] == ["b"]
    assert conv.search("rhone")[0].record.content == {"answer": "Hotel du Rhône"}
    assert "[Lyon]" in hits[0].snippet
    with pytest.raises(memstore.QueryError):
        conv.search("AND")


def test_trim_and_delete(store: memstore.Store) -> None:
    conv = store.conversations()
    conv.create_thread("t")
    for i in range(10):
        conv.add_message("t", "user", f"m{i}", usage=usage(1, 1))
    assert conv.trim("t", keep_last=3) == 7
    assert contents(conv.messages("t")) == ["m7", "m8", "m9"]
    assert conv.thread("t").message_count == 3
    assert conv.add_message("t", "user", "m10") == 11
    assert conv.search("m2") == []
    assert conv.delete_thread("t") == 1
    with pytest.raises(memstore.NotFoundError):
        conv.thread("t")
    assert sql(store, "SELECT count(*) FROM memstore_messages") == [(0,)]
    assert conv.usage()["total_tokens"] == 0
    assert store.check() == []


def test_cleanup_by_age_keeps_threads_with_recent_branches(store: memstore.Store) -> None:
    conv = store.conversations()
    for tid in ("old", "old-with-new-branch", "new"):
        conv.create_thread(tid)
        conv.add_message(tid, "user", "hi")
    branch = conv.branch("old-with-new-branch")
    conv.add_message(branch, "user", "recent")
    sql(
        store,
        "UPDATE memstore_threads SET created_at = '2000-01-01T00:00:00.000000Z', "
        "last_message_at = '2000-01-01T00:00:00.000000Z' WHERE id != ? AND id != 'new'",
        (branch,),
    )
    assert conv.cleanup(older_than=timedelta(days=1)) == 1
    assert sorted(t.id for t in conv.threads()) == sorted(["old-with-new-branch", "new", branch])


def test_branch_add_merge_keeps_order_and_counts(conv: memstore.Conversations) -> None:
    conv.create_thread("main")
    for text in ["q1", "a1", "q2", "a2"]:
        conv.add_message("main", "user" if text.startswith("q") else "assistant", text)
    branch = conv.branch("main", at=2, title="try another answer")
    assert conv.thread(branch).message_count == 2
    assert contents(conv.messages(branch)) == ["q1", "a1"]
    assert conv.add_message(branch, "user", "q2-alt") == 3
    assert conv.add_message(branch, "assistant", "a2-alt", usage=usage(50, 5, "big", 0.2)) == 4
    assert contents(conv.messages(branch)) == ["q1", "a1", "q2-alt", "a2-alt"]
    assert contents(conv.messages("main")) == ["q1", "a1", "q2", "a2"]
    assert conv.thread(branch).message_count == 4
    total_before = conv.usage()["total_tokens"]

    assert conv.merge(branch) == [5, 6]
    assert contents(conv.messages("main")) == ["q1", "a1", "q2", "a2", "q2-alt", "a2-alt"]
    assert conv.thread("main").message_count == 6
    merged = conv.messages("main")[-1]
    assert merged.merged_from is not None and merged.total_tokens == 0
    assert conv.usage()["total_tokens"] == total_before  # merged copies do not count twice
    b = conv.thread(branch)
    assert (b.status, b.merged_into) == ("merged", "main")
    assert contents(conv.messages(branch)) == ["q1", "a1", "q2-alt", "a2-alt"]  # still readable
    with pytest.raises(memstore.ConflictError, match="merged"):
        conv.add_message(branch, "user", "too late")
    with pytest.raises(memstore.ConflictError):
        conv.merge(branch)

    tree = conv.tree(branch)
    assert tree["id"] == "main" and tree["merges"][0]["branch_id"] == branch
    assert tree["merges"][0]["message_count"] == 2
    (child,) = tree["children"]
    assert (child["id"], child["status"], child["branch_point"]) == (branch, "merged", 2)


def test_nested_branches_and_abandon(conv: memstore.Conversations) -> None:
    conv.create_thread("root")
    for i in range(3):
        conv.add_message("root", "user", f"r{i}")
    b1 = conv.branch("root", at=2)
    conv.add_message(b1, "user", "b1-a")
    conv.add_message(b1, "user", "b1-b")
    b2 = conv.branch(b1, at=3)  # shares r0, r1 and b1-a
    conv.add_message(b2, "user", "b2-a")
    assert contents(conv.messages(b2)) == ["r0", "r1", "b1-a", "b2-a"]
    assert [h.key for h in conv.search("b1", thread_id=b2)] == [b1]
    b3 = conv.branch(b1, at=1)  # before b1's own messages
    assert contents(conv.messages(b3)) == ["r0"]
    conv.abandon(b2, reason="dead end")
    assert conv.thread(b2).status == "abandoned" and conv.thread(b2).status_reason == "dead end"
    with pytest.raises(memstore.ConflictError):
        conv.add_message(b2, "user", "no")
    tree = conv.tree("root")
    assert [c["id"] for c in tree["children"]] == [b1]
    assert sorted(c["id"] for c in tree["children"][0]["children"]) == sorted([b2, b3])
    assert conv.merge(b3, into=b1) == []
    with pytest.raises(memstore.ConflictError, match="branches"):
        conv.delete_thread("root")
    assert conv.delete_thread("root", branches=True) == 4
    assert conv.threads() == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.add_message("t", "robot", "hi"), memstore.ValidationError),
        (lambda c: c.add_message("t", "user", {1, 2}), memstore.ValidationError),
        (
            lambda c: c.add_message("t", "user", "x", usage={"input_tokens": -1}),
            memstore.ValidationError,
        ),
        (
            lambda c: c.add_message("t", "user", "x", usage={"input_tokens": 1.5}),
            memstore.ValidationError,
        ),
        (lambda c: c.add_message("t", "user", "x", usage={"cost": -0.1}), memstore.ValidationError),
        (
            lambda c: c.add_message("t", "user", "x", usage={"cost": float("nan")}),
            memstore.ValidationError,
        ),
        (lambda c: c.add_message("t", "user", "x", usage={"tokens": 5}), memstore.ValidationError),
        (lambda c: c.add_message("t", "user", "x", metadata=[1]), memstore.ValidationError),
        (lambda c: c.add_message("t", "user", "x", tool_calls={1}), memstore.ValidationError),
        (lambda c: c.add_message("nope", "user", "x"), memstore.NotFoundError),
        (
            lambda c: c.add_messages("t", [{"role": "user", "content": "x"}, {"role": "bot"}]),
            memstore.ValidationError,
        ),
        (
            lambda c: c.add_messages("t", [{"role": "user", "content": "x", "extra": 1}]),
            memstore.ValidationError,
        ),
        (lambda c: c.add_messages("t", [{"content": "no role"}]), memstore.ValidationError),
        (lambda c: c.add_messages("t", [{"role": "user", 1: "x"}]), memstore.ValidationError),
        (lambda c: c.add_messages("t", ["user: x"]), memstore.ValidationError),
        (lambda c: c.add_messages("t", "user: x"), memstore.ValidationError),
        (lambda c: c.add_messages("t", {"role": "user"}), memstore.ValidationError),
        (
            lambda c: c.add_messages("t", [{"role": "user", "metadata": {"x": {1, 2}}}]),
            memstore.ValidationError,
        ),
        (lambda c: c.add_messages("nope", [{"role": "user"}]), memstore.NotFoundError),
        (lambda c: c.create_thread("t"), memstore.ConflictError),
        (lambda c: c.create_thread("", title="x"), memstore.ValidationError),
        (lambda c: c.create_thread("u", tags="x"), memstore.ValidationError),
        (lambda c: c.create_thread("u", tags=["a\x00b"]), memstore.ValidationError),
        (lambda c: c.threads(user_id=("u",)), memstore.ValidationError),
        (lambda c: c.branch("t", at=5), memstore.ValidationError),
        (lambda c: c.branch("nope"), memstore.NotFoundError),
        (lambda c: c.merge("t"), memstore.ValidationError),
        (lambda c: c.messages("nope"), memstore.NotFoundError),
        (lambda c: c.usage("nope"), memstore.NotFoundError),
    ],
)
def test_bad_input_writes_nothing(conv: memstore.Conversations, call: Any, error: type) -> None:
    conv.create_thread("t")
    conv.add_message("t", "user", "only message", usage=usage(1, 2))
    before = (conv.messages("t"), conv.threads(), conv.usage())
    with pytest.raises(error):
        call(conv)
    assert (conv.messages("t"), conv.threads(), conv.usage()) == before


def test_messages_fts_follows_other_tools(store_url: str) -> None:
    with memstore.Store(store_url) as store:
        conv = store.conversations()
        conv.create_thread("t")
        conv.add_message("t", "user", "original text")
        other_tool(store_url, "UPDATE memstore_messages SET content = 'edited elsewhere'")
        assert conv.search("original") == []
        assert [h.key for h in conv.search("edited")] == ["t"]
        assert store.check() == []


def test_check_and_repair_cover_the_layers_fts(file_store: memstore.Store) -> None:
    conv = file_store.conversations()
    conv.create_thread("t")
    conv.add_message("t", "user", "indexed words")
    assert [h.key for h in conv.search("indexed")] == ["t"]  # the message is in the index now
    file_store.event_log("l").append({"kind": "k", "payload": "logged words"})
    conn = file_store.connection
    conn.execute("DROP TRIGGER memstore_messages__fts_update")
    conn.execute("UPDATE memstore_messages SET content = 'drifted'")
    problems = file_store.check()
    assert "missing trigger memstore_messages__fts_update" in problems
    assert any("memstore_messages_fts" in p for p in problems)
    assert file_store.repair() == [
        "recreated trigger memstore_messages__fts_update",
        "rebuilt the full-text index memstore_messages_fts",
    ]
    assert file_store.check() == []
    assert [h.key for h in conv.search("drifted")] == ["t"]
    conn.execute("UPDATE memstore_messages SET content = 'kept in step again'")
    assert [h.key for h in conv.search("step")] == ["t"] and file_store.check() == []


def test_pop_message_undoes_the_last_one(store: memstore.Store) -> None:
    chat = store.conversations()
    thread = chat.create_thread("t")
    chat.add_message(thread, "user", "first", usage={"input_tokens": 3})
    chat.add_message(thread, "assistant", "second", usage={"output_tokens": 5})
    branch = chat.branch(thread)  # shares both
    popped = chat.pop_message(thread)
    assert popped is not None and popped.content == "second" and popped.position == 2
    assert [m.content for m in chat.messages(thread)] == ["first"]
    assert [m.content for m in chat.messages(branch)] == ["first"]
    assert chat.thread(thread).message_count == 1 and chat.usage(thread)["output_tokens"] == 0
    assert chat.search("second") == []
    assert chat.pop_message(branch) is None  # it has no messages of its own
    assert chat.pop_message(thread) is not None and chat.pop_message(thread) is None
    assert chat.add_message(thread, "user", "again") == 1
    assert chat.messages(branch) == []  # the branch does not take in the parent's new message
    with pytest.raises(memstore.NotFoundError):
        chat.pop_message("nope")
    assert chat.check() == []


def test_add_messages_stores_what_add_message_would(store: memstore.Store) -> None:
    chat = store.conversations()
    given: list[dict[str, Any]] = [
        {"role": "system", "content": "You plan trips."},
        {"role": "user", "content": "Train to Lyon?", "metadata": {"lang": "en"}},
        {"role": "assistant", "content": None, "tool_calls": [{"name": "trains"}]},
        {"role": "tool", "content": {"trains": ["9:04"]}, "name": "trains"},
        {"role": "assistant", "content": "The 9:04.", "usage": usage(150, 10)},
    ]
    one, many = chat.create_thread("one"), chat.create_thread("many")
    positions = []
    for message in [dict(m) for m in given]:
        role, content = message.pop("role"), message.pop("content")
        positions.append(chat.add_message(one, role, content, **message))
    assert chat.add_messages(many, given) == positions == [1, 2, 3, 4, 5]
    assert chat.add_messages(many, []) == [] and chat.add_messages(many, iter([])) == []

    def comparable(thread: str) -> list[tuple[Any, ...]]:
        return [(*m[1:-2], m.merged_from) for m in chat.messages(thread)]

    assert comparable(one) == comparable(many)
    assert chat.thread(many).message_count == 5 and chat.usage(many) == chat.usage(one)
    assert sorted(h.key for h in chat.search("Lyon")) == ["many", "one"]
    assert chat.check() == []


def test_add_messages_can_start_the_thread(store: memstore.Store) -> None:
    chat = store.conversations()
    assert chat.add_messages("s1", [{"role": "user", "content": "hi"}], create=True) == [1]
    assert chat.add_messages("s1", [{"role": "assistant", "content": "hello"}], create=True) == [2]
    assert chat.thread("s1").message_count == 2
    branch = chat.branch("s1", branch_id="b")
    chat.abandon(branch)
    with pytest.raises(memstore.ConflictError):  # a thread that exists but is not active
        chat.add_messages(branch, [{"role": "user", "content": "late"}], create=True)
    assert chat.messages(branch)[-1].content == "hello" and chat.check() == []


@pytest.mark.sqlite_only("SQLite's programs (EXPLAIN)")
def test_an_append_builds_no_temporary_btree(store: memstore.Store) -> None:
    """An INSERT ... SELECT reading its own table, a RETURNING, a CHECK with an IN list of
    three values: each makes SQLite build a temporary b-tree for every message."""
    store.conversations().create_thread("t")
    for statement, params in (
        (memstore._LAST_POSITION_SQL, ("t",)),
        (
            memstore._INSERT_MESSAGE_SQL,
            ("t", 1, "user", "x", "text", None, None, "{}", 0, 0, 0, None, 0.0, "2026"),
        ),
    ):
        program = store.connection.execute(f"EXPLAIN {statement}", params).fetchall()
        assert not [op for _, op, *_ in program if op == "OpenEphemeral"], statement


def test_pop_message_recounts_only_the_branches_that_shared_it(store: memstore.Store) -> None:
    chat = store.conversations()
    root = chat.create_thread("root")
    chat.add_messages(root, [{"role": "user", "content": f"m{i}"} for i in range(1, 4)])
    early = chat.branch(root, at=1, branch_id="early")  # shares m1 only
    late = chat.branch(root, branch_id="late")  # shares m1..m3
    chat.add_message(late, "user", "late's own")
    later = chat.branch(late, branch_id="later")  # shares m1..m3 through late, and late's own
    assert chat.pop_message(root) is not None
    assert [m.content for m in chat.messages(later)] == ["m1", "m2", "late's own"]
    assert [chat.thread(t).message_count for t in (root, early, late, later)] == [2, 1, 3, 3]
    assert chat.check() == []


def test_usage_added_after_the_answer(conv: memstore.Conversations) -> None:
    conv.create_thread("a")
    conv.add_message("a", "user", "hi")
    with pytest.raises(memstore.NotFoundError, match="no assistant message"):
        conv.add_usage("a", {"input_tokens": 1})
    conv.add_message("a", "assistant", "hello", usage={"input_tokens": 5, "model": "small"})
    conv.add_message("a", "user", "more")
    message = conv.add_usage("a", {"input_tokens": 10, "output_tokens": 2, "cost": 0.5})
    assert (message.position, message.input_tokens, message.output_tokens) == (2, 15, 2)
    assert message.total_tokens == 17 and message.model == "small" and message.cost == 0.5
    conv.add_usage("a", {"output_tokens": 1, "model": "big"}, position=1)
    assert conv.usage("a")["by_model"]["big"]["output_tokens"] == 1
    assert conv.usage("a")["total_tokens"] == 18
    before = conv.usage("a")
    for bad in [{"tokens": 1}, {"input_tokens": -1}, {"cost": float("nan")}]:
        with pytest.raises(memstore.ValidationError):
            conv.add_usage("a", bad)
    with pytest.raises(memstore.NotFoundError):
        conv.add_usage("a", {"input_tokens": 1}, position=99)
    with pytest.raises(memstore.NotFoundError):
        conv.add_usage("nope", {"input_tokens": 1})
    assert conv.usage("a") == before
    branch = conv.branch("a", at=2)
    conv.add_message(branch, "assistant", "from the branch", usage={"input_tokens": 3})
    conv.merge(branch)
    with pytest.raises(memstore.ConflictError):
        conv.add_usage("a", {"input_tokens": 1})  # the merged copy is the last assistant message


def test_check_finds_drifted_counts_and_repair_recounts(store: memstore.Store) -> None:
    """Another tool's change to a thread's count: check names the thread, repair mends it."""
    conv = store.conversations()
    conv.create_thread("t")
    conv.add_messages("t", [{"role": "user", "content": "one"}, {"role": "user", "content": "2"}])
    branch = conv.branch("t", at=1)
    conv.add_message(branch, "assistant", "own")
    sql(store, "UPDATE memstore_threads SET message_count = 9")
    assert store.check() == [
        f"thread {tid}: message count 9 and last message {last} disagree with its {real} "
        "messages (repair recounts)"
        for tid, last, real in sorted(
            (t.id, t.last_message_at, n)
            for t, n in ((conv.thread("t"), 2), (conv.thread(branch), 2))
        )
    ]
    assert store.repair() == sorted(
        f"thread {tid}: recounted its messages" for tid in ("t", branch)
    )
    assert store.check() == []
    assert (conv.thread("t").message_count, conv.thread(branch).message_count) == (2, 2)


def test_threads_without_messages_sort_as_on_sqlite(conv: memstore.Conversations) -> None:
    """A thread with no message yet has no last_message_at: first in ascending order and
    last in descending order, on every engine (SQLite's order of NULLs)."""
    for tid in ("a", "b", "c"):
        conv.create_thread(tid)
    conv.add_message("b", "user", "hi")
    assert [t.id for t in conv.threads()] == ["b", "c", "a"]
    assert [t.id for t in conv.threads(order_by="last_message_at")] == ["a", "c", "b"]
    assert [t.id for t in conv.threads(order_by="title", limit=2, offset=1)] == ["b", "c"]
    conv.add_message("c", "user", "hi", usage={"input_tokens": 5, "model": "m"})
    assert list(conv.usage()["by_model"]) == [None, "m"]
    assert conv.usage()["by_model"]["m"] == {
        "messages": 1,
        "input_tokens": 5,
        "output_tokens": 0,
        "total_tokens": 5,
        "cost": 0.0,
    }


# Each thread its own Store (a connection of its own), appending to one shared thread: one
# message at a time, then two at once.
APPENDER = """
import sys, memstore

def work(t):
    writer = f"{sys.argv[2]}.{t}"
    with memstore.Store(sys.argv[1], timeout=60) as store:
        conv = store.conversations()
        for i in range(0, 20, 2):
            conv.add_message("shared", "user", f"{writer}-{i}", usage={"input_tokens": 1})
            conv.add_messages("shared", [
                {"role": "assistant", "content": f"{writer}-{i + 1}"},
                {"role": "tool", "content": f"{writer}-{i + 1}-tool"},
            ])
"""


def test_concurrent_appends_take_gap_free_positions(store_url: str) -> None:
    """8 processes of 4 threads on as many connections append to one thread: positions
    1..n without a gap or a repeat, each writer's messages in its order, its pairs
    together, and the thread's count and usage right."""
    with memstore.Store(store_url) as store:
        store.conversations().create_thread("shared")
    run_processes(APPENDER, store_url)
    with memstore.Store(store_url) as store:
        conv = store.conversations()
        messages = conv.messages("shared")
        total = 8 * 4 * 30
        assert [m.position for m in messages] == list(range(1, total + 1))
        assert conv.thread("shared").message_count == total
        assert conv.usage("shared")["input_tokens"] == 8 * 4 * 10
        by_writer: dict[str, list[str]] = {}
        for at, message in enumerate(messages):
            writer, _, rest = message.content.partition("-")
            by_writer.setdefault(writer, []).append(rest)
            if message.role == "assistant":  # its pair's other half is next to it
                assert messages[at + 1].content == f"{message.content}-tool"
        for mine in by_writer.values():
            numbers = [int(r.split("-")[0]) for r in mine if not r.endswith("tool")]
            assert numbers == list(range(20))
        assert store.check() == []


def test_pops_and_merges_on_many_connections_take_turns(store_url: str) -> None:
    """Each pop reads the thread's last message, then deletes it: on PostgreSQL two at
    once popped the same one. Each merge of a branch checks that it is active, then
    copies: two at once copied it twice. Both now wait for each other (and for appends)
    as on SQLite."""
    with memstore.Store(store_url) as store:
        conv = store.conversations()
        conv.add_messages("t", [{"role": "user", "content": i} for i in range(40)], create=True)
        conv.add_messages("m", [{"role": "user", "content": "q"}], create=True)
        branch = conv.branch("m", at=1)
        conv.add_messages(branch, [{"role": "assistant", "content": "a"}])
    popped: list[Any] = []
    merged: list[Any] = []

    def work(store: memstore.Store, n: int) -> None:
        conv = store.conversations()
        for _ in range(10):
            message = conv.pop_message("t")
            assert message is not None
            popped.append(message.content)
        try:
            merged.append(conv.merge(branch))
        except memstore.ConflictError:
            merged.append(None)

    on_connections(store_url, work)
    assert sorted(popped) == list(range(40))
    assert [m for m in merged if m is not None] == [[2]]
    with memstore.Store(store_url) as store:
        conv = store.conversations()
        assert conv.messages("t") == [] and conv.thread("t").message_count == 0
        assert contents(conv.messages("m")) == ["q", "a"]
        assert conv.check() == []
