"""MemstoreSession: the Agents SDK's session contract, and real runs with the SDK's scripted
model (no network)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage

import memstore
from memstore_agents import MemstoreSession, SessionClosedError

from .dbinfo import other_tool

set_tracing_disabled(True)  # scripted runs: nothing to send anywhere


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


# -- the Session contract (as the SDK's own tests hold SQLiteSession to it) ----------


async def test_items_in_order_with_limits(store_url: str) -> None:
    session = MemstoreSession("s1", store_url)
    assert await session.get_items() == []
    assert await session.pop_item() is None
    items = [user("one"), reply("two"), user("three"), reply("four")]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=2) == items[2:]  # the latest, oldest first
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=10) == items
    assert await session.pop_item() == reply("four")
    assert await session.get_items() == items[:3]
    await session.add_items([])
    await session.clear_session()
    assert await session.get_items() == []
    await session.clear_session()  # twice is fine
    session.close()


async def test_settings_limit_and_coercion(store_url: str) -> None:
    session = MemstoreSession("s1", store_url, session_settings={"limit": 2})
    await session.add_items([user(str(i)) for i in range(5)])
    assert await session.get_items() == [user("3"), user("4")]
    assert await session.get_items(limit=3) == [user("2"), user("3"), user("4")]
    session.close()
    with pytest.raises(memstore.ValidationError):
        MemstoreSession("s1", store_url, session_settings={"limits": 2})
    with pytest.raises(memstore.ValidationError):
        MemstoreSession("s1", store_url, messages_table="mine")
    with pytest.raises(memstore.ValidationError):
        MemstoreSession("", store_url)


async def test_closed_session_raises_runtime_error(store_url: str) -> None:
    session = MemstoreSession("s1", store_url)
    await session.add_items([user("hi")])
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        await session.add_items([user("again")])
    with pytest.raises(SessionClosedError):
        await session.get_items()
    assert issubclass(SessionClosedError, memstore.MemstoreError)
    reopened = MemstoreSession("s1", store_url)
    assert await reopened.get_items() == [user("hi")]
    reopened.close()


async def test_sessions_share_a_file_and_stay_apart(store_url: str) -> None:
    a, b, a_again = (
        MemstoreSession("a", store_url),
        MemstoreSession("b", store_url),
        MemstoreSession("a", store_url),
    )
    await a.add_items([user("for a")])
    await b.add_items([user("for b")])
    assert await a_again.get_items() == [user("for a")]
    assert await b.get_items() == [user("for b")]
    await a_again.clear_session()
    assert await a.get_items() == [] and await b.get_items() == [user("for b")]
    memory_one, memory_two = MemstoreSession("m"), MemstoreSession("m")  # :memory: each its own
    await memory_one.add_items([user("x")])
    assert await memory_two.get_items() == []
    for session in (a, b, a_again, memory_one, memory_two):
        session.close()


async def test_a_failing_add_writes_nothing(store_url: str) -> None:
    session = MemstoreSession("s1", store_url)
    await session.add_items([user("kept")])
    with pytest.raises(memstore.ValidationError):
        await session.add_items([user("lost"), "not an item"])  # type: ignore[list-item]
    with pytest.raises(memstore.ValidationError):
        await session.add_items([user("lost"), {"role": "user", "content": {1, 2}}])
    with pytest.raises(memstore.ValidationError):
        await session.add_items([user("lost"), {"role": "user", "content": "x", "n": float("nan")}])
    assert await session.get_items() == [user("kept")]
    session.close()


def test_safe_from_many_threads_each_with_its_own_loop(store_url: str) -> None:
    session = MemstoreSession("shared", store_url)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        async def main() -> None:
            for i in range(25):
                await session.add_items([user(f"{n}-{i}"), reply(f"{n}-{i}")])
                await session.get_items(limit=5)

        try:
            asyncio.run(main())
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items = asyncio.run(session.get_items())
    assert len(items) == 300
    # each add_items landed whole: a user item is always followed by its reply
    for first, second in zip(items[::2], items[1::2], strict=True):
        assert first["content"] == second["content"]
    session.close()


# -- real runs with the SDK's scripted model -------------------------------------------


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


async def test_runner_remembers_across_runs_and_records_usage(db_path: Path) -> None:
    model = ScriptedModel(
        [
            ModelStep(
                output=[function_call("weather", {"city": "Lyon"}, call_id="call-1")],
                usage=Usage(requests=1, input_tokens=20, output_tokens=5, total_tokens=25),
            ),
            ModelStep(
                output=[assistant_message("It is sunny in Lyon.")],
                usage=Usage(requests=1, input_tokens=40, output_tokens=8, total_tokens=48),
            ),
            ModelStep(output=[assistant_message("You asked about Lyon.")]),
        ]
    )
    agent = Agent(name="planner", model=model, tools=[weather])
    session = MemstoreSession("trip", db_path)
    first = await Runner.run(agent, "Weather in Lyon?", session=session)
    assert first.final_output == "It is sunny in Lyon."
    await session.store_run_usage(first)
    second = await Runner.run(agent, "What did I ask?", session=session)
    assert second.final_output == "You asked about Lyon."
    # The second call to the model got the first run's items from the session.
    sent = model.last_call.input  # type: ignore[union-attr]
    assert any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in sent)
    items = await session.get_items()
    kinds = [i.get("type", "message") for i in items]
    assert kinds.count("function_call") == 1 and kinds.count("function_call_output") == 1
    assert items[0] == {"content": "Weather in Lyon?", "role": "user"}
    usage = await session.get_session_usage()
    assert usage["input_tokens"] == 60 and usage["output_tokens"] == 13 and usage["turns"] == 2
    per_turn = await session.get_turn_usage()
    assert [t["input_tokens"] for t in per_turn] == [60, 0]
    assert (await session.get_turn_usage(1))["total_tokens"] == 73
    with pytest.raises(memstore.ValidationError):
        await session.get_turn_usage(3)
    session.close()
    with memstore.Store(db_path) as store:  # the session is a memstore conversation
        chat = store.conversations()
        roles = [m.role for m in chat.messages("trip")]
        assert roles.count("tool") == 1 and roles[0] == "user"
        assert [h.key for h in chat.search("Lyon")] and store.check() == []
    with sqlite3.connect(db_path) as conn:  # and plain SQLite reads it
        assert conn.execute("SELECT count(*) FROM memstore_messages").fetchone()[0] == len(items)


async def test_messages_added_by_other_means_come_back_as_items(store_url: str) -> None:
    session = MemstoreSession("s", store_url)
    await session.add_items([user("from the SDK")])
    with memstore.Store(store_url) as store:
        chat = store.conversations()
        chat.add_message("s", "assistant", "from memstore")
        chat.add_message("s", "tool", "42", name="call-7")
        chat.add_message("s", "user", "x", metadata={"item": "not an item", "k": 1})
    other_tool(  # an item written by another tool, its JSON spaced out
        store_url,
        "INSERT INTO memstore_messages (thread_id, position, role, content, metadata, "
        "created_at) VALUES ('s', 5, 'user', 'spaced', ?, '2026-01-01T00:00:00Z')",
        [json.dumps({"item": user("spaced"), "by": "a script"}, indent=1)],
    )
    assert await session.get_items() == [
        user("from the SDK"),
        reply("from memstore"),
        {"type": "function_call_output", "call_id": "call-7", "output": "42"},
        user("x"),
        user("spaced"),
    ]
    with memstore.Store(store_url) as store:  # a session whose thread is a branch of another
        chat = store.conversations()
        chat.create_thread("root")
        chat.add_message("root", "user", "shared")
        chat.branch("root", branch_id="forked")
    forked = MemstoreSession("forked", store_url)
    await forked.add_items([reply("own")])
    assert await forked.get_items() == [user("shared"), reply("own")]
    assert await forked.get_items(limit=1) == [reply("own")]
    session.close()
    forked.close()


async def test_branch_from_a_turn(store_url: str) -> None:
    session = MemstoreSession("s", store_url)
    await session.add_items([user("q1"), reply("a1"), user("q2"), reply("a2")])
    turns = await session.get_conversation_turns()
    assert [(t["turn"], t["content"]) for t in turns] == [(1, "q1"), (2, "q2")]
    name = await session.create_branch_from_turn(2, "retry")
    assert name == "retry" and session.current_branch_id == "retry"
    assert await session.get_items() == [user("q1"), reply("a1")]
    await session.add_items([user("q2, asked differently")])
    assert (await session.get_items())[-1] == user("q2, asked differently")
    branches = {b["branch_id"]: b for b in await session.list_branches()}
    assert set(branches) == {"main", "retry"} and branches["retry"]["is_current"]
    await session.switch_to_branch("main")
    assert (await session.get_items())[-1] == reply("a2")
    with pytest.raises(memstore.NotFoundError):
        await session.switch_to_branch("nope")
    with pytest.raises(memstore.ValidationError):
        await session.create_branch_from_turn(9)
    await session.clear_session()
    assert await session.list_branches() == []
    session.close()
