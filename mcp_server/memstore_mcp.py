"""memstore's MCP server: agent memory for every Model Context Protocol client.

    memstore mcp --db agent.db                    # stdio, for a desktop or IDE client
    memstore mcp --db agent.db --http 127.0.0.1:8765   # one shared server over HTTP
    memstore mcp --db agent.db --profile reference     # the reference memory server's tools

Built on the official ``mcp`` Python SDK (the ``mcp`` extra). Every MCP client
starts a server process of its own, so several processes on one file is the
normal deployment: each write is one memstore transaction (``BEGIN
IMMEDIATE`` with a busy timeout), so no acknowledged write is ever lost and no
client sees "database is locked".

Two profiles:

- ``memstore`` (the default): remember / recall under a token budget / get /
  update with a version check / forget / history, a graph of facts, the event
  log, conversations and ``memory_info``.
- ``reference``: the nine tools of the reference "memory" server, with the
  same names, arguments and result shapes, on memstore's graph layer.

Every read and write is confined to one *scope* (``--scope``, or
``$MEMSTORE_MCP_SCOPE``, or the client's first root, or ``default``):
memories carry it, the graph is ``mcp:<scope>``, the event log is named after
it, and conversations are the threads whose ``agent_id`` it is. One scope
cannot read another's memories.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict
from urllib.parse import unquote, urlparse

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

import memstore

__all__ = [
    "CHARS_PER_TOKEN",
    "PROFILES",
    "build_server",
    "count_tokens",
    "export_reference",
    "import_reference",
]

PROFILES = ("memstore", "reference")

#: The token budget's approximation: a token is about four characters of English
#: (OpenAI's and Anthropic's rule of thumb), rounded up; tiktoken counts exactly
#: when it is installed.
CHARS_PER_TOKEN = 4

#: The collection holding the memories, and how often (seconds) a server looks for
#: writes by other processes to tell its subscribers about.
MEMORIES = "mcp_memories"
POLL_SECONDS = 0.25

#: recall ranks by memstore.recall_score: relevance, times a half-life of this
#: long since the memory last changed, times its importance.
RECALL_HALF_LIFE = 30 * 86400.0

#: Writes wait this long (seconds) for another process's write to finish.
BUSY_TIMEOUT = 30.0

_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
_DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------


def _tokenizer() -> Callable[[str], int]:
    try:
        import tiktoken
    except ImportError:
        return lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)
    encoding = tiktoken.get_encoding("cl100k_base")
    return lambda text: len(encoding.encode(text))


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as the budgets count them: tiktoken's cl100k_base when it is
    installed, else one token per CHARS_PER_TOKEN characters, rounded up."""
    return _COUNT(text)


_COUNT = _tokenizer()
TOKENIZER = "cl100k_base (tiktoken)" if _COUNT("ab") != 1 else f"{CHARS_PER_TOKEN} characters"


def _within(items: Sequence[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int, bool]:
    """As many items as fit in ``budget`` tokens (each counted as its JSON); the first is
    cut to fit if it alone is larger. Returns (items, tokens used, whether some were left)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for item in items:
        size = count_tokens(json.dumps(item, ensure_ascii=False))
        if used + size <= budget:
            kept.append(item)
            used += size
            continue
        if not kept and "text" in item:  # one memory larger than the budget: its start
            cut = dict(item, text="", cut=True)
            if isinstance(cut.get("why"), str):
                cut["why"] = _cut(cut["why"], 16)
            room = budget - count_tokens(json.dumps(cut, ensure_ascii=False))
            if room <= 0:  # not even the memory's key and kind fit
                return kept, used, True
            while room > 0:
                cut["text"] = _cut(item["text"], room)
                size = count_tokens(json.dumps(cut, ensure_ascii=False))
                if size <= budget:
                    break
                room -= size - budget  # JSON's escapes took more than the text alone
            else:
                cut["text"] = ""
            kept.append(cut)
            used += count_tokens(json.dumps(cut, ensure_ascii=False))
        return kept, used, True
    return kept, used, False


def _cut(text: str, tokens: int) -> str:
    """The start of ``text`` in at most ``tokens`` tokens, with an ellipsis."""
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle] + "…") <= tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…" if low else ""


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def content_hash(text: str) -> str:
    """The identity of a memory's content: case, and runs of white space, do not count."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


def _since(value: str | None) -> str | None:
    """``since`` as a timestamp: an ISO-8601 time, or a duration back from now (7d)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise memstore.QueryError(f"since is a time or a duration such as 7d, not {value!r:.60}")
    with contextlib.suppress(memstore.ValidationError):
        return _stamp(_now() - memstore.parse_duration(value, "since"))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise memstore.QueryError(
            f"since is an ISO-8601 time or a duration such as 7d, not {value!r:.60}"
        ) from err
    if moment.tzinfo is None:
        raise memstore.QueryError(f"since needs a time zone (Z or +00:00): {value!r:.60}")
    return _stamp(moment.astimezone(UTC))


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as err:
        raise memstore.QueryError("cursor is not one recall returned") from err
    if not isinstance(offset, int) or not 0 <= offset <= 10**9:
        raise memstore.QueryError("cursor is not one recall returned")
    return offset


def _one(name: str, *values: Any) -> Any:
    """The value of an argument given under one of its names (a model may guess either)."""
    given = [v for v in values if v is not None]
    if len(given) > 1:
        raise memstore.QueryError(f"give {name} once, not under two names")
    return given[0] if given else None


# --------------------------------------------------------------------------
# The state a server works on
# --------------------------------------------------------------------------


class Memory:
    """What a server process holds: its store, its scope, its collection and graph."""

    def __init__(
        self,
        store: memstore.Store,
        *,
        scope: str | None = None,
        read_only: bool = False,
        vectors: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.read_only = read_only
        self.explicit_scope = scope is not None or bool(os.environ.get("MEMSTORE_MCP_SCOPE"))
        self.scope = check_scope(scope or os.environ.get("MEMSTORE_MCP_SCOPE") or "default")
        self.memories = store.collection(
            MEMORIES,
            fields={"scope": str, "kind": str, "digest": str, "importance": float},
            fts=["text", "tags"],
            history=True,
            indexes=[("scope", "-created_at"), ("scope", "digest")],
            vectors=dict(vectors) if vectors else None,
            temporal=True,  # a memory can change over time: supersede, recall as_of
            hygiene=True,  # reads counted: recall ranks memories recalled often higher
        )
        self.memories.warn_unknown_fields = False  # filters name optional fields by design
        self.vectors = bool(vectors) and self.memories.embed is not None
        self.asked_roots = False

    # -- scope -----------------------------------------------------------------

    def use_roots(self, roots: Iterable[str]) -> None:
        """Take the scope from the client's first root (a directory's name), unless one was
        set by --scope or $MEMSTORE_MCP_SCOPE."""
        if self.explicit_scope:
            return
        for uri in roots:
            name = Path(unquote(urlparse(uri).path)).name
            cleaned = re.sub(r"[^A-Za-z0-9_.@-]", "-", name).strip("-")[:64]
            if cleaned and _SCOPE.match(cleaned):
                self.scope = cleaned
                return

    @property
    def graph(self) -> memstore.Graph:
        """The scope's graph; with embeddings, its entities are embedded too (their name,
        type and observations) and search_graph ranks by meaning as well."""
        vectors = None
        if self.vectors:
            assert self.memories.vectors is not None
            vectors = {k: v for k, v in self.memories.vectors.items() if k != "fields"}
            vectors["embed"] = self.memories.embed
        return self.store.graph(f"mcp:{self.scope}", vectors=vectors)

    def key(self, key: str) -> str:
        """The memstore key of a memory: its scope and its key."""
        if not isinstance(key, str) or not key or len(key) > 512:
            raise memstore.ValidationError(f"a key is a string of 1 to 512 characters: {key!r:.60}")
        return f"{self.scope}/{key}"

    def visible(self) -> dict[str, Any]:
        """The filter every read of memories has: this scope, and not forgotten."""
        return {"scope": self.scope, "forgotten_at": {"$exists": False}}

    def shown(self, internal_key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """A memory as tools return it."""
        return {
            "key": internal_key.split("/", 1)[1],
            "text": record.get("text", ""),
            "kind": record.get("kind"),
            "tags": record.get("tags", []),
            "importance": record.get("importance"),
            "version": record.get("version", 1),
        }

    def writable(self) -> None:
        if self.read_only:
            raise memstore.MemstoreError("this server is read-only (--read-only)")


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise memstore.ValidationError(
            f"a scope is 1 to 64 letters, digits and _.@-, starting with a letter or digit: "
            f"{scope!r:.60}"
        )
    return scope


_Register = Callable[[Callable[..., Any]], Callable[..., Any]]


def _registrar(server: MCPServer[Any], memory: Memory) -> Callable[..., _Register]:
    """The decorator both profiles register their tools with: annotations, structured
    output, memstore's errors as tool errors; on a read-only server, no tool that writes."""

    def tool(annotations: ToolAnnotations, *, write: bool = False) -> _Register:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            if write and memory.read_only:
                return function  # a read-only server lists no tool that writes
            return server.tool(annotations=annotations, structured_output=True)(
                _tool_errors(function)
            )

        return register

    return tool


