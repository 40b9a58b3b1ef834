"""memstore as the OpenAI Agents SDK's session: ``MemstoreSession``.

    from agents import Agent, Runner
    from memstore_agents import MemstoreSession

    session = MemstoreSession("user-42", "agent.db")       # as agents.SQLiteSession
    result = await Runner.run(agent, "Book Lyon", session=session)
    await session.store_run_usage(result)                  # token usage of the turn

Install with ``pip install 'agent-memstore[agents]'``. A session is a memstore
conversation thread (its id is the session id): each item the SDK gives is
a message of the thread, with the item itself kept in the message's
metadata so that it comes back exactly, and its text in the message's
content so that memstore's full-text search finds it. Threads, branches,
usage, search, retention and the Datasette explorer all work on sessions.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.memory.session import SessionABC
from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

import memstore

__all__ = ["MemstoreSession", "SessionClosedError"]

# The SDK's own table names: other names have no meaning here (items are memstore messages).
_SDK_TABLES = ("agent_sessions", "agent_messages")


class SessionClosedError(memstore.MemstoreError, RuntimeError):
    """The session was closed: the SDK's contract makes this a RuntimeError."""


class MemstoreSession(memstore.Adapter, SessionABC):
    """The Agents SDK's ``Session`` in a memstore file, with ``SQLiteSession``'s signature.

    >>> session = MemstoreSession("user-42", "agent.db", session_settings={"limit": 50})
    >>> await session.add_items([{"role": "user", "content": "hi"}])
    >>> await session.get_items()            # the latest 50, oldest first

    ``db_path`` is a file, ``":memory:"`` (this session's alone, as in
    ``SQLiteSession``) or an open ``memstore.Store`` to share. Every session
    on the same file sees the same data. ``add_items`` writes all its items
    or none; ``pop_item`` removes the latest (None when empty); after
    ``close()`` every call raises ``SessionClosedError`` (a RuntimeError).

    What ``AdvancedSQLiteSession`` adds: ``store_run_usage(result)`` records
    a run's token usage on the turn's last assistant message,
    ``get_session_usage()`` sums it, ``get_turn_usage()`` gives it per turn,
    ``get_conversation_turns()`` lists the
    user turns, and ``create_branch_from_turn(n)`` starts a branch sharing
    the history before turn ``n`` (a memstore branch of the thread);
    ``switch_to_branch`` and ``list_branches`` move between them.
    """

    layer = "conversations"

    def __init__(
        self,
        session_id: str,
        db_path: str | Path | memstore.Store = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(session_id, str) or not session_id or "\x00" in session_id:
            raise memstore.ValidationError(
                f"session_id must be a non-empty str, not {session_id!r}"
            )
        if (sessions_table, messages_table) != _SDK_TABLES:
            raise memstore.ValidationError(
                "MemstoreSession keeps items in memstore's conversations, not in tables of "
                "your naming: leave sessions_table and messages_table as they are"
            )
        try:
            self.session_settings = (
                SessionSettings()
                if session_settings is None
                else coerce_session_settings(session_settings)
            )
        except (TypeError, ValueError) as err:
            raise memstore.ValidationError(f"invalid session_settings: {err}") from err
        self.session_id = session_id
        self.db_path = db_path
        self.open_store(
            db_path if isinstance(db_path, memstore.Store) else os.fspath(db_path), options
        )
        self.conversations = self.store.conversations()
        self._thread = session_id  # the branch items go to: the session's own thread at first
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemstoreSession {self.session_id!r} in {self.store.shown_path!r}>"

    def close(self) -> None:
        """Close the session (and its file, unless it was given an open Store)."""
        self._closed = True
        super().close()

    async def aclose(self) -> None:
        """Close from async code."""
        self._closed = True
        await super().aclose()

    # -- the SDK's Session protocol -------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The latest ``limit`` items (default: the settings' limit, else all), oldest first."""
        self._check_open()
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int)):
            raise memstore.ValidationError(f"limit must be a whole number, not {wanted!r}")
        if wanted == 0:
            return []
        result: list[Any] = await self.run_async(self._items, wanted)
        return result

    async def add_items(self, items: list[Any]) -> None:
        """Add items to the session, all or none."""
        self._check_open()
        rows = [_message_of(item) for item in _item_list(items)]
        if rows:
            await self.run_async(self._add, rows)

    async def pop_item(self) -> Any | None:
        """Remove and return the latest item; None when the session has none."""
        self._check_open()
        return await self.run_async(self._pop)

    async def clear_session(self) -> None:
        """Delete the session's items, its branches included."""
        self._check_open()
        await self.run_async(self._clear)

    # -- what AdvancedSQLiteSession adds ----------------------------------------

    @property
    def current_branch_id(self) -> str:
        """``"main"``, or the name of the branch items now go to."""
        return "main" if self._thread == self.session_id else self._thread.split(":", 1)[1]

    async def store_run_usage(self, result: Any) -> None:
        """Record a run's token usage (``result.context_wrapper.usage``) on its turn."""
        self._check_open()
        usage = getattr(getattr(result, "context_wrapper", None), "usage", None)
        if usage is None:
            raise memstore.ValidationError("store_run_usage takes a RunResult (with its usage)")
        counts = (int(usage.input_tokens), int(usage.output_tokens), int(usage.total_tokens))
        await self.run_async(self._record_usage, counts)

    async def get_session_usage(self) -> dict[str, int]:
        """Token usage recorded for the session, its branches included."""
        self._check_open()
        result: dict[str, int] = await self.run_async(self._usage)
        return result

    async def get_turn_usage(self, turn_number: int | None = None) -> Any:
        """Token usage per user turn of the current branch (a list), or of one turn (a dict):
        each turn's messages from its user message up to the next one."""
        self._check_open()
        if turn_number is not None and (
            isinstance(turn_number, bool) or not isinstance(turn_number, int) or turn_number < 1
        ):
            raise memstore.ValidationError(f"turn_number must be 1 or more, not {turn_number!r}")
        turns: list[dict[str, Any]] = await self.run_async(self._turn_usage)
        if turn_number is None:
            return turns
        if turn_number > len(turns):
            raise memstore.ValidationError(f"turn {turn_number} does not exist")
        return turns[turn_number - 1]

    async def get_conversation_turns(self) -> list[dict[str, Any]]:
        """The user turns of the current branch: turn number, position and text."""
        self._check_open()
        result: list[dict[str, Any]] = await self.run_async(self._turns)
        return result

    async def create_branch_from_turn(
        self, turn_number: int, branch_name: str | None = None
    ) -> str:
        """Start a branch sharing the history before user turn ``turn_number``; switch to it."""
        self._check_open()
        if isinstance(turn_number, bool) or not isinstance(turn_number, int) or turn_number < 1:
            raise memstore.ValidationError(f"turn_number must be 1 or more, not {turn_number!r}")
        name = branch_name or f"branch_{time.time_ns()}"
        if not isinstance(name, str) or name == "main" or ":" in name:
            raise memstore.ValidationError(f"invalid branch name {name!r}")
        self._thread = await self.run_async(self._branch, turn_number, name)
        return name

    async def switch_to_branch(self, branch_id: str) -> None:
        """Send items to another branch (``"main"``: the session's own thread)."""
        self._check_open()
        thread = self.session_id if branch_id == "main" else f"{self.session_id}:{branch_id}"
        await self.run_async(self.conversations.thread, thread)  # NotFoundError if none
        self._thread = thread

    async def list_branches(self) -> list[dict[str, Any]]:
        """The session's branches: id, message count, whether current, created_at."""
        self._check_open()
        result: list[dict[str, Any]] = await self.run_async(self._branches)
        return result

    # -- on the worker -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError(f"session {self.session_id!r} is closed")

    def _items(self, limit: int | None) -> list[Any]:
        if self._thread == self.session_id:
            own = self._own_items(limit)
            if own is not None:
                return own
        try:
            found = self.conversations.messages(
                self._thread, limit=None if limit is None or limit < 0 else limit
            )
        except memstore.NotFoundError:
            return []
        return [_item_of(m) for m in found]

    def _own_items(self, limit: int | None) -> list[Any] | None:
        """The latest items of the session's thread, in one statement that reads each
        item's JSON alone; None when that is not the whole answer: the thread is a branch
        (its history is not all its own), has no messages of its own (there may be none
        at all), or holds messages added by other means (built from their columns)."""
        rows = self.execute(
            "SELECT metadata FROM memstore_messages WHERE thread_id = ? "
            "AND (SELECT parent_id FROM memstore_threads WHERE id = ?) IS NULL "
            "ORDER BY position DESC LIMIT ?",
            (
                self.session_id,
                self.session_id,
                self.no_limit if limit is None or limit < 0 else limit,
            ),
        )
        # A message written here starts its metadata so (memstore writes compact JSON).
        if not rows or not all(m.startswith('{"item":{') for (m,) in rows):
            return None
        return [json.loads(metadata)["item"] for (metadata,) in reversed(rows)]

    def _add(self, rows: list[dict[str, Any]]) -> None:
        # The session's thread is made by its first items; a branch must exist already.
        self.conversations.add_messages(self._thread, rows, create=self._thread == self.session_id)

    def _pop(self) -> Any | None:
        try:
            message = self.conversations.pop_message(self._thread)
        except memstore.NotFoundError:
            return None
        return None if message is None else _item_of(message)

    def _clear(self) -> None:
        with self.store.transaction(exclusive=False), contextlib.suppress(memstore.NotFoundError):
            self.conversations.delete_thread(self.session_id, branches=True)
        self._thread = self.session_id

    def _record_usage(self, counts: tuple[int, int, int]) -> None:
        tokens_in, tokens_out, total = counts
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": total}
        try:
            self.conversations.add_usage(self._thread, usage)
        except memstore.NotFoundError as err:
            raise memstore.ValidationError(
                "the session has no assistant message to record on"
            ) from err

    def _family(self) -> list[str]:
        try:
            tree = self.conversations.tree(self.session_id)
        except memstore.NotFoundError:
            return []
        found, stack = [], [tree]
        while stack:
            node = stack.pop()
            found.append(node["id"])
            stack.extend(node["children"])
        return found

    def _usage(self) -> dict[str, int]:
        totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "messages": 0}
        for thread in self._family():
            usage = self.conversations.usage(thread)
            for key in totals:
                totals[key] += int(usage[key])
        totals["turns"] = len(self._turns_of(self.session_id))
        return totals

    def _turn_usage(self) -> list[dict[str, Any]]:
        try:
            found = self.conversations.messages(self._thread)
        except memstore.NotFoundError:
            return []
        turns: list[dict[str, Any]] = []
        for message in found:
            if message.role == "user":
                turns.append(
                    {
                        "turn": len(turns) + 1,
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "total_tokens": 0,
                    }
                )
            if turns:
                for key in ("input_tokens", "output_tokens", "total_tokens"):
                    turns[-1][key] += getattr(message, key)
        return turns

    def _turns(self) -> list[dict[str, Any]]:
        return self._turns_of(self._thread)

    def _turns_of(self, thread: str) -> list[dict[str, Any]]:
        try:
            found = self.conversations.messages(thread)
        except memstore.NotFoundError:
            return []
        users = [m for m in found if m.role == "user"]
        return [
            {"turn": n, "position": m.position, "content": m.content}
            for n, m in enumerate(users, 1)
        ]

    def _branch(self, turn_number: int, name: str) -> str:
        with self.store.transaction():
            turns = self._turns_of(self._thread)
            if turn_number > len(turns):
                raise memstore.ValidationError(
                    f"turn {turn_number} does not exist: the branch has {len(turns)} turns"
                )
            position = turns[turn_number - 1]["position"]
            return self.conversations.branch(
                self._thread, at=position - 1, branch_id=f"{self.session_id}:{name}"
            )

    def _branches(self) -> list[dict[str, Any]]:
        result = []
        for thread in self._family():
            info = self.conversations.thread(thread)
            result.append(
                {
                    "branch_id": "main" if thread == self.session_id else thread.split(":", 1)[1],
                    "message_count": info.message_count,
                    "is_current": thread == self._thread,
                    "created_at": info.created_at,
                }
            )
        return result


