"""memstore for LangChain: a byte store, an LLM cache and a chat message history.

    from langchain_core.globals import set_llm_cache
    from memstore_langchain import MemstoreByteStore, MemstoreCache, MemstoreChatMessageHistory

    set_llm_cache(MemstoreCache("agent.db", ttl=24 * 3600))
    history = MemstoreChatMessageHistory("chat-1", "agent.db")
    docstore = MemstoreByteStore("agent.db", namespace="parents")

Install with ``pip install 'agent-memstore[langchain]'``. Everything lands in the
store's own file beside the rest of the agent's memory: bytes in the table
``memstore_kv`` (schema version 10), cached generations in a memstore cache,
chat messages in memstore's conversations (with their token usage), so
Datasette, the ``memstore`` command, search and retention all see them.

Each class takes a path (or ``":memory:"``) with ``Store``'s options, or an
open ``memstore.Store`` to share. Async methods run on an
``memstore.AsyncStore`` worker, so the event loop never waits on SQLite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from typing import Any

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.load import dumpd, load
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.outputs import Generation
from langchain_core.stores import BaseStore

import memstore

__all__ = ["MemstoreByteStore", "MemstoreCache", "MemstoreChatMessageHistory"]

#: Keys read per statement by ``yield_keys``: no lock is held between pages.
PAGE_SIZE = 500


# --------------------------------------------------------------------------
# MemstoreByteStore: BaseStore[str, bytes]
# --------------------------------------------------------------------------


class MemstoreByteStore(memstore.Adapter, BaseStore[str, bytes]):
    """LangChain's key-value store of bytes (``ByteStore``), in a memstore file.

    >>> docstore = MemstoreByteStore("agent.db", namespace="parents")
    >>> docstore.mset([("doc-1", b"..."), ("doc-2", b"...")])
    >>> docstore.mget(["doc-1", "missing", "doc-1"])     # [b"...", None, b"..."]
    >>> list(docstore.yield_keys(prefix="doc-"))

    Stores in different ``namespace`` s of one file do not see each other's
    keys. ``mset`` writes all its pairs in one transaction (the last value
    wins for a key given twice); ``yield_keys`` is a generator reading a
    page of keys at a time, in key order, holding nothing between pages.
    """

    layer = "key-value stores"

    def __init__(
        self,
        path: str | os.PathLike[str] | memstore.Store = ":memory:",
        *,
        namespace: str = "default",
        **options: Any,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise memstore.ValidationError(f"namespace must be a non-empty str, not {namespace!r}")
        self.namespace = namespace
        self.open_store(path, options)

    def __repr__(self) -> str:
        return f"<MemstoreByteStore {self.store.shown_path!r} {self.namespace!r}>"

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where there is none)."""
        wanted = _keys(keys)
        if not wanted:
            return []
        among, keys = self.in_list("key", sorted(set(wanted)))
        with self.store.transaction(immediate=False):
            found = dict(
                self.execute(
                    f"SELECT key, value FROM memstore_kv WHERE namespace = ? AND {among}",
                    (self.namespace, keys),
                )
            )
        return [found.get(key) for key in wanted]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Set values, in one transaction."""
        rows = []
        for pair in _listed(key_value_pairs, "mset's pairs"):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise memstore.ValidationError(f"mset takes (key, bytes) pairs, not {pair!r:.60}")
            key, value = pair
            _keys([key])
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise memstore.ValidationError(
                    f"a byte store keeps bytes, not {type(value).__name__} (under {key!r:.60})"
                )
            data = bytes(value)
            rows.append((self.namespace, key, data, len(data)))
        if not rows:
            return
        with self.store.transaction(exclusive=False):
            self.executemany(
                "INSERT INTO memstore_kv (namespace, key, value, size) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
                f"size = excluded.size, updated_at = {self.now_sql}",
                rows,
            )

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete keys; missing ones are fine."""
        wanted = _keys(keys)
        if not wanted:
            return
        among, keys = self.in_list("key", wanted)
        with self.store.transaction(exclusive=False):
            self.execute(
                f"DELETE FROM memstore_kv WHERE namespace = ? AND {among}", (self.namespace, keys)
            )

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys (starting with ``prefix``), in order, a page at a time."""
        if prefix is not None and not isinstance(prefix, str):
            raise memstore.ValidationError(f"prefix must be a str, not {prefix!r:.60}")
        after = None
        while True:
            page = self._key_page(prefix or "", after)
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = page[-1]

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """``mget`` without blocking the event loop."""
        result: list[bytes | None] = await self.run_async(self.mget, keys)
        return result

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """``mset`` without blocking the event loop."""
        await self.run_async(self.mset, key_value_pairs)

    async def amdelete(self, keys: Sequence[str]) -> None:
        """``mdelete`` without blocking the event loop."""
        await self.run_async(self.mdelete, keys)

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """``yield_keys`` as an async generator, a page at a time from the worker."""
        if prefix is not None and not isinstance(prefix, str):
            raise memstore.ValidationError(f"prefix must be a str, not {prefix!r:.60}")
        after = None
        while True:
            page: list[str] = await self.run_async(self._key_page, prefix or "", after)
            for key in page:
                yield key
            if len(page) < PAGE_SIZE:
                return
            after = page[-1]

    def _key_page(self, prefix: str, after: str | None) -> list[str]:
        """Up to PAGE_SIZE keys starting with ``prefix``, after ``after``: one index range.

        Text compares by its UTF-8 bytes, so the keys starting with a prefix
        are those from the prefix up to (not including) the prefix with its
        last character moved one code point on.
        """
        sql = "SELECT key FROM memstore_kv WHERE namespace = ? AND key >= ?"
        params: list[Any] = [self.namespace, prefix if after is None else max(prefix, after)]
        if after is not None:
            sql += " AND key > ?"
            params.append(after)
        if prefix and ord(prefix[-1]) < 0x10FFFF:
            sql += " AND key < ?"
            params.append(prefix[:-1] + chr(ord(prefix[-1]) + 1))
        sql += " ORDER BY key LIMIT ?"
        params.append(PAGE_SIZE)
        with self.store.transaction(immediate=False):
            return [key for (key,) in self.execute(sql, params)]


def _listed(values: Any, name: str) -> list[Any]:
    """A list or tuple argument as a list; anything else, a memstore error."""
    if not isinstance(values, (list, tuple)):
        raise memstore.ValidationError(f"{name} must be a list, not {type(values).__name__}")
    return list(values)


def _keys(keys: Any) -> list[str]:
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        raise memstore.ValidationError(f"keys must be a list of str, not {type(keys).__name__}")
    for key in keys:
        if not isinstance(key, str) or "\x00" in key:
            raise memstore.ValidationError(f"a key must be a str without NUL, not {key!r:.60}")
    return list(keys)


# --------------------------------------------------------------------------
# MemstoreCache: BaseCache for LLM generations
# --------------------------------------------------------------------------


class MemstoreCache(memstore.Adapter, BaseCache):
    """LangChain's LLM cache in a memstore cache: ``set_llm_cache(MemstoreCache("agent.db"))``.

    Entries are keyed by the prompt and the model's settings (``llm_string``),
    and hold the generations as LangChain serializes them, beside the prompt
    and settings themselves for browsing. ``ttl`` (seconds or a timedelta)
    makes entries expire; hits and misses are counted in the file (the
    explorer and ``memstore info`` show them). ``name`` picks the memstore
    cache, so several LLM caches can share a file.
    """

    layer = "caches"

    def __init__(
        self,
        path: str | os.PathLike[str] | memstore.Store = ":memory:",
        *,
        name: str = "langchain_llm",
        ttl: timedelta | float | None = None,
        **options: Any,
    ) -> None:
        with self.opening_store(path, options) as store:
            self.cache = store.cache(name, ttl=ttl)

    def __repr__(self) -> str:
        return f"<MemstoreCache {self.store.shown_path!r} {self.cache.name!r}>"

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations, or None on a miss (or an expired entry)."""
        entry = self.cache.get(_cache_key(prompt, llm_string))
        if entry is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LangChainBetaWarning)
            return [load(g, allowed_objects="core") for g in entry["generations"]]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Cache the generations for this prompt and model."""
        if not isinstance(prompt, str) or not isinstance(llm_string, str):
            raise memstore.ValidationError("prompt and llm_string must be str")
        for generation in _listed(return_val, "return_val"):
            if not isinstance(generation, Generation):
                raise memstore.ValidationError(
                    f"a cache keeps LangChain Generations, not {generation!r:.60}"
                )
        entry = {
            "prompt": prompt,
            "llm_string": llm_string,
            "generations": [dumpd(g) for g in return_val],
        }
        self.cache.set(_cache_key(prompt, llm_string), entry)

    def clear(self, **kwargs: Any) -> None:
        """Remove every entry of this cache."""
        if kwargs:
            raise memstore.ValidationError(f"clear() takes no options, not {sorted(kwargs)}")
        self.cache.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """``lookup`` without blocking the event loop."""
        result: RETURN_VAL_TYPE | None = await self.run_async(self.lookup, prompt, llm_string)
        return result

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """``update`` without blocking the event loop."""
        await self.run_async(self.update, prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        """``clear`` without blocking the event loop."""
        await self.run_async(lambda: self.clear(**kwargs))


def _cache_key(prompt: str, llm_string: str) -> str:
    """A fixed-size key for any prompt: the SHA-256 of prompt and settings together."""
    return hashlib.sha256(json.dumps([prompt, llm_string]).encode()).hexdigest()


# --------------------------------------------------------------------------
# MemstoreChatMessageHistory: BaseChatMessageHistory over a conversation thread
# --------------------------------------------------------------------------

# LangChain's message types as memstore's roles.
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class MemstoreChatMessageHistory(memstore.Adapter, BaseChatMessageHistory):
    """A LangChain chat history kept as a memstore conversation thread.

    >>> history = MemstoreChatMessageHistory("chat-1", "agent.db")
    >>> history.add_messages([HumanMessage("hi"), AIMessage("hello!")])
    >>> history.messages

    The thread ``session_id`` is created on first use. Each message is a
    message of the thread (role, content, name, tool calls, and the token
    usage and model of an ``AIMessage``), with LangChain's own form of it in
    the message's metadata so that it comes back exactly; messages others add
    to the thread through memstore come back as the message type of their
    role. ``clear()`` deletes the thread. Conversations' search, usage,
    branches and retention all apply.
    """

    layer = "conversations"

    def __init__(
        self,
        session_id: str,
        path: str | os.PathLike[str] | memstore.Store = ":memory:",
        **options: Any,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise memstore.ValidationError(
                f"session_id must be a non-empty str, not {session_id!r}"
            )
        self.session_id = session_id
        self.open_store(path, options)
        self.conversations = self.store.conversations()

    def __repr__(self) -> str:
        return f"<MemstoreChatMessageHistory {self.session_id!r} in {self.store.shown_path!r}>"

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The thread's messages, oldest first."""
        try:
            stored = self.conversations.messages(self.session_id)
        except memstore.NotFoundError:
            return []
        return [_to_langchain(m) for m in stored]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Add messages to the thread, all or none."""
        rows = [_from_langchain(m) for m in _listed(messages, "messages")]
        self.conversations.add_messages(self.session_id, rows, create=True)

    def clear(self) -> None:
        """Delete the thread and its messages."""
        with self.store.transaction(exclusive=False), contextlib.suppress(memstore.NotFoundError):
            self.conversations.delete_thread(self.session_id)

    async def aget_messages(self) -> list[BaseMessage]:
        """``messages`` without blocking the event loop."""
        result: list[BaseMessage] = await self.run_async(lambda: self.messages)
        return result

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """``add_messages`` without blocking the event loop."""
        await self.run_async(self.add_messages, list(messages))

    async def aclear(self) -> None:
        """``clear`` without blocking the event loop."""
        await self.run_async(self.clear)


def _from_langchain(message: Any) -> dict[str, Any]:
    """The memstore message (``add_messages``'s dict) for a LangChain message."""
    if not isinstance(message, BaseMessage):
        raise memstore.ValidationError(f"not a LangChain message: {message!r:.60}")
    role = _ROLES.get(message.type)
    if role is None and isinstance(message, ChatMessage) and message.role in memstore.ROLES:
        role = message.role
    if role is None:
        role = "assistant" if message.type in ("function", "AIMessageChunk") else "user"
    kwargs: dict[str, Any] = {
        "role": role,
        "content": message.content,
        "metadata": {"langchain": message_to_dict(message)},
    }
    if message.name is not None:
        kwargs["name"] = message.name
    if isinstance(message, AIMessage):
        if message.tool_calls:
            kwargs["tool_calls"] = message.tool_calls
        usage = dict(message.usage_metadata or {})
        model = (message.response_metadata or {}).get("model_name")
        kwargs["usage"] = {
            key: usage[key]
            for key in ("input_tokens", "output_tokens", "total_tokens")
            if key in usage
        }
        if isinstance(model, str):
            kwargs["usage"]["model"] = model
    return kwargs


def _to_langchain(message: memstore.Message) -> BaseMessage:
    stored = message.metadata.get("langchain")
    if isinstance(stored, dict):
        try:
            return messages_from_dict([stored])[0]
        except (KeyError, TypeError, ValueError):
            pass  # not ours after all: rebuilt from the role below
    content = message.content if message.content is not None else ""
    if message.role == "user":
        return HumanMessage(content=content, name=message.name)
    if message.role == "assistant":
        return AIMessage(content=content, name=message.name)
    if message.role == "system":
        return SystemMessage(content=content, name=message.name)
    return ChatMessage(role=message.role, content=content, name=message.name)