def _tool_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """memstore's errors as tool errors (the message, never a traceback)."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def waiting(*args: Any, **kwargs: Any) -> Any:
            try:
                return await function(*args, **kwargs)
            except memstore.MemstoreError as err:
                raise ToolError(f"{type(err).__name__}: {err}") from err

        return waiting

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except memstore.MemstoreError as err:
            raise ToolError(f"{type(err).__name__}: {err}") from err

    return wrapper


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def build_server(
    store: memstore.Store,
    *,
    profile: str = "memstore",
    scope: str | None = None,
    read_only: bool = False,
    vectors: Mapping[str, Any] | None = None,
) -> MCPServer[Any]:
    """An MCP server on ``store``: the ``memstore`` profile's tools or the reference
    server's (``profile="reference"``), confined to ``scope``.

    ``vectors`` is a collection's vectors declaration with an ``embed`` function
    (``{"dim": 384, "model": "...", "embed": fn}``): with it, recall can rank
    by meaning (mode vector or hybrid) and remember reports similar memories.
    """
    if profile not in PROFILES:
        raise memstore.ValidationError(f"profile is one of {', '.join(PROFILES)}, not {profile!r}")
    memory = Memory(store, scope=scope, read_only=read_only, vectors=vectors)
    bus = InMemorySubscriptionBus()

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[Memory]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watch, memory, bus)
            try:
                yield memory
            finally:
                tasks.cancel_scope.cancel()

    server: MCPServer[Any] = MCPServer(
        "memstore",
        instructions=_INSTRUCTIONS[profile],
        version=memstore.__version__,
        lifespan=lifespan,
        subscriptions=bus,
    )
    if profile == "memstore":
        _memstore_tools(server, memory)
    else:
        _reference_tools(server, memory)
    _resources(server, memory)
    server.memory = memory  # type: ignore[attr-defined]  # for tests and embedding apps
    return server


_INSTRUCTIONS = {
    "memstore": (
        "Long-term memory in a SQLite file. remember() what is worth keeping; recall() "
        "before answering (it returns what fits in token_budget, best first, and a "
        "next_cursor for more); update() with if_version so two agents never overwrite "
        "each other; forget() what is wrong. add_facts() keeps entities and relations."
    ),
    "reference": (
        "A knowledge graph memory (entities, relations, observations), compatible with the "
        "reference memory server, kept in a SQLite file by memstore."
    ),
}


async def _watch(memory: Memory, bus: InMemorySubscriptionBus) -> None:
    """Tell subscribers about changes, whichever process made them: every POLL_SECONDS,
    the memories written or deleted since the last look, and the graph if it changed."""
    seen = await anyio.to_thread.run_sync(_watermark, memory)
    while True:
        await anyio.sleep(POLL_SECONDS)
        try:
            uris, seen = await anyio.to_thread.run_sync(_changes, memory, seen)
        except memstore.MemstoreError:
            continue  # a busy or closed store: look again later
        for uri in uris:
            await bus.publish(ResourceUpdated(uri=uri))


def _watermark(memory: Memory) -> tuple[str, str, tuple[Any, ...]]:
    conn = memory.store.connection
    with memory.store.transaction(immediate=False):  # the store's turn, and one snapshot
        newest = conn.execute(f"SELECT coalesce(max(updated_at), '') FROM {MEMORIES}").fetchall()
        deleted = conn.execute(
            "SELECT coalesce(max(archived_at), '') FROM memstore_versions WHERE collection = ?",
            (MEMORIES,),
        ).fetchall()
        return str(newest[0][0]), str(deleted[0][0]), _graph_state(memory)


def _graph_state(memory: Memory) -> tuple[Any, ...]:
    name = f"mcp:{memory.scope}"
    return tuple(
        memory.store.connection.execute(
            "SELECT (SELECT count(*) FROM memstore_nodes WHERE graph = ?), "
            "(SELECT max(updated_at) FROM memstore_nodes WHERE graph = ?), "
            "(SELECT count(*) FROM memstore_edges WHERE graph = ?), "
            "(SELECT max(updated_at) FROM memstore_edges WHERE graph = ?)",
            (name, name, name, name),
        ).fetchall()[0]
    )


def _changes(
    memory: Memory, seen: tuple[str, str, tuple[Any, ...]]
) -> tuple[list[str], tuple[str, str, tuple[Any, ...]]]:
    newest, deleted, graph = seen
    conn = memory.store.connection
    prefix = f"{memory.scope}/"
    uris = []
    with memory.store.transaction(immediate=False):  # one snapshot
        for subject, updated in conn.execute(  # a superseded memory's row: its subject's
            f"SELECT coalesce(fact_of, key), updated_at FROM {MEMORIES} WHERE updated_at > ? "
            "ORDER BY updated_at",
            (newest,),
        ).fetchall():
            newest, subject = max(newest, str(updated)), str(subject)
            if subject.startswith(prefix):
                uris.append(f"memstore://memories/{subject[len(prefix) :]}")
        for subject, archived in conn.execute(
            "SELECT coalesce(fact_of, key), archived_at FROM memstore_versions "
            "WHERE collection = ? AND archived_at > ? ORDER BY archived_at",
            (MEMORIES, deleted),
        ).fetchall():
            deleted, subject = max(deleted, str(archived)), str(subject)
            if subject.startswith(prefix):
                uris.append(f"memstore://memories/{subject[len(prefix) :]}")
        now = _graph_state(memory)
    if now != graph:
        uris.append("memstore://graph")
    return list(dict.fromkeys(uris)), (newest, deleted, now)


# --------------------------------------------------------------------------
# The memstore profile
# --------------------------------------------------------------------------

Text = Annotated[str, Field(description="What to remember: one fact, preference or note.")]
Query = Annotated[str | None, Field(description="What to look for, in plain words (alias: q).")]
Budget = Annotated[
    int,
    Field(
        ge=100,
        le=100_000,
        description=f"Most tokens the answer may take ({TOKENIZER} a token).",
    ),
]


def _memstore_tools(server: MCPServer[Any], memory: Memory) -> None:
    tool = _registrar(server, memory)

    @tool(_WRITE, write=True)
    async def remember(
        ctx: Context,
        text: Annotated[str | None, Field(description="What to remember (alias: content).")] = None,
        content: Annotated[str | None, Field(description="Another name for text.")] = None,
        kind: Annotated[str, Field(description="note, preference, fact, decision, ...")] = "note",
        tags: Annotated[list[str] | None, Field(description="Labels to filter by.")] = None,
        importance: Annotated[float, Field(ge=0, le=1, description="0 to 1.")] = 0.5,
        ttl: Annotated[
            str | None, Field(description="Forget after this long: 90s, 15m, 12h, 7d, 2w.")
        ] = None,
        key: Annotated[str | None, Field(description="Your own key; a new one if absent.")] = None,
    ) -> dict[str, Any]:
        """Store a memory in this scope. If the same content is stored already, nothing new is
        written and duplicate_of names it. Returns the key (and similar memories, with vectors)."""
        await _roots(ctx, memory)
        said = _one("text", text, content)
        return await anyio.to_thread.run_sync(
            lambda: _remember(memory, said, kind, tags, importance, ttl, key)
        )

    @tool(_READ)
    async def recall(
        ctx: Context,
        query: Query = None,
        q: Annotated[str | None, Field(description="Another name for query.")] = None,
        kinds: Annotated[list[str] | None, Field(description="Only these kinds.")] = None,
        tags: Annotated[
            list[str] | None, Field(description="Only memories with all of these.")
        ] = None,
        since: Annotated[
            str | None, Field(description="Only newer: an ISO-8601 time, or a duration (7d).")
        ] = None,
        mode: Annotated[
            Literal["auto", "text", "vector", "hybrid"],
            Field(description="auto: hybrid with vectors, else text."),
        ] = "auto",
        limit: Annotated[int, Field(ge=1, le=200, description="Most memories to consider.")] = 20,
        token_budget: Budget = 2000,
        cursor: Annotated[str | None, Field(description="next_cursor of a previous call.")] = None,
        as_of: Annotated[
            str | None,
            Field(description="What held at this time (ISO-8601), not now: before a supersede."),
        ] = None,
    ) -> dict[str, Any]:
        """Find memories of this scope, best first, as many as fit in token_budget. Each has its
        score (higher is better) and why it matched; next_cursor continues where it stopped."""
        await _roots(ctx, memory)
        return await anyio.to_thread.run_sync(
            lambda: _recall(
                memory,
                _one("query", query, q),
                kinds,
                tags,
                since,
                mode,
                limit,
                token_budget,
                cursor,
                as_of,
            )
        )

    @tool(_READ)
    def get(
        key: Annotated[str | None, Field(description="The memory's key (alias: id).")] = None,
        id: Annotated[str | None, Field(description="Another name for key.")] = None,
        as_of: Annotated[
            str | None, Field(description="As it held at this time (ISO-8601), not now.")
        ] = None,
    ) -> dict[str, Any]:
        """One memory by its key, with its version (for update's if_version)."""
        wanted = _one("key", key, id)
        internal = memory.key(wanted)
        record = memory.memories.get(internal, None, as_of=as_of)
        if record is None or record.get("scope") != memory.scope or "forgotten_at" in record:
            raise memstore.NotFoundError(f"no memory {wanted!r}")
        found = [memory.shown(internal, record)]
        _add_times(memory, found)
        return found[0]

    @tool(_WRITE, write=True)
    def update(
        key: Annotated[str, Field(description="The memory's key.")],
        text: Annotated[str | None, Field(description="The new text.")] = None,
        patch: Annotated[
            dict[str, Any] | None,
            Field(description="Fields to change: kind, tags, importance (and text)."),
        ] = None,
        if_version: Annotated[
            int | None, Field(description="Refuse unless the memory is still at this version.")
        ] = None,
    ) -> dict[str, Any]:
        """Change a memory. With if_version, refused when another agent changed it since you read
        it (get it again, then decide): no lost update."""
        return _update(memory, key, text, patch, if_version)

    @tool(_WRITE, write=True)
    def supersede(
        key: Annotated[str, Field(description="The memory that changed.")],
        text: Annotated[str, Field(description="What holds from now (or from at) on.")],
        at: Annotated[
            str | None, Field(description="When it changed (ISO-8601); now by default.")
        ] = None,
    ) -> dict[str, Any]:
        """Record that a memory changed in the world: the old text stays true until `at` (recall
        with as_of before it finds it), the new one holds from then. Unlike update, which
        corrects a memory that was wrong."""
        memory.writable()
        internal = memory.key(key)
        with memory.store.transaction():
            record = memory.memories.get(internal, None)
            if record is None or record.get("scope") != memory.scope or "forgotten_at" in record:
                raise memstore.NotFoundError(f"no memory {key!r}")
            new = {**record, "text": text, "digest": content_hash(text)}
            new["version"] = record.get("version", 1) + 1
            memory.memories.supersede(internal, new, at=at)
        return memory.shown(internal, new)

    @tool(_DESTRUCTIVE, write=True)
    def forget(
        keys: Annotated[list[str] | None, Field(description="The memories' keys.")] = None,
        key: Annotated[str | None, Field(description="One key (instead of keys).")] = None,
        where: Annotated[
            dict[str, Any] | None,
            Field(description='A filter, as {"kind": "note"} or {"tags": {"$contains": "x"}}.'),
        ] = None,
        hard: Annotated[
            bool, Field(description="Delete for good; by default hidden, kept for audit.")
        ] = False,
    ) -> dict[str, Any]:
        """Forget memories by key or by filter. By default they are hidden from every read and
        kept for audit (history); hard=true deletes them."""
        return _forget(memory, keys, key, where, hard)

    @tool(_READ)
    def history(key: Annotated[str, Field(description="The memory's key.")]) -> dict[str, Any]:
        """Every version of a memory, oldest first, with when each was replaced and how."""
        internal = memory.key(key)
        versions = memory.memories.history(internal)
        if not versions or versions[-1].record.get("scope", memory.scope) != memory.scope:
            raise memstore.NotFoundError(f"no memory {key!r}")
        return {
            "key": key,
            "versions": [
                {
                    "version": v.version,
                    "text": v.record.get("text"),
                    "from": v.valid_from,
                    "until": v.archived_at,
                    "change": v.operation,
                    "forgotten": "forgotten_at" in v.record,
                }
                for v in versions
            ],
        }

    @tool(_IDEMPOTENT, write=True)
    def add_facts(
        entities: Annotated[
            list[dict[str, Any]] | None,
            Field(description='[{"name": "Ada", "type": "person", "observations": ["..."]}]'),
        ] = None,
        relations: Annotated[
            list[dict[str, Any]] | None,
            Field(description='[{"from": "Ada", "to": "Engine", "type": "designed"}]'),
        ] = None,
    ) -> dict[str, Any]:
        """Add entities (with observations) and relations to the graph, all in one transaction:
        all or nothing. Observations add to an entity's; a relation's ends must exist."""
        return _add_facts(memory, entities or [], relations or [])

    @tool(_READ)
    def search_graph(
        query: Query = None,
        q: Annotated[str | None, Field(description="Another name for query.")] = None,
        types: Annotated[
            list[str] | None, Field(description="Only entities of these types.")
        ] = None,
        token_budget: Budget = 2000,
    ) -> dict[str, Any]:
        """Entities whose name, type or observations hold the query's words, best first, with
        the relations among them, within token_budget."""
        return _search_graph(memory, _one("query", query, q), types, token_budget)

    @tool(_READ)
    def open_nodes(
        names: Annotated[list[str], Field(description="Entity names.")],
        depth: Annotated[
            int, Field(ge=0, le=3, description="Also entities this many hops away.")
        ] = 0,
        token_budget: Budget = 4000,
    ) -> dict[str, Any]:
        """These entities (and those within depth hops) and the relations among them."""
        return _open_nodes(memory, names, depth, token_budget)

    @tool(_DESTRUCTIVE, write=True)
    def delete_facts(
        entities: Annotated[list[str] | None, Field(description="Entity names to delete.")] = None,
        relations: Annotated[
            list[dict[str, Any]] | None, Field(description='[{"from", "to", "type"}]')
        ] = None,
        observations: Annotated[
            list[dict[str, Any]] | None,
            Field(description='[{"entity": "Ada", "observations": ["..."]}]'),
        ] = None,
    ) -> dict[str, Any]:
        """Delete entities (with their relations), relations, or some observations."""
        return _delete_facts(memory, entities or [], relations or [], observations or [])

    @tool(_READ)
    def search_conversations(
        query: Query = None,
        q: Annotated[str | None, Field(description="Another name for query.")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        token_budget: Budget = 2000,
    ) -> dict[str, Any]:
        """Messages of this scope's conversations (threads whose agent_id is the scope)."""
        return _search_conversations(memory, _one("query", query, q), limit, token_budget)

    @tool(_WRITE, write=True)
    def log_event(
        kind: Annotated[str, Field(description="What happened: tool_call, error, decision, ...")],
        payload: Annotated[dict[str, Any] | None, Field(description="Any details.")] = None,
        id: Annotated[
            str | None, Field(description="An id; the same id and content again is a no-op.")
        ] = None,
    ) -> dict[str, Any]:
        """Append an event to this scope's event log; returns its sequence number."""
        event: dict[str, Any] = {"kind": kind, "payload": payload or {}}
        if id is not None:
            event["id"] = id
        return {"seq": memory.store.event_log(memory.scope).append(event)}

    @tool(_READ)
    def recent_activity(
        timeframe: Annotated[str, Field(description="How far back: 1h, 1d, 7d.")] = "1d",
        token_budget: Budget = 2000,
    ) -> dict[str, Any]:
        """What changed in this scope lately: memories written, events logged, graph changes."""
        return _recent_activity(memory, timeframe, token_budget)

    @tool(_READ)
    def memory_info() -> dict[str, Any]:
        """What this server holds: its scope, counts, the file and its settings."""
        return _info(memory)


async def _roots(ctx: Context, memory: Memory) -> None:
    """The scope from the client's roots, asked once, when no scope was given."""
    if memory.explicit_scope or memory.asked_roots:
        return
    memory.asked_roots = True
    with contextlib.suppress(Exception):  # a client without roots: the default scope
        with anyio.fail_after(5), warnings.catch_warnings():
            # Roots are deprecated from protocol 2026-07-28 on; older clients still send them.
            warnings.simplefilter("ignore")
            result = await ctx.request_context.session.list_roots()
        memory.use_roots(str(root.uri) for root in result.roots)


def _remember(
    memory: Memory,
    text: str | None,
    kind: str,
    tags: list[str] | None,
    importance: float,
    ttl: str | None,
    key: str | None,
) -> dict[str, Any]:
    memory.writable()
    if not isinstance(text, str) or not text.strip():
        raise memstore.ValidationError("text is what to remember: a non-empty string")
    digest = content_hash(text)
    record = {
        "text": text,
        "kind": kind,
        "tags": list(tags or []),
        "importance": float(importance),
        "scope": memory.scope,
        "digest": digest,
        "version": 1,
    }
    with memory.store.transaction():
        same = memory.memories.keys(
            where={**memory.visible(), "digest": digest}, order_by="created_at", limit=1
        )
        if same:
            found = same[0].split("/", 1)[1]
            return {"key": found, "stored": False, "duplicate_of": found}
        internal = memory.key(key) if key is not None else memory.key(memstore.new_key())
        if key is not None and memory.memories.get(internal, None) is not None:
            raise memstore.ConflictError(f"a memory {key!r} exists: update it, or forget it first")
        memory.memories.put(internal, record, ttl=ttl)
    answer: dict[str, Any] = {"key": internal.split("/", 1)[1], "stored": True}
    if memory.vectors:
        near = memory.memories.nearest(text, k=4, where=memory.visible())
        answer["similar"] = [
            {**memory.shown(hit.key, hit.record), "score": float(f"{hit.score:.6g}")}
            for hit in near
            if hit.key != internal
        ][:3]
    return answer


def _recall(
    memory: Memory,
    query: str | None,
    kinds: list[str] | None,
    tags: list[str] | None,
    since: str | None,
    mode: str,
    limit: int,
    budget: int,
    cursor: str | None,
    as_of: str | None = None,
) -> dict[str, Any]:
    where: dict[str, Any] = memory.visible()
    if kinds:
        where["kind"] = {"$in": list(kinds)}
    if tags:
        where["$and"] = [{"tags": {"$contains": tag}} for tag in tags]
    after = _since(since)
    if after is not None:
        where["created_at"] = {"$gte": after}
    offset = _offset(cursor)
    if mode in ("vector", "hybrid") and not memory.vectors:
        raise memstore.QueryError(
            f"mode {mode!r} needs embeddings, and this server has none: use mode text or auto"
        )
    way = ("hybrid" if memory.vectors else "text") if mode == "auto" else mode
    found: list[dict[str, Any]] = []
    collection = memory.memories
    if not query or not query.strip():  # no query: the newest
        rows = collection.rows(
            where, order_by="-created_at", limit=limit, offset=offset, as_of=as_of
        )
        for row in rows:
            found.append({**memory.shown(row.key, row.record), "why": "newest first"})
    elif way == "text":
        words = memstore.fts_words(query)
        hits = (
            collection.search(words, where=where, limit=limit, offset=offset, as_of=as_of)
            if words
            else []
        )
        for hit in hits:
            item = memory.shown(hit.key, hit.record)
            item.update(relevance=hit.score, why=f"words: {hit.snippet}")
            found.append(item)
    elif way == "vector":
        near = collection.nearest(query, k=offset + limit, where=where, as_of=as_of)[offset:]
        for neighbor in near:
            item = memory.shown(neighbor.key, neighbor.record)
            item.update(relevance=neighbor.score, why="meaning: cosine similarity")
            found.append(item)
    else:
        fused = collection.hybrid(query, k=offset + limit, where=where, as_of=as_of)[offset:]
        for fusion in fused:
            item = memory.shown(fusion.key, fusion.record)
            parts = {k: v for k, v in fusion.scores.items() if v is not None and k != "score"}
            item.update(relevance=fusion.scores["rrf"], why=parts)
            found.append(item)
    _add_times(memory, found)
    if query and query.strip():  # ranked by the recall score: relevance, age, importance, use
        now = _now()
        reads = collection.accesses(memory.key(item["key"]) for item in found)
        for item in found:
            stamp = str(item.get("updated_at") or _stamp(now))
            changed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            score = memstore.recall_score(
                item.pop("relevance"),
                age_seconds=(now - changed).total_seconds(),
                half_life_seconds=RECALL_HALF_LIFE,
                importance=item.get("importance"),
                access_count=reads.get(memory.key(item["key"]), (0, None))[0],
            )
            item["score"] = float(f"{score:.6g}")
        found.sort(key=lambda item: -item["score"])
    kept, used, more = _within(found, budget)
    more = more or len(found) == limit
    if query and query.strip():  # a recall is a read of each memory it returns
        collection.count_reads(memory.key(item["key"]) for item in kept)
    return {
        "memories": kept,
        "truncated": more,
        "next_cursor": _cursor(offset + len(kept)) if more and kept else None,
        "tokens": used,
        "token_budget": budget,
        "tokens_counted_as": TOKENIZER,
        "scope": memory.scope,
    }


def _add_times(memory: Memory, found: list[dict[str, Any]]) -> None:
    """When each memory was stored and last changed (one query for all of them)."""
    if not found:
        return
    keys = [memory.key(item["key"]) for item in found]
    times = {
        row.key: (row.created_at, row.updated_at)
        for row in memory.memories.rows({"key": {"$in": keys}})
    }
    for item, key in zip(found, keys, strict=True):
        if key in times:
            item["created_at"], item["updated_at"] = times[key]


_PATCHABLE = {"text", "kind", "tags", "importance"}


def _update(
    memory: Memory,
    key: str,
    text: str | None,
    patch: Mapping[str, Any] | None,
    if_version: int | None,
) -> dict[str, Any]:
    memory.writable()
    changes = dict(patch or {})
    if text is not None:
        changes["text"] = text
    unknown = set(changes) - _PATCHABLE
    if unknown:
        raise memstore.ValidationError(
            f"update changes {', '.join(sorted(_PATCHABLE))}, not {', '.join(sorted(unknown))}"
        )
    if not changes:
        raise memstore.ValidationError("give text or a patch")
    if "text" in changes and (not isinstance(changes["text"], str) or not changes["text"].strip()):
        raise memstore.ValidationError("text must be a non-empty string")
    internal = memory.key(key)
    with memory.store.transaction():  # the version check and the write: one transaction
        record = memory.memories.get(internal, None)
        if record is None or record.get("scope") != memory.scope or "forgotten_at" in record:
            raise memstore.NotFoundError(f"no memory {key!r}")
        version = record.get("version", 1)
        if if_version is not None and if_version != version:
            raise memstore.ConflictError(
                f"memory {key!r} is at version {version}, not {if_version}: another agent "
                "changed it; get it again, then decide"
            )
        record.update(changes)
        if "text" in changes:
            record["digest"] = content_hash(record["text"])
        record["version"] = version + 1
        memory.memories.put(internal, record)
    return memory.shown(internal, record)


def _forget(
    memory: Memory,
    keys: list[str] | None,
    key: str | None,
    where: Mapping[str, Any] | None,
    hard: bool,
) -> dict[str, Any]:
    memory.writable()
    wanted = list(keys or []) + ([key] if key is not None else [])
    if bool(wanted) == (where is not None):
        raise memstore.ValidationError("give keys (or key), or where, but not both")
    with memory.store.transaction():
        if where is not None:
            matched = memory.memories.keys(where={"$and": [memory.visible(), dict(where)]})
        else:
            internal = [memory.key(k) for k in wanted]
            matched = memory.memories.keys(where={**memory.visible(), "key": {"$in": internal}})
        for internal_key in matched:
            if hard:
                memory.memories.delete(internal_key)
            else:
                record = memory.memories.get(internal_key)
                record["forgotten_at"] = _stamp(_now())
                record["version"] = record.get("version", 1) + 1
                memory.memories.put(internal_key, record)
    return {
        "forgotten": [k.split("/", 1)[1] for k in matched],
        "hard": hard,
        "missing": sorted(set(wanted) - {k.split("/", 1)[1] for k in matched}),
    }


# -- the graph, shared by both profiles ----------------------------------------


def _entity(node: memstore.Node) -> dict[str, Any]:
    return {
        "name": node.id,
        "entityType": node.kind,
        "observations": list(node.props.get("observations", [])),
    }


def _relation(edge: memstore.Edge) -> dict[str, Any]:
    return {"from": edge.source, "to": edge.target, "relationType": edge.relation}


def _all_entities(memory: Memory) -> list[memstore.Node]:
    return [n for n in memory.graph.nodes() if not n.props.get("placeholder")]


def _relations_among(memory: Memory, names: set[str]) -> list[dict[str, Any]]:
    found = [_relation(e) for e in memory.graph.edges() if e.source in names and e.target in names]
    for name in names:  # relations of an entity to itself (memstore's edges join two nodes)
        with contextlib.suppress(memstore.NotFoundError):
            for relation in memory.graph.node(name).props.get("self_relations", []):
                found.append({"from": name, "to": name, "relationType": relation})
    return found


def _add_observations(memory: Memory, name: str, observations: Iterable[str]) -> list[str]:
    node = memory.graph.node(name)
    have = list(node.props.get("observations", []))
    added = [o for o in dict.fromkeys(observations) if o not in have]
    if added:
        memory.graph.add_node(name, node.kind, {**node.props, "observations": have + added})
    return added


def _create_entity(memory: Memory, name: str, kind: str, observations: Iterable[str]) -> bool:
    """Create an entity unless it exists (then its observations are added); whether new."""
    try:
        node = memory.graph.node(name)
    except memstore.NotFoundError:
        memory.graph.add_node(name, kind, {"observations": list(dict.fromkeys(observations))})
        return True
    if node.props.get("placeholder"):
        props = {k: v for k, v in node.props.items() if k != "placeholder"}
        memory.graph.add_node(name, kind, {**props, "observations": list(observations)})
        return True
    _add_observations(memory, name, observations)
    return False


def _create_relation(memory: Memory, source: str, target: str, relation: str) -> bool:
    """Add a relation unless it exists; whether it is new. A relation to oneself is kept
    in the entity (memstore's edges join two nodes)."""
    if source == target:
        node = memory.graph.node(source)
        selves = list(node.props.get("self_relations", []))
        if relation in selves:
            return False
        memory.graph.add_node(
            source, node.kind, {**node.props, "self_relations": [*selves, relation]}
        )
        return True
    if memory.graph.edges(source=source, target=target, relation=relation):
        return False
    memory.graph.add_edge(source, target, relation)
    return True


def _checked_names(values: Any, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise memstore.ValidationError(f"{what} must be a list of non-empty strings")
    return values


def _add_facts(
    memory: Memory, entities: list[dict[str, Any]], relations: list[dict[str, Any]]
) -> dict[str, Any]:
    memory.writable()
    created, linked = [], []
    with memory.store.transaction():
        for entity in entities:
            if not isinstance(entity, dict):
                raise memstore.ValidationError(f"an entity is an object, not {entity!r:.60}")
            name = entity.get("name")
            kind = entity.get("type", entity.get("entityType", "thing"))
            observations = _checked_names(entity.get("observations", []), "observations")
            if not isinstance(name, str) or not name or not isinstance(kind, str) or not kind:
                raise memstore.ValidationError(f"an entity needs a name and a type: {entity!r:.80}")
            if _create_entity(memory, name, kind, observations):
                created.append(name)
        for relation in relations:
            if not isinstance(relation, dict):
                raise memstore.ValidationError(f"a relation is an object, not {relation!r:.60}")
            source, target = relation.get("from"), relation.get("to")
            kind = relation.get("type", relation.get("relationType"))
            if not all(isinstance(v, str) and v for v in (source, target, kind)):
                raise memstore.ValidationError(
                    f"a relation needs from, to and type: {relation!r:.80}"
                )
            assert isinstance(source, str) and isinstance(target, str) and isinstance(kind, str)
            for end in (source, target):
                memory.graph.node(end)  # NotFoundError: add the entity first
            if _create_relation(memory, source, target, kind):
                linked.append({"from": source, "to": target, "type": kind})
    return {"created_entities": created, "created_relations": linked}


def _search_graph(
    memory: Memory, query: str | None, types: list[str] | None, budget: int
) -> dict[str, Any]:
    """Entities ranked by the graph's full-text index (BM25 over names, types and
    observations), and with embeddings by meaning too (the two ranks fused, as recall
    does), within the budget, with the relations among them."""
    if not isinstance(query, str) or not query.strip():
        raise memstore.QueryError("query is what to look for: a non-empty string")
    words, graph = memstore.fts_words(query), memory.graph
    hits = graph.search(words, limit=200, kinds=types) if words else []
    scores = {hit.key: hit.score for hit in hits if isinstance(hit.record, memstore.Node)}
    nodes = {hit.key: hit.record for hit in hits if isinstance(hit.record, memstore.Node)}
    if memory.vectors:  # the ranks by words and by meaning, fused: the score is the fusion's
        near = graph.nearest(query, k=200, kinds=types)
        nodes.update((n.key, n.record) for n in near)
        fused: dict[str, float] = {}
        for ranked in (list(scores), [n.key for n in near]):
            for rank, name in enumerate(ranked, 1):
                fused[name] = fused.get(name, 0.0) + 1 / (memstore.RRF_K + rank)
        scores = fused
    items = [
        {**_entity(nodes[name]), "score": float(f"{scores[name]:.6g}")}
        for name in sorted(scores, key=lambda name: -scores[name])
        if not nodes[name].props.get("placeholder")
    ]
    kept, used, more = _within(items, budget)
    names = {item["name"] for item in kept}
    return {
        "entities": kept,
        "relations": _relations_among(memory, names),
        "truncated": more,
        "tokens": used,
    }


def _open_nodes(memory: Memory, names: list[str], depth: int, budget: int) -> dict[str, Any]:
    _checked_names(names, "names")
    found: dict[str, memstore.Node] = {}
    for name in names:
        with contextlib.suppress(memstore.NotFoundError):
            found[name] = memory.graph.node(name)
            if depth:
                for near in memory.graph.neighbors(name, direction="both", depth=depth):
                    found.setdefault(near.id, near)
    kept, _, more = _within([_entity(n) for n in found.values()], budget)
    return {
        "entities": kept,
        "relations": _relations_among(memory, {e["name"] for e in kept}),
        "missing": [n for n in names if n not in found],
        "truncated": more,
    }


def _delete_facts(
    memory: Memory,
    entities: list[str],
    relations: list[dict[str, Any]],
    observations: list[dict[str, Any]],
) -> dict[str, Any]:
    memory.writable()
    done = {"entities": 0, "relations": 0, "observations": 0}
    with memory.store.transaction():
        for name in _checked_names(entities, "entities"):
            done["entities"] += memory.graph.delete_node(name)
        for relation in relations:
            if not isinstance(relation, dict):
                raise memstore.ValidationError(f"a relation is an object, not {relation!r:.60}")
            kind = relation.get("type", relation.get("relationType"))
            done["relations"] += _delete_relation(
                memory, relation.get("from"), relation.get("to"), kind
            )
        for entry in observations:
            if not isinstance(entry, dict):
                raise memstore.ValidationError(f"an entry is an object, not {entry!r:.60}")
            entity_name = entry.get("entity", entry.get("entityName"))
            gone = set(_checked_names(entry.get("observations", []), "observations"))
            with contextlib.suppress(memstore.NotFoundError):
                node = memory.graph.node(str(entity_name))
                have = node.props.get("observations", [])
                keep = [o for o in have if o not in gone]
                done["observations"] += len(have) - len(keep)
                memory.graph.add_node(node.id, node.kind, {**node.props, "observations": keep})
    return {"deleted": done}


def _delete_relation(memory: Memory, source: Any, target: Any, kind: Any) -> int:
    if not all(isinstance(v, str) and v for v in (source, target, kind)):
        raise memstore.ValidationError("a relation needs from, to and type")
    if source == target:
        try:
            node = memory.graph.node(source)
        except memstore.NotFoundError:
            return 0
        selves = node.props.get("self_relations", [])
        if kind not in selves:
            return 0
        left = [r for r in selves if r != kind]
        memory.graph.add_node(source, node.kind, {**node.props, "self_relations": left})
        return 1
    return int(memory.graph.delete_edge(source, target, kind))


def _search_conversations(
    memory: Memory, query: str | None, limit: int, budget: int
) -> dict[str, Any]:
    conv = memory.store.conversations()
    if not isinstance(query, str) or not query.strip():
        raise memstore.QueryError("query is what to look for: a non-empty string")
    words = memstore.fts_words(query)
    threads = {t.id for t in conv.threads(agent_id=memory.scope, limit=10_000)}
    found = []
    for hit in conv.search(words, limit=limit * 5) if words and threads else []:
        message = hit.record
        if message.thread_id not in threads:
            continue
        found.append(
            {
                "thread": message.thread_id,
                "position": message.position,
                "role": message.role,
                "snippet": hit.snippet,
                "score": float(f"{hit.score:.6g}"),
            }
        )
        if len(found) == limit:
            break
    kept, used, more = _within(found, budget)
    return {"messages": kept, "truncated": more, "tokens": used}


def _recent_activity(memory: Memory, timeframe: str, budget: int) -> dict[str, Any]:
    after = _since(timeframe)
    written = [
        {**memory.shown(row.key, row.record), "at": row.updated_at}
        for row in memory.memories.rows(
            {**memory.visible(), "updated_at": {"$gte": after}}, order_by="-updated_at", limit=100
        )
    ]
    events = [
        {"seq": e.seq, "kind": e.kind, "at": e.at, "payload": e.payload}
        for e in memory.store.event_log(memory.scope).tail(100)
        if e.recorded_at >= str(after)
    ]
    nodes = [
        {"name": n.id, "type": n.kind, "at": n.updated_at}
        for n in _all_entities(memory)
        if n.updated_at >= str(after)
    ]
    memories, used, more = _within(written, budget // 2)
    kept_events, events_used, more_events = _within(events, max(50, (budget - used) // 2))
    entities, _, more_nodes = _within(nodes, max(50, budget - used - events_used))
    return {
        "since": after,
        "memories": memories,
        "events": kept_events,
        "entities": entities,
        "truncated": more or more_events or more_nodes,
    }


def _info(memory: Memory) -> dict[str, Any]:
    stats = memory.store.stats()
    return {
        "scope": memory.scope,
        "read_only": memory.read_only,
        "memories": memory.memories.count(memory.visible()),
        "forgotten": memory.memories.count(
            {"scope": memory.scope, "forgotten_at": {"$exists": True}}
        ),
        "entities": len(_all_entities(memory)),
        "relations": len(memory.graph.edges()),
        "events": memory.store.event_log(memory.scope).last_seq(),
        "vectors": memory.vectors,
        "tokens_counted_as": TOKENIZER,
        "file": stats["path"],
        "bytes": stats["bytes"],
        "schema_version": stats["schema_version"],
        "memstore_version": stats["memstore_version"],
    }


# --------------------------------------------------------------------------
# The reference profile: the reference memory server's nine tools
# --------------------------------------------------------------------------


class _Entities(TypedDict):
    entities: list[dict[str, Any]]


class _Relations(TypedDict):
    relations: list[dict[str, Any]]


class _Results(TypedDict):
    results: list[dict[str, Any]]


class _Done(TypedDict):
    success: bool
    message: str


class _Graph(TypedDict):
    entities: list[dict[str, Any]]
    relations: list[dict[str, Any]]


def _reply(value: Any, structured: Mapping[str, Any]) -> CallToolResult:
    """A result as the reference server words it: its JSON (2-space indents) or its sentence
    as the text, and the structured content beside it."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=dict(structured)
    )


def _done(message: str) -> CallToolResult:
    return _reply(message, {"success": True, "message": message})


def _reference_tools(server: MCPServer[Any], memory: Memory) -> None:
    tool = _registrar(server, memory)

    @tool(_WRITE, write=True)
    def create_entities(
        entities: Annotated[
            list[dict[str, Any]],
            Field(description="Entities: {name, entityType, observations: [strings]}."),
        ],
    ) -> Annotated[CallToolResult, _Entities]:
        """Create multiple new entities in the knowledge graph."""
        memory.writable()
        created = []
        with memory.store.transaction():
            for entity in entities:
                _reference_entity(entity)
                try:
                    node = memory.graph.node(entity["name"])
                    if not node.props.get("placeholder"):
                        continue
                except memstore.NotFoundError:
                    pass
                _create_entity(memory, entity["name"], entity["entityType"], entity["observations"])
                created.append(
                    {
                        "name": entity["name"],
                        "entityType": entity["entityType"],
                        "observations": list(entity["observations"]),
                    }
                )
        return _reply(created, {"entities": created})

    @tool(_WRITE, write=True)
    def create_relations(
        relations: Annotated[
            list[dict[str, Any]],
            Field(description="Relations {from, to, relationType}, in active voice."),
        ],
    ) -> Annotated[CallToolResult, _Relations]:
        """Create multiple new relations between entities in the knowledge graph. Relations
        should be in active voice."""
        memory.writable()
        created = []
        with memory.store.transaction():
            for relation in relations:
                source, target, kind = _reference_relation(relation)
                for end in (source, target):  # as the reference's file, which checks nothing
                    with contextlib.suppress(memstore.NotFoundError):
                        memory.graph.node(end)
                        continue
                    memory.graph.add_node(end, "unknown", {"placeholder": True})
                if _create_relation(memory, source, target, kind):
                    created.append({"from": source, "to": target, "relationType": kind})
        return _reply(created, {"relations": created})

    @tool(_WRITE, write=True)
    def add_observations(
        observations: Annotated[
            list[dict[str, Any]],
            Field(description="Entries {entityName, contents: [strings]}."),
        ],
    ) -> Annotated[CallToolResult, _Results]:
        """Add new observations to existing entities in the knowledge graph."""
        memory.writable()
        results = []
        with memory.store.transaction():
            for entry in observations:
                if not isinstance(entry, dict) or not isinstance(entry.get("entityName"), str):
                    raise memstore.ValidationError("an entry is {entityName, contents}")
                name = entry["entityName"]
                contents = _checked_names(entry.get("contents", []), "contents")
                try:
                    node = memory.graph.node(name)
                except memstore.NotFoundError:
                    raise memstore.NotFoundError(f"Entity with name {name} not found") from None
                if node.props.get("placeholder"):
                    raise memstore.NotFoundError(f"Entity with name {name} not found")
                results.append(
                    {
                        "entityName": name,
                        "addedObservations": _add_observations(memory, name, contents),
                    }
                )
        return _reply(results, {"results": results})

    @tool(_DESTRUCTIVE, write=True)
    def delete_entities(
        entityNames: Annotated[list[str], Field(description="Names of the entities to delete.")],
    ) -> Annotated[CallToolResult, _Done]:
        """Delete multiple entities and their associated relations from the knowledge graph."""
        memory.writable()
        with memory.store.transaction():
            for name in _checked_names(entityNames, "entityNames"):
                memory.graph.delete_node(name)
        return _done("Entities deleted successfully")

    @tool(_DESTRUCTIVE, write=True)
    def delete_observations(
        deletions: Annotated[
            list[dict[str, Any]],
            Field(description="Entries {entityName, observations: [strings]}."),
        ],
    ) -> Annotated[CallToolResult, _Done]:
        """Delete specific observations from entities in the knowledge graph."""
        _delete_facts(memory, [], [], deletions)
        return _done("Observations deleted successfully")

    @tool(_DESTRUCTIVE, write=True)
    def delete_relations(
        relations: Annotated[
            list[dict[str, Any]], Field(description="Relations {from, to, relationType}.")
        ],
    ) -> Annotated[CallToolResult, _Done]:
        """Delete multiple relations from the knowledge graph."""
        memory.writable()
        with memory.store.transaction():
            for relation in relations:
                _delete_relation(memory, *_reference_relation(relation))
        return _done("Relations deleted successfully")

    @tool(_READ)
    def read_graph() -> Annotated[CallToolResult, _Graph]:
        """Read the entire knowledge graph."""
        graph = _reference_graph(memory, None)
        return _reply(graph, graph)

    @tool(_READ)
    def search_nodes(
        query: Annotated[
            str, Field(description="Matched against names, types and observation content.")
        ],
    ) -> Annotated[CallToolResult, _Graph]:
        """Search for nodes in the knowledge graph based on a query."""
        if not isinstance(query, str):
            raise memstore.QueryError("query is a string")
        needle = query.lower()
        names = {
            n.id
            for n in _all_entities(memory)
            if needle in n.id.lower()
            or needle in n.kind.lower()
            or any(needle in o.lower() for o in n.props.get("observations", []))
        }
        graph = _reference_graph(memory, names)
        return _reply(graph, graph)

    @tool(_READ)
    def open_nodes(
        names: Annotated[list[str], Field(description="Names of the entities to retrieve.")],
    ) -> Annotated[CallToolResult, _Graph]:
        """Open specific nodes in the knowledge graph by their names."""
        graph = _reference_graph(memory, set(_checked_names(names, "names")))
        return _reply(graph, graph)


def _reference_entity(entity: Any) -> None:
    if (
        not isinstance(entity, dict)
        or not isinstance(entity.get("name"), str)
        or not isinstance(entity.get("entityType"), str)
        or not entity["name"]
        or not entity["entityType"]
    ):
        raise memstore.ValidationError(
            f"an entity is {{name, entityType, observations}}: {entity!r:.80}"
        )
    entity.setdefault("observations", [])
    _checked_names(entity["observations"], "observations")


def _reference_relation(relation: Any) -> tuple[str, str, str]:
    if not isinstance(relation, dict) or not all(
        isinstance(relation.get(k), str) and relation.get(k) for k in ("from", "to", "relationType")
    ):
        raise memstore.ValidationError(
            f"a relation is {{from, to, relationType}}: {relation!r:.80}"
        )
    return relation["from"], relation["to"], relation["relationType"]


def _reference_graph(memory: Memory, names: set[str] | None) -> dict[str, Any]:
    """{entities, relations} as the reference server gives them: relations of the graph
    (read_graph), or those between two of the entities found."""
    entities = [_entity(n) for n in _all_entities(memory) if names is None or n.id in names]
    found = {e["name"] for e in entities}
    if names is None:
        every = {n.id for n in memory.graph.nodes()}  # placeholders are ends too
        relations = _relations_among(memory, every)
    else:
        relations = _relations_among(memory, found)
    return {"entities": entities, "relations": relations}


# --------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------


def _resources(server: MCPServer[Any], memory: Memory) -> None:
    @server.resource("memstore://memories/{key}", name="memory", mime_type="application/json")
    def memory_resource(key: str) -> str:
        """One memory of this scope, as JSON."""
        internal = memory.key(unquote(key))
        record = memory.memories.get(internal, None)
        if record is None or record.get("scope") != memory.scope or "forgotten_at" in record:
            raise memstore.NotFoundError(f"no memory {key!r}")
        return json.dumps(memory.shown(internal, record), ensure_ascii=False)

    @server.resource("memstore://graph", name="graph", mime_type="application/json")
    def graph_resource() -> str:
        """This scope's knowledge graph: {entities, relations}."""
        return json.dumps(_reference_graph(memory, None), ensure_ascii=False)

    @server.resource("memstore://threads/{thread_id}", name="thread", mime_type="application/json")
    def thread_resource(thread_id: str) -> str:
        """One of this scope's conversations: its messages, oldest first."""
        conv = memory.store.conversations()
        thread = conv.thread(unquote(thread_id))
        if thread.agent_id != memory.scope:
            raise memstore.NotFoundError(f"no thread {thread_id!r}")
        messages = [
            {"position": m.position, "role": m.role, "content": m.content}
            for m in conv.messages(thread.id, limit=10_000)
        ]
        return json.dumps({"id": thread.id, "title": thread.title, "messages": messages})


# --------------------------------------------------------------------------
# The reference server's file: import and export
# --------------------------------------------------------------------------


def import_reference(
    store: memstore.Store, path: str | os.PathLike[str], *, scope: str = "default"
) -> dict[str, int]:
    """Bring a reference memory server's file (JSONL of entities and relations) into the
    scope's graph, losslessly; in one transaction. Returns what was read."""
    memory = Memory(store, scope=check_scope(scope))
    counts = {"entities": 0, "relations": 0}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    with store.transaction():
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as err:
                raise memstore.ValidationError(f"line {number} is not JSON: {err}") from None
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "entity":
                _reference_entity(item)
                _create_entity(memory, item["name"], item["entityType"], item["observations"])
                counts["entities"] += 1
            elif kind == "relation":
                source, target, relation = _reference_relation(item)
                for end in (source, target):
                    try:
                        memory.graph.node(end)
                    except memstore.NotFoundError:
                        memory.graph.add_node(end, "unknown", {"placeholder": True})
                _create_relation(memory, source, target, relation)
                counts["relations"] += 1
            else:
                raise memstore.ValidationError(
                    f"line {number} is neither an entity nor a relation of a memory file"
                )
    return counts


def export_reference(
    store: memstore.Store,
    path: str | os.PathLike[str],
    *,
    scope: str = "default",
    plaintext: bool = False,
) -> dict[str, int]:
    """Write the scope's graph as a reference memory server's file (JSONL): of an
    encrypted store, only with ``plaintext=True``."""
    if store.encrypted and plaintext is not True:
        raise memstore.EncryptionError(
            f"{store.path} is encrypted and a memory server's file is plain JSON: pass "
            "plaintext=True (--plaintext) to write its graph unencrypted"
        )
    memory = Memory(store, scope=check_scope(scope))
    graph = _reference_graph(memory, None)
    lines = [json.dumps({"type": "entity", **e}, ensure_ascii=False) for e in graph["entities"]]
    lines += [json.dumps({"type": "relation", **r}, ensure_ascii=False) for r in graph["relations"]]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {"entities": len(graph["entities"]), "relations": len(graph["relations"])}


class DryRun(Exception):
    """Raised inside an import's transaction to roll it back: a dry run."""


def looks_like_reference_file(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a reference memory server's JSONL (its first line says)."""
    try:
        with open(path, encoding="utf-8") as file:
            first = next((line for line in file if line.strip()), "")
        item = json.loads(first) if first else None
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(item, dict) and item.get("type") in ("entity", "relation")


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def serve(
    db: str,
    *,
    profile: str = "memstore",
    scope: str | None = None,
    read_only: bool = False,
    http: tuple[str, int] | None = None,
    vectors: Mapping[str, Any] | None = None,
    key: memstore.Key | None = None,
) -> None:
    """Run a server on the file ``db`` (encrypted: with ``key``) until its client (stdio)
    or a signal (HTTP) ends it."""
    with memstore.Store(db, timeout=BUSY_TIMEOUT, create=not read_only, key=key) as store:
        server = build_server(
            store, profile=profile, scope=scope, read_only=read_only, vectors=vectors
        )
        if http is None:
            server.run("stdio")
        else:
            host, port = http
            server.run("streamable-http", host=host, port=port)


def parse_http(value: str) -> tuple[str, int]:
    """HOST:PORT, or PORT alone (on the loopback)."""
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise memstore.ValidationError(f"--http is HOST:PORT or PORT, not {value!r}") from None
    if not 1 <= number <= 65535:
        raise memstore.ValidationError(f"a port is 1 to 65535, not {number}")
    return (host.strip("[]") or "127.0.0.1", number)