def _item_list(items: Any) -> list[Any]:
    if not isinstance(items, (list, tuple)):
        raise memstore.ValidationError(f"items must be a list, not {type(items).__name__}")
    return list(items)


def _message_of(item: Any) -> dict[str, Any]:
    """The memstore message (``add_messages``'s dict) for one SDK item."""
    if not isinstance(item, Mapping):
        raise memstore.ValidationError(f"a session item is a dict, not {type(item).__name__}")
    data = dict(item)
    role = data.get("role")
    kind = data.get("type")
    if role in ("user", "assistant", "system"):
        mapped = role
    elif role == "developer":
        mapped = "system"
    elif isinstance(kind, str) and kind.endswith("_output"):
        mapped = "tool"  # function_call_output and the like
    else:
        mapped = "assistant"  # function calls, reasoning and other model output
    # The item is encoded once, by add_messages, which refuses what is not JSON.
    message = {"role": mapped, "content": _text(data), "metadata": {"item": data}}
    name = data.get("name")
    if isinstance(name, str):
        message["name"] = name
    return message


def _text(item: dict[str, Any]) -> str | None:
    """What full-text search should find of an item."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        parts += [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
    for key in ("output", "arguments"):
        if isinstance(item.get(key), str):
            parts.append(item[key])
    summary = item.get("summary")
    if isinstance(summary, list):
        parts += [
            p["text"] for p in summary if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
    return "\n".join(parts) if parts else None


def _item_of(message: memstore.Message) -> Any:
    """The SDK item a message holds; for a message added by other means, one built from it."""
    item = message.metadata.get("item")
    if isinstance(item, dict):
        return item
    return _built_item(message.role, message.content, message.name)


def _built_item(role: str, content: Any, name: str | None) -> dict[str, Any]:
    """An item for a message memstore holds without one (added by other means)."""
    if role == "tool":
        return {"type": "function_call_output", "call_id": name or "", "output": content or ""}
    return {"role": role, "content": content or ""}
