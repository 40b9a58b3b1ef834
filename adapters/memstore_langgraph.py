"""memstore as LangGraph's checkpointer (``MemstoreSaver``) and store (``MemstoreStore``).

    from memstore_langgraph import MemstoreSaver, MemstoreStore

    graph = builder.compile(
        checkpointer=MemstoreSaver("agent.db"), store=MemstoreStore("agent.db")
    )
    graph.invoke(inputs, {"configurable": {"thread_id": "chat-1"}})

Install with ``pip install 'agent-memstore[langgraph]'``. Checkpoints land in the
store's own file (tables ``memstore_lg_checkpoints``, ``memstore_lg_blobs``
and ``memstore_lg_writes``, schema version 9), and store items in a memstore
collection (``langgraph_store``), beside the rest of the agent's memory, so
Datasette and the ``memstore`` command show them.

Every method has its sync and async form on the class. The sync ones are
safe from many threads (LangGraph calls them from executor threads); the
async ones run on an ``memstore.AsyncStore`` worker, so the event loop never
waits on SQLite. ``list``/``alist`` read a page of checkpoints at a time and
hold no lock or transaction while the caller has one in hand.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import json
import math
import os
import random
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import Any, ParamSpec, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)
from langgraph.store.base.embed import ensure_embeddings

import memstore

__all__ = ["MemstoreSaver", "MemstoreStore", "NamespaceError"]

#: Checkpoints read per statement by ``list``: no lock is held between pages.
_P = ParamSpec("_P")
_R = TypeVar("_R")

PAGE_SIZE = 100
#: What ``prune`` can do: keep each namespace's newest checkpoint, or delete all.
PRUNE_STRATEGIES = ("keep_latest", "delete")

_CHECKPOINT_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, "
    "channel_versions"
)
# A thread's channel values no checkpoint of it refers to any more (the threads, and the
# table of a checkpoint's channel versions, as the store's engine spells them).
_UNUSED_BLOBS = """
DELETE FROM memstore_lg_blobs
WHERE {threads}
  AND NOT EXISTS (
    SELECT 1 FROM memstore_lg_checkpoints AS c, {versions} AS v
    WHERE c.thread_id = memstore_lg_blobs.thread_id
      AND c.checkpoint_ns = memstore_lg_blobs.checkpoint_ns
      AND v.key = memstore_lg_blobs.channel AND v.value = memstore_lg_blobs.version
  )
"""
# Per thread and namespace, every checkpoint but the newest (prune's keep_latest).
_OLDER = """
checkpoint_id < (
    SELECT max(n.checkpoint_id) FROM memstore_lg_checkpoints AS n
    WHERE n.thread_id = {table}.thread_id AND n.checkpoint_ns = {table}.checkpoint_ns
)
"""


class MemstoreSaver(memstore.Adapter, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer in a memstore file.

    >>> saver = MemstoreSaver("agent.db")           # or ":memory:", or an open memstore.Store
    >>> graph = builder.compile(checkpointer=saver)

    ``path`` is a file (created as needed) or ``":memory:"``, opened with
    ``Store``'s ``options``; or an open ``memstore.Store`` to share, which
    ``close()`` then leaves open. ``serde`` is LangGraph's serializer (its
    default, msgpack with a JSON fallback, unless given).

    Beyond LangGraph's base methods it has ``delete_for_runs``,
    ``copy_thread`` and ``prune``. ``prune(..., strategy="keep_latest")``
    keeps only the newest checkpoint of each namespace: do not use it on
    threads of graphs with a ``DeltaChannel``, whose values are rebuilt from
    their ancestors' writes.
    """

    layer = "LangGraph checkpoints"

    def __init__(
        self,
        path: str | os.PathLike[str] | memstore.Store = ":memory:",
        *,
        serde: SerializerProtocol | None = None,
        **options: Any,
    ) -> None:
        super().__init__(serde=serde)
        self.open_store(path, options)

    @classmethod
    @contextmanager
    def from_conn_string(cls, path: str, **options: Any) -> Iterator[MemstoreSaver]:
        """``with MemstoreSaver.from_conn_string("agent.db") as saver:``, as LangGraph's savers."""
        saver = cls(path, **options)
        try:
            yield saver
        finally:
            saver.close()

    def __repr__(self) -> str:
        return f"<MemstoreSaver {self.store.shown_path!r}>"

    # -- sync API --------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or its thread's newest; None if there is none."""
        thread_id, ns, checkpoint_id = _address(config)
        sql = f"SELECT {_CHECKPOINT_COLUMNS} FROM memstore_lg_checkpoints "
        sql += "WHERE thread_id = ? AND checkpoint_ns = ? "
        params: list[Any] = [thread_id, ns]
        if checkpoint_id:
            sql += "AND checkpoint_id = ?"
            params.append(checkpoint_id)
        else:
            sql += "ORDER BY checkpoint_id DESC LIMIT 1"
        found = self._tuples(sql, params)
        return found[0] if found else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first: of ``config``'s thread (and namespace, and checkpoint,
        when it names them) or of all threads; whose metadata has ``filter``'s values;
        made before ``before``'s checkpoint; at most ``limit``."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise memstore.ValidationError(f"limit must be a whole number >= 0, not {limit!r}")
        conditions, params, exact = _list_filter(config, filter, before, self.json_field)
        left = limit
        last: tuple[str, str, str] | None = None
        while left is None or left > 0:
            sql = f"SELECT {_CHECKPOINT_COLUMNS} FROM memstore_lg_checkpoints WHERE {conditions}"
            page_params = list(params)
            if last is not None:
                sql += " AND (checkpoint_id, thread_id, checkpoint_ns) < (?, ?, ?)"
                page_params += last
            sql += " ORDER BY checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC LIMIT ?"
            # Without filters left to check in Python, no more than the caller still wants.
            page = PAGE_SIZE if exact or left is None else min(PAGE_SIZE, left)
            page_params.append(page)
            found = self._tuples(sql, page_params)
            # No transaction is held: the caller may hold each tuple as long as it likes.
            for item in found:
                if all(item.metadata.get(k, None) == v for k, v in exact.items()):
                    yield item
                    if left is not None:
                        left -= 1
                        if left == 0:
                            return
            if len(found) < page:
                return
            at = found[-1].config["configurable"]
            last = (at["checkpoint_id"], at["thread_id"], at["checkpoint_ns"])

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint, writing only the channel values ``new_versions`` names: small
        values (None, numbers, short text) inside the checkpoint's own row, others once per
        version in memstore_lg_blobs."""
        thread_id, ns, parent_id = _address(config)
        _mapping(checkpoint, "checkpoint")
        if not isinstance(checkpoint.get("id"), str):
            raise memstore.ValidationError("a checkpoint needs its id, a str")
        channel_versions = _mapping(checkpoint.get("channel_versions"), "channel_versions")
        _mapping(metadata, "metadata")
        _mapping(new_versions, "new_versions")
        state: dict[str, Any] = dict(checkpoint)
        values = _mapping(state.pop("channel_values", None) or {}, "channel_values")
        inline = {
            channel: value
            for channel, value in values.items()
            if channel in channel_versions and _inlined(value)
        }
        if inline:
            state["channel_values"] = inline
        kind, data = self._dumps(state, "the checkpoint")
        # A channel without a value at its new version gets no row: its value is looked
        # up by version, and none found is what an 'empty' row said.
        blobs = [
            (thread_id, ns, channel, str(version), *self._dumps(values[channel], channel))
            for channel, version in new_versions.items()
            if channel in values and channel not in inline
        ]
        versions = {channel: str(v) for channel, v in channel_versions.items()}
        row = (
            thread_id,
            ns,
            checkpoint["id"],
            parent_id,
            kind,
            data,
            _metadata_json(config, metadata),
            json.dumps(versions),
        )
        if blobs and self.remote and len(blobs) <= _ROWS_A_STATEMENT:
            # One statement, atomic by itself: one request to the server, not four
            # (BEGIN, the values, the checkpoint, COMMIT). SQLite has no INSERT in WITH.
            self.execute(
                f"WITH blobs AS ({_BLOBS_INSERT}{_values(6, len(blobs))} ON CONFLICT DO "
                f"NOTHING) {_CHECKPOINT_UPSERT}",
                [*_flat(blobs), *row],
            )
        else:
            with self.store.transaction(exclusive=False):
                for chunk in _chunks(blobs):
                    self.execute(
                        f"{_BLOBS_INSERT}{_values(6, len(chunk))} ON CONFLICT DO NOTHING",
                        _flat(chunk),
                    )
                self.execute(_CHECKPOINT_UPSERT, row)
        return _config(thread_id, ns, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's writes for the checkpoint ``config`` names.

        A write already saved (same task, same place) is kept as it was; the
        special channels (error, interrupt, ...) are replaced.
        """
        thread_id, ns, checkpoint_id = _address(config)
        if not checkpoint_id:
            raise memstore.ValidationError("put_writes needs a config with a checkpoint_id")
        if not isinstance(task_path, str):
            raise memstore.ValidationError(f"task_path must be a str, not {task_path!r:.60}")
        if type(writes) not in _WRITE_LISTS and (
            isinstance(writes, (str, bytes, Mapping)) or not isinstance(writes, Iterable)
        ):
            raise memstore.ValidationError(
                f"writes must be a list of (channel, value) pairs, not {type(writes).__name__}"
            )
        pairs = list(writes)  # LangGraph hands a deque
        for pair in pairs:
            if (
                not isinstance(pair, (list, tuple))
                or len(pair) != 2
                or not isinstance(pair[0], str)
            ):
                raise memstore.ValidationError(
                    f"a write is a (channel, value) pair with a str channel, not {pair!r:.60}"
                )
        special: list[tuple[Any, ...]] = []
        regular: list[tuple[Any, ...]] = []
        for idx, (channel, value) in enumerate(pairs):
            row = (
                thread_id,
                ns,
                checkpoint_id,
                str(task_id),
                WRITES_IDX_MAP.get(channel, idx),
                task_path,
                channel,
                *self._dumps(value, channel),
            )
            (special if channel in WRITES_IDX_MAP else regular).append(row)
        insert = (
            "INSERT INTO memstore_lg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
            "idx, task_path, channel, type, value) VALUES "
        )
        # Rows many to a statement: usually all in one, which on PostgreSQL is one request
        # by itself (a transaction of one statement sends no BEGIN and no COMMIT).
        with self.store.transaction(exclusive=False):
            for chunk in _chunks(regular):
                self.execute(
                    insert + _values(9, len(chunk)) + " ON CONFLICT DO NOTHING", _flat(chunk)
                )
            for chunk in _chunks(special):
                self.execute(
                    insert + _values(9, len(chunk)) + " ON CONFLICT (thread_id, checkpoint_ns, "
                    "checkpoint_id, task_id, idx) DO UPDATE SET task_path = excluded.task_path, "
                    "channel = excluded.channel, type = excluded.type, value = excluded.value",
                    _flat(chunk),
                )

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints, writes and values, in every namespace."""
        self._delete_threads([str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints the given runs made (``metadata["run_id"]``), and their writes."""
        runs, ids = self.in_list("run_id", [str(r) for r in _sequence(run_ids, "run_ids")])
        with self.store.transaction(exclusive=False):
            self.execute(
                "DELETE FROM memstore_lg_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) "
                "IN (SELECT thread_id, checkpoint_ns, checkpoint_id FROM memstore_lg_checkpoints "
                f"WHERE {runs})",
                (ids,),
            )
            threads = self.execute(
                f"DELETE FROM memstore_lg_checkpoints WHERE {runs} RETURNING thread_id",
                (ids,),
            )
            self._delete_unused_blobs(sorted({t for (t,) in threads}))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of one thread to another (all namespaces).

        What the target already has under the same ids is kept.
        """
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            raise memstore.ValidationError("copy_thread needs two different threads")
        with self.store.transaction(exclusive=False):
            for table, columns in _THREAD_TABLES.items():
                self.execute(
                    f"INSERT INTO {table} (thread_id, {columns}) SELECT ?, {columns} "
                    f"FROM {table} WHERE thread_id = ? ON CONFLICT DO NOTHING",
                    (target, source),
                )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's newest checkpoint (``"keep_latest"``), with its writes,
        or delete the threads' checkpoints altogether (``"delete"``)."""
        if strategy not in PRUNE_STRATEGIES:
            raise memstore.ValidationError(
                f"unknown prune strategy {strategy!r}: use one of {', '.join(PRUNE_STRATEGIES)}"
            )
        threads = [str(t) for t in _sequence(thread_ids, "thread_ids")]
        if strategy == "delete":
            self._delete_threads(threads)
            return
        among, ids = self.in_list("thread_id", threads)
        with self.store.transaction(exclusive=False):
            for table in ("memstore_lg_writes", "memstore_lg_checkpoints"):
                self.execute(
                    f"DELETE FROM {table} WHERE {among} AND {_OLDER.format(table=table)}",
                    (ids,),
                )
            self._delete_unused_blobs(threads)

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        """Versions that sort as text: a zero-padded counter and a random tie-breaker."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- async API: the sync methods, run on the store's worker thread ---------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``get_tuple``, without blocking the event loop."""
        result: CheckpointTuple | None = await self.run_async(self.get_tuple, config)
        return result

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """``list``, a page at a time from the worker; nothing is held between pages."""
        pages = self.list(config, filter=filter, before=before, limit=limit)
        try:
            while True:
                page = await self.run_async(lambda: list(islice(pages, PAGE_SIZE)))
                if not page:
                    return
                for item in page:
                    yield item
        finally:
            close = getattr(pages, "close", None)  # a generator's: ends its query
            if close is not None:
                await self.run_async(close)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """``put``, without blocking the event loop."""
        result: RunnableConfig = await self.run_async(
            self.put, config, checkpoint, metadata, new_versions
        )
        return result

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """``put_writes``, without blocking the event loop."""
        await self.run_async(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """``delete_thread``, without blocking the event loop."""
        await self.run_async(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """``delete_for_runs``, without blocking the event loop."""
        await self.run_async(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """``copy_thread``, without blocking the event loop."""
        await self.run_async(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``prune``, without blocking the event loop."""
        await self.run_async(lambda: self.prune(thread_ids, strategy=strategy))

    # -- private ---------------------------------------------------------------

    def _dumps(self, value: Any, what: str) -> tuple[str, bytes]:
        """``serde.dumps_typed``, its refusal (a value it cannot serialize: an integer past
        64 bits, an object msgpack does not know) a memstore error naming the channel."""
        try:
            return self.serde.dumps_typed(value)
        except (TypeError, ValueError, OverflowError, RecursionError) as err:
            raise memstore.ValidationError(f"{what[:60]!r} cannot be serialized: {err}") from err

    def _delete_threads(self, threads: Sequence[str]) -> None:
        among, ids = self.in_list("thread_id", threads)
        with self.store.transaction(exclusive=False):
            for table in _THREAD_TABLES:
                self.execute(f"DELETE FROM {table} WHERE {among}", (ids,))

    def _delete_unused_blobs(self, threads: Sequence[str]) -> None:
        among, ids = self.in_list("thread_id", threads)
        versions = self.json_entries("c.channel_versions")
        self.execute(_UNUSED_BLOBS.format(threads=among, versions=versions), (ids,))

    def _tuples(self, source: str, params: Sequence[Any]) -> Sequence[CheckpointTuple]:
        """The checkpoints ``source`` selects (its rows: _CHECKPOINT_COLUMNS, in the order
        checkpoint_id, thread_id, checkpoint_ns, descending) as LangGraph's tuples, with
        their values and pending writes, read in one snapshot of the three tables: on
        PostgreSQL in one statement (_TUPLES: one round trip), on SQLite in three simple
        ones in a read transaction (faster there than the one that combines them)."""
        if self.remote:
            sql = _TUPLES.format(source=source, versions=self.json_entries("c.channel_versions"))
            return self._assemble(self.execute(sql, params))
        with self.store.transaction(immediate=False):
            rows = self.execute(source, params)
            if not rows:
                return []
            decoded = {row[:3]: self.serde.loads_typed((row[4], row[5])) for row in rows}
            keys: set[tuple[str, str, str, str]] = set()
            for row in rows:
                state = decoded[row[:3]]
                inline = state.get("channel_values", ())  # in the row: nothing to look up
                for channel, version in state.get("channel_versions", {}).items():
                    if channel not in inline:
                        keys.add((row[0], row[1], channel, str(version)))
            wanted = sorted(keys)
            join = self.join_in_order
            of, c, _, of_params = self.tuples("c", 3, [row[:3] for row in rows])
            statements = [
                (
                    "SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, "
                    "w.type, w.value, w.channel, w.task_path, w.idx "
                    f"FROM {of} {join} memstore_lg_writes AS w "
                    f"ON w.thread_id = {c[0]} AND w.checkpoint_ns = {c[1]} "
                    f"AND w.checkpoint_id = {c[2]}",
                    of_params,
                )
            ]
            if wanted:  # none when every value is small enough to be in its checkpoint
                wanted_table, w, _, wanted_params = self.tuples("w", 4, wanted)
                statements.append(
                    (
                        "SELECT 1, b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, "
                        f"b.blob, NULL, NULL, NULL FROM {wanted_table} {join} "
                        f"memstore_lg_blobs AS b ON b.thread_id = {w[0]} "
                        f"AND b.checkpoint_ns = {w[1]} AND b.channel = {w[2]} "
                        f"AND b.version = {w[3]} WHERE b.type <> 'empty'",
                        wanted_params,
                    )
                )
            found = self.execute_together(statements)
        parts = [(0, *row[:7], None, None) for row in rows]
        return self._assemble([*parts, *(row for part in found for row in part)], decoded)

    def _assemble(
        self, rows: Iterable[Sequence[Any]], decoded: dict[Any, Any] | None = None
    ) -> Sequence[CheckpointTuple]:
        """Tuples from rows of _TUPLES's three parts (in any order); ``decoded``, the
        checkpoints already decoded, by (thread_id, checkpoint_ns, checkpoint_id)."""
        checkpoints: Any = []  # (the name list is this class's method here)
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes]] = {}
        writes: dict[tuple[str, str, str], Any] = {}
        for part, thread_id, ns, a, b, kind, data, c, path, idx in rows:
            if part == 0:  # a, b: checkpoint_id, parent_checkpoint_id; c: metadata
                checkpoints.append((thread_id, ns, a, b, kind, data, c))
            elif part == 1:  # a, b: channel, version
                blobs[(thread_id, ns, a, b)] = (kind, data)
            else:  # a, b: checkpoint_id, task_id; c: channel
                writes.setdefault((thread_id, ns, a), []).append((path, b, idx, c, kind, data))
        checkpoints.sort(key=lambda row: (row[2], row[0], row[1]), reverse=True)
        found = []
        for thread_id, ns, checkpoint_id, parent_id, kind, data, metadata in checkpoints:
            address = (thread_id, ns, checkpoint_id)
            checkpoint = (decoded or {}).get(address) or self.serde.loads_typed((kind, data))
            values = checkpoint.get("channel_values") or {}  # the small ones (see put)
            for channel, version in checkpoint.get("channel_versions", {}).items():
                key = (thread_id, ns, channel, str(version))
                if key in blobs and channel not in values:  # each tuple its own objects
                    values[channel] = self.serde.loads_typed(blobs[key])
            pending = sorted(writes.get((thread_id, ns, checkpoint_id), []))
            found.append(
                CheckpointTuple(
                    config=_config(thread_id, ns, checkpoint_id),
                    checkpoint=cast(Checkpoint, {**checkpoint, "channel_values": values}),
                    metadata=json.loads(metadata),
                    parent_config=_config(thread_id, ns, parent_id) if parent_id else None,
                    pending_writes=[
                        (task_id, channel, self.serde.loads_typed((kind, value)))
                        for _, task_id, _, channel, kind, value in pending
                    ],
                )
            )
        return found


# The checkpoint rows a statement selects ({source}), the channel values they use and
# their pending writes, in one statement: part 0, 1 and 2, columns lined up by type
# (the NULLs cast, so that PostgreSQL types each column from its first part). CROSS JOIN
# keeps SQLite's join order (the few rows wanted first, then each by its primary key),
# which its planner would otherwise turn round on a file without statistics.
_TUPLES = """
WITH c AS ({source})
SELECT 0, c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.type,
       c.checkpoint, c.metadata, CAST(NULL AS TEXT), CAST(NULL AS BIGINT)
FROM c
UNION ALL
SELECT 1, b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob,
       CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS BIGINT)
FROM (SELECT DISTINCT c.thread_id, c.checkpoint_ns, v.key AS channel, v.value AS version
      FROM c CROSS JOIN {versions} AS v) AS wanted
     CROSS JOIN memstore_lg_blobs AS b
WHERE b.thread_id = wanted.thread_id AND b.checkpoint_ns = wanted.checkpoint_ns
  AND b.channel = wanted.channel AND b.version = wanted.version AND b.type <> 'empty'
UNION ALL
SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.type, w.value,
       w.channel, w.task_path, w.idx
FROM c CROSS JOIN memstore_lg_writes AS w
WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
  AND w.checkpoint_id = c.checkpoint_id
"""


# Per table holding a thread's rows: its columns other than thread_id (copy_thread).
_THREAD_TABLES = {
    "memstore_lg_checkpoints": "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
    "checkpoint, metadata, channel_versions, created_at",
    "memstore_lg_blobs": "checkpoint_ns, channel, version, type, blob",
    "memstore_lg_writes": "checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel, type, "
    "value, created_at",
}


_BLOBS_INSERT = (
    "INSERT INTO memstore_lg_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES "
)
_CHECKPOINT_UPSERT = (
    "INSERT INTO memstore_lg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata, channel_versions) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
    "parent_checkpoint_id = excluded.parent_checkpoint_id, type = excluded.type, "
    "checkpoint = excluded.checkpoint, metadata = excluded.metadata, "
    "channel_versions = excluded.channel_versions"
)
#: Rows inserted by one statement at most (its parameters stay far below either
#: engine's limit); a statement text for each count up to it, the drivers cache them.
_ROWS_A_STATEMENT = 64


@functools.lru_cache(maxsize=2 * _ROWS_A_STATEMENT)
def _values(width: int, rows: int) -> str:
    """A VALUES list's rows of ``width`` parameters each, for ``rows`` rows."""
    row = "(" + ", ".join(["?"] * width) + ")"
    return ", ".join([row] * rows)


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows, _ROWS_A_STATEMENT at a time."""
    for start in range(0, len(rows), _ROWS_A_STATEMENT):
        yield rows[start : start + _ROWS_A_STATEMENT]


def _flat(rows: Iterable[Sequence[Any]]) -> list[Any]:
    """Rows' parameters one after another, as a multi-row VALUES list binds them."""
    return [value for row in rows for value in row]


#: The longest text a checkpoint keeps inside its own row (see _inlined).
_INLINE_TEXT = 256


def _inlined(value: Any) -> bool:
    """Whether a channel's value is kept inside its checkpoint's row, written again with
    every checkpoint, rather than once per version in memstore_lg_blobs: None, numbers
    and short text, which cost less there than a row of their own. A pure function of
    the value, so that every checkpoint having a version of a channel decides alike."""
    kind = type(value)
    return (
        value is None
        or kind is bool
        or (kind is int and -(2**63) <= value < 2**64)  # what msgpack holds
        or kind is float
        or (kind is str and len(value) <= _INLINE_TEXT)
    )


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _address(config: RunnableConfig) -> tuple[str, str, str | None]:
    """(thread_id, checkpoint_ns, checkpoint_id or None) of a config, checked."""
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict) or configurable.get("thread_id") is None:
        raise memstore.ValidationError(
            'a checkpointer needs config={"configurable": {"thread_id": ...}}'
        )
    ns = configurable.get("checkpoint_ns") or ""
    if not isinstance(ns, str):
        raise memstore.ValidationError(f"checkpoint_ns must be a str, not {ns!r}")
    return str(configurable["thread_id"]), ns, get_checkpoint_id(config)


def _list_filter(
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    field: Callable[[str, str, str], tuple[str, list[Any]]],
) -> tuple[str, list[Any], dict[str, Any]]:
    """SQL conditions for list(), and the filter values checked in Python (lists, dicts);
    ``field`` is the adapter's json_field."""
    conditions: list[str] = ["TRUE"]
    params: list[Any] = []
    for name, given in (("config", config), ("before", before)):
        if given is not None and not (
            isinstance(given, Mapping) and isinstance(given.get("configurable", {}), Mapping)
        ):
            raise memstore.ValidationError(
                f'{name} must be a config, {{"configurable": {{...}}}}, not {given!r:.60}'
            )
    if config is not None:
        configurable = config.get("configurable") or {}
        if configurable.get("thread_id") is not None:
            conditions.append("thread_id = ?")
            params.append(str(configurable["thread_id"]))
        if configurable.get("checkpoint_ns") is not None:
            conditions.append("checkpoint_ns = ?")
            params.append(configurable["checkpoint_ns"])
        if checkpoint_id := get_checkpoint_id(config):
            conditions.append("checkpoint_id = ?")
            params.append(checkpoint_id)
    if before is not None and (before_id := get_checkpoint_id(before)):
        conditions.append("checkpoint_id < ?")
        params.append(before_id)
    exact: dict[str, Any] = {}
    if filter is not None and not isinstance(filter, dict):
        raise memstore.ValidationError(f"filter must be a dict, not {type(filter).__name__}")
    for key, value in (filter or {}).items():
        if not isinstance(key, str) or '"' in key:
            raise memstore.ValidationError(f"invalid metadata filter key {key!r}")
        kind, kind_params = field("metadata", key, "type")
        if value is None:  # as LangGraph's own savers: a missing key matches None too
            conditions.append(f"coalesce({kind}, 'null') = 'null'")
            params += kind_params
        elif isinstance(value, bool):
            conditions.append(f"{kind} = ?")
            params += [*kind_params, "true" if value else "false"]
        elif isinstance(value, int) and not -memstore.INT64_MAX - 1 <= value <= memstore.INT64_MAX:
            # SQLite cannot bind it: refused on both engines alike
            raise memstore.ValidationError(
                f"a metadata filter's integer must fit in 64 bits, not {value!r:.40}"
            )
        elif isinstance(value, (int, float, str)):
            number = isinstance(value, (int, float))
            kinds = "IN ('integer', 'real')" if number else "= 'text'"
            found, found_params = field("metadata", key, "number" if number else "text")
            conditions.append(f"{kind} {kinds} AND {found} = ?")
            params += [*kind_params, *found_params, value]
        else:  # a list or dict: compared after loading, as Python compares them
            conditions.append(f"{kind} IN ('array', 'object')")
            params += kind_params
            exact[key] = value
    return " AND ".join(conditions), params, exact


# json.dumps with options builds an encoder a call: these are built once, for the hot paths.
_METADATA_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_KEY_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _metadata_json(config: RunnableConfig, metadata: CheckpointMetadata) -> str:
    merged = get_serializable_checkpoint_metadata(config, metadata)
    try:
        return _METADATA_ENCODER.encode(merged)
    except (TypeError, ValueError) as err:
        raise memstore.ValidationError(f"checkpoint metadata must be JSON: {err}") from err


#: What writes come in, checked without an ABC's isinstance (put_writes runs every step).
_WRITE_LISTS = (list, tuple, collections.deque)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):  # dict: the fast way
        raise memstore.ValidationError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _sequence(values: Any, name: str) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise memstore.ValidationError(f"{name} must be a list, not {type(values).__name__}")
    return list(values)


# --------------------------------------------------------------------------
# MemstoreStore: LangGraph's long-term memory store, on a memstore collection
# --------------------------------------------------------------------------


class NamespaceError(memstore.ValidationError, InvalidNamespaceError):
    """A namespace LangGraph's stores refuse: a memstore error and LangGraph's own."""


def _affixes(options: Mapping[str, Any]) -> None:
    """list_namespaces' prefix and suffix, each a namespace if given."""
    for name in ("prefix", "suffix"):
        if options.get(name) is not None:
            _namespace(options[name], name)


def _namespace_error(err: InvalidNamespaceError) -> InvalidNamespaceError:
    """LangGraph's InvalidNamespaceError as a NamespaceError (one already is)."""
    return err if isinstance(err, NamespaceError) else NamespaceError(str(err))


def _namespace_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A method whose InvalidNamespaceError (LangGraph's BaseStore checks namespaces
    before it builds an operation) comes out as a NamespaceError."""

    @functools.wraps(method)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except InvalidNamespaceError as err:
            raise _namespace_error(err) from err

    return translated


def _async_namespace_errors(
    method: Callable[_P, Coroutine[Any, Any, _R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """_namespace_errors for an async method."""

    @functools.wraps(method)
    async def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(*args, **kwargs)
        except InvalidNamespaceError as err:
            raise _namespace_error(err) from err

    return translated


class MemstoreStore(memstore.Adapter, BaseStore):
    """A LangGraph store (long-term memory) kept in a memstore collection.

    >>> store = MemstoreStore("agent.db", ttl={"default_ttl": 60 * 24})
    >>> store.put(("users", "alice"), "prefs", {"food": "pizza", "diet": {"vegan": False}})
    >>> store.search(("users",), filter={"diet.vegan": False, "stars": {"$gte": 4}})
    >>> store.search(("users", "alice"), query="pizza")   # ranked by full-text search

    Each item is a record of the collection ``collection`` (default
    ``langgraph_store``): ``{"namespace": "users.alice", "key": "prefs",
    "value": {...}, "ttl": minutes}``, with memstore's created_at,
    updated_at and expires_at, so it is browsable, exported and checked like
    any collection. Namespaces are matched by whole labels: ``("users",)``
    finds ``("users", "alice")``, not ``("usersx",)``.

    ``ttl`` is LangGraph's TTL config: ``default_ttl`` (minutes),
    ``refresh_on_read`` (default True) and ``sweep_interval_minutes`` for
    ``start_ttl_sweeper()``. Expired items are never returned, swept or not.
    ``index`` is LangGraph's index config, for semantic search on memstore's
    vector memory: ``{"dims": 1536, "embed": embeddings, "fields": ["text"]}``
    (``fields`` defaults to the whole value; ``"model"``, memstore's own key,
    names the model: by default the embeddings' ``model`` attribute or
    class). Each field's text is embedded as a part of the item, which
    scores its best part (cosine similarity); ``put(..., index=False)``
    leaves an item unembedded, and ``index=[...]`` picks its fields.
    ``search(query=...)`` then ranks by similarity; without ``index`` it
    ranks items by full-text search (BM25) over their values. The full-text
    index costs about half of each put's time (BENCHMARKS.md): ``fts=False``
    leaves it out, and ``query=`` without ``index`` is then refused. A
    collection that has the index keeps it.

    ``keep_past=True`` keeps every value an item had: a put of a new value
    supersedes the old one (kept, closed at that moment) and a delete closes
    the item rather than erasing it (memstore's temporal collections), so
    ``get(..., as_of=...)`` and ``search(..., as_of=...)`` read the store as it
    was at any time. Reads without ``as_of`` see what holds now, as always.
    """

    layer = None  # a collection, on every engine

    supports_ttl = True

    def __init__(
        self,
        path: str | os.PathLike[str] | memstore.Store = ":memory:",
        *,
        index: Any = None,
        ttl: TTLConfig | None = None,
        collection: str = "langgraph_store",
        fts: bool = True,
        keep_past: bool = False,
        **options: Any,
    ) -> None:
        if not isinstance(fts, bool):
            raise memstore.ValidationError(f"fts must be True or False, not {fts!r}")
        if not isinstance(keep_past, bool):
            raise memstore.ValidationError(f"keep_past must be True or False, not {keep_past!r}")
        self.keep_past = keep_past
        vectors = self._index_config(index)
        if ttl is not None and not isinstance(ttl, dict):
            raise memstore.ValidationError(f"ttl must be a TTL config dict, not {ttl!r}")
        unknown = set(ttl or {}) - {
            "default_ttl",
            "refresh_on_read",
            "sweep_interval_minutes",
            "omit_expired",
        }
        if unknown:
            raise memstore.ValidationError(f"unknown ttl settings: {sorted(unknown)}")
        self.ttl_config = ttl
        with self.opening_store(path, options) as store:
            self.items = store.collection(
                collection,
                fields={"namespace": str},
                fts=["value"] if fts else None,
                indexes=[("namespace", "-updated_at")],
                vectors=vectors,
                temporal=keep_past or None,
                # Read by key and by namespace (its own index): the indexes on created_at
                # and updated_at alone would cost every put and serve no read.
                time_indexes=False,
            )
        # LangGraph's filters may name a field no item has: they then match nothing, by
        # its semantics, and are no typo to warn about.
        self.items.warn_unknown_fields = False
        self._table = memstore.quote_identifier(self.items.name)
        self._sweeper: threading.Thread | None = None
        self._stop_sweeping = threading.Event()

    def __repr__(self) -> str:
        return f"<MemstoreStore {self.store.shown_path!r} {self.items.name!r}>"

    def before_close(self) -> None:
        self.stop_ttl_sweeper()

    def _index_config(self, index: Any) -> dict[str, Any] | None:
        """Take LangGraph's index config: set index_config and embeddings as its stores do,
        and return the collection's vectors declaration."""
        self.index_config: dict[str, Any] | None = None
        self.embeddings: Any = None
        if index is None:
            return None
        if not isinstance(index, Mapping) or "dims" not in index or "embed" not in index:
            raise memstore.ValidationError(
                f"index must be a dict with dims and embed (and fields), not {index!r:.80}"
            )
        unknown = set(index) - {"dims", "embed", "fields", "model"}
        if unknown:
            raise memstore.ValidationError(f"unknown index settings: {sorted(unknown)}")
        try:
            self.embeddings = ensure_embeddings(index["embed"])
        except ValueError as err:
            raise memstore.ValidationError(f"index embed: {err}") from err
        self.index_config = dict(index)
        fields = list(_sequence(index.get("fields") or ["$"], "index fields"))
        self.index_config["__tokenized_fields"] = [_text_path(p) for p in fields]
        model = index.get("model") or getattr(self.embeddings, "model", None)
        return {
            "dim": index["dims"],
            "model": str(model or type(self.embeddings).__name__),
            "metric": "cosine",
        }

    # -- the two methods LangGraph's BaseStore builds everything on -------------

    @_namespace_errors
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run operations in one transaction: reads see the store as it was before the
        batch's writes, and of several puts to one item the last wins (as LangGraph's
        in-memory store)."""
        ops = _ops(ops)
        for op in ops:
            if not isinstance(op, (GetOp, SearchOp, ListNamespacesOp, PutOp)):
                raise memstore.ValidationError(f"unknown store operation {op!r:.80}")
            if isinstance(op, SearchOp):
                _namespace(op.namespace_prefix, "namespace_prefix")
            elif not isinstance(op, ListNamespacesOp):
                _namespace(op.namespace, "namespace")
            else:
                for condition in op.match_conditions or ():
                    _namespace(condition.path, "a match condition's path")
                if op.max_depth is not None and (
                    not isinstance(op.max_depth, int)
                    or isinstance(op.max_depth, bool)
                    or op.max_depth < 1
                ):
                    raise memstore.ValidationError(
                        f"max_depth must be a whole number >= 1, not {op.max_depth!r:.40}"
                    )
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                _check_put(op)
                puts[(tuple(op.namespace), op.key)] = op
        if len(ops) == 1 and puts:  # one put: its own transaction is the batch's
            self._write(list(puts.values()))
            return results
        if len(ops) == 1 and isinstance(ops[0], GetOp):  # one statement: atomic by itself
            one: dict[str, float] = {}
            results = list(self._get([ops[0]], one))
            if one:
                with self.store.transaction(exclusive=False):
                    self._refresh(one)
            return results
        # Items read whose expiry moves on (refresh_on_read): key -> its TTL in minutes.
        refresh: dict[str, float] = {}
        # A batch that only reads takes no write lock; its expiry refresh, if any, is a
        # short write of its own afterwards.
        with self.store.transaction(immediate=bool(puts), exclusive=False):
            gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
            for i, item in zip(
                (i for i, _ in gets), self._get([op for _, op in gets], refresh), strict=True
            ):
                results[i] = item
            for i, op in enumerate(ops):
                if isinstance(op, SearchOp):
                    results[i] = self._search(op, refresh)
                elif isinstance(op, ListNamespacesOp):
                    results[i] = self._list_namespaces(op)
            if puts:
                self._write(list(puts.values()))
                self._refresh(refresh)
        if refresh and not puts:
            with self.store.transaction(exclusive=False):
                self._refresh(refresh)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """``batch`` on the store's worker thread: the event loop never waits on SQLite."""
        ops = _ops(ops)
        result: list[Result] = await self.run_async(self.batch, ops)
        return result

    # -- TTL ---------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete the expired items now; return how many."""
        return self.items.cleanup()

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep expired items every ``sweep_interval_minutes`` (default: the TTL config's,
        else 5) on a background thread, until ``stop_ttl_sweeper()`` or ``close()``.
        Cancelling the returned future stops it too."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._sweeper is not None and self._sweeper.is_alive():
            future.add_done_callback(lambda f: self._stop_sweeping.set() if f.cancelled() else None)
            return future
        minutes = sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes")
        interval = float(minutes or 5) * 60
        if not interval > 0:
            raise memstore.ValidationError("sweep_interval_minutes must be above 0")
        self._stop_sweeping.clear()

        def sweep() -> None:
            while not self._stop_sweeping.wait(interval):
                with contextlib.suppress(memstore.MemstoreError):  # busy: next time
                    self.sweep_ttl()
            future.set_result(None)

        self._sweeper = threading.Thread(target=sweep, name="memstore ttl sweeper", daemon=True)
        self._sweeper.start()
        future.add_done_callback(lambda f: self._stop_sweeping.set() if f.cancelled() else None)
        return future

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; return whether it has stopped (True if none ran)."""
        if self._sweeper is None:
            return True
        self._stop_sweeping.set()
        self._sweeper.join(timeout)
        stopped = not self._sweeper.is_alive()
        if stopped:
            self._sweeper = None
        return stopped

    # -- private -------------------------------------------------------------------

    def _get(self, ops: Sequence[GetOp], refresh: dict[str, float]) -> list[Item | None]:
        if not ops:
            return []
        keys = [_item_key(op.namespace, op.key) for op in ops]
        # One indexed statement for all the batch's gets (rows() would compile a filter);
        # items that keep their past: only what holds now.
        now = self.now_sql
        holds = f"AND valid_from <= {now} AND valid_to > {now}" if self.items.temporal else ""
        # One key: by equality, which SQLite plans at once (a list goes through json_each).
        which, bound = ("key = ?", keys[0]) if len(keys) == 1 else self.in_list("key", keys)
        found = {
            key: (record := json.loads(body), Item(**_item_fields(record, created, updated)))
            for key, body, created, updated in self.execute(
                f"SELECT key, body, created_at, updated_at FROM {self._table} "
                f"WHERE {which} AND {self.live_clause()} {holds}",
                (bound,),
            )
        }
        for key, op in zip(keys, ops, strict=True):
            if key in found and self._refreshes(op):
                _note_ttl(refresh, key, found[key][0])
        return [found[k][1] if k in found else None for k in keys]

    def _search(
        self, op: SearchOp, refresh: dict[str, float], as_of: Any = None
    ) -> list[SearchItem]:
        _check_count(op.limit, "limit")
        _check_count(op.offset, "offset")
        values: dict[str, Any] = {}
        if op.filter:
            if not isinstance(op.filter, dict):
                raise memstore.ValidationError(f"filter must be a dict, not {op.filter!r:.60}")
            values = _value_filter(op.filter)
        scores: dict[str, float] = {}
        if not op.query:
            ordered = self._newest(op, values, as_of)
        elif self.embeddings is not None:
            where = {"$and": [self._namespace_where(op.namespace_prefix), values]}
            ordered, scores = self._nearest(op, where, as_of)
        else:
            if not self.items.fts:
                raise memstore.QueryError(
                    f"{self.items.name!r} has no full-text index for query=: open it with "
                    "MemstoreStore(..., fts=True)"
                )
            text = memstore.fts_words(op.query)  # any of its words, as LangGraph's stores do
            if not text:
                return []
            where = {"$and": [self._namespace_where(op.namespace_prefix), values]}
            hits = self.items.search(
                text, where=where, limit=op.limit, offset=op.offset, as_of=as_of
            )
            scores = {hit.key: hit.score for hit in hits}
            found = self.items.rows({"key": {"$in": list(scores)}}, as_of=as_of)
            rows = {r.key: r for r in found}
            ordered = [rows[k] for k in scores if k in rows]
        if self._refreshes(op):
            for row in ordered:
                _note_ttl(refresh, row.key, row.record)
        return [
            SearchItem(
                **_item_fields(row.record, row.created_at, row.updated_at),
                score=scores.get(row.key),
            )
            for row in ordered
        ]

    def _nearest(
        self, op: SearchOp, where: dict[str, Any], as_of: Any = None
    ) -> tuple[list[memstore.Row], dict[str, float]]:
        """Items ranked by similarity to the query; as LangGraph's stores do, items without
        vectors fill a page the ranked ones leave short, without a score."""
        if not isinstance(op.query, str):
            raise memstore.ValidationError(f"query must be a str, not {op.query!r:.60}")
        vector = self.embeddings.embed_query(op.query)
        hits = self.items.nearest(vector, k=op.offset + op.limit, where=where, as_of=as_of)
        scores = {hit.key: hit.score for hit in hits[op.offset :]}
        keys = list(scores)
        if len(hits) < op.offset + op.limit:  # every ranked item is in hits
            ranked = {hit.key for hit in hits}
            need = op.limit - len(keys)
            for row in self.items.rows(where, order_by="-updated_at", as_of=as_of):
                if need <= 0:
                    break
                if row.key not in ranked and self.items.vector(row.key) is None:
                    keys.append(row.key)
                    need -= 1
        rows = {r.key: r for r in self.items.rows({"key": {"$in": keys}}, as_of=as_of)}
        return [rows[k] for k in keys if k in rows], scores

    def _newest(self, op: SearchOp, values: dict[str, Any], as_of: Any) -> list[memstore.Row]:
        """A search without a query: items under the prefix whose values match, the
        most recently updated first.

        The namespace's own items are read in its index's order, to the page's end,
        together with the probe for namespaces below it (one round trip on
        PostgreSQL); only when there are some is the whole subtree read instead.
        """
        page = {"order_by": "-updated_at", "limit": op.limit, "offset": op.offset, "as_of": as_of}
        if not op.namespace_prefix:
            return list(self.items.rows(values, **page))
        joined = ".".join(op.namespace_prefix)
        own = self.items.rows_sql({"$and": [{"namespace": joined}, values]}, **page)
        probe = f"SELECT 1 FROM {self._table} WHERE namespace > ? AND namespace < ? LIMIT 1"
        below, found = self.execute_together([(probe, _below(joined)), own])
        if below:
            subtree = {"$and": [_namespace_filter(op.namespace_prefix), values]}
            return list(self.items.rows(subtree, **page))
        return [
            memstore.Row(key, json.loads(body), created, updated, expires)
            for key, body, created, updated, expires in found
        ]

    def _namespace_where(self, prefix: Sequence[str]) -> dict[str, Any]:
        """The filter for namespaces under ``prefix``: by equality when none lies below it
        (one probe of the namespace index), so that a search reads that namespace's items
        in the index's order and stops at its limit; else the whole subtree."""
        if not prefix:
            return {}
        joined = ".".join(prefix)
        if self.execute(
            f"SELECT 1 FROM {self._table} WHERE namespace > ? AND namespace < ? LIMIT 1",
            _below(joined),
        ):
            return _namespace_filter(prefix)
        return {"namespace": joined}

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        _check_count(op.limit, "limit")
        _check_count(op.offset, "offset")
        where: dict[str, Any] = {}
        for condition in op.match_conditions or ():
            if condition.match_type not in ("prefix", "suffix"):
                raise memstore.ValidationError(f"unknown match type {condition.match_type!r}")
            if condition.match_type == "prefix" and "*" not in condition.path and condition.path:
                where = _namespace_filter(tuple(condition.path))
        namespaces = {
            tuple(group["namespace"].split("."))
            for group in self.items.aggregate(group_by="namespace", where=where)
        }
        matched = [
            ns
            for ns in namespaces
            if all(_matches(condition, ns) for condition in op.match_conditions or ())
        ]
        if op.max_depth is not None:
            matched = list({ns[: op.max_depth] for ns in matched})
        return sorted(matched)[op.offset : op.offset + op.limit]

    def _write(self, puts: Sequence[PutOp]) -> None:
        """Apply a batch's puts: deletes in one statement, records by put_many per TTL."""
        deletes: list[str] = []
        by_ttl: dict[float | None, list[tuple[str, dict[str, Any]]]] = {}
        parts = self._embed(puts)
        for op in puts:
            key = _item_key(op.namespace, op.key)
            if op.value is None:
                deletes.append(key)
                continue
            ttl = op.ttl
            if ttl is not None and (
                isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0
            ):
                raise memstore.ValidationError(
                    f"ttl must be a number of minutes above 0, not {ttl!r}"
                )
            record = {
                "namespace": ".".join(op.namespace),
                "key": op.key,
                "value": dict(op.value),
                "ttl": ttl,
            }
            by_ttl.setdefault(ttl, []).append((key, record))
        if self.keep_past:  # values superseded, deletes closed: the past stays readable
            for key in deletes:
                with contextlib.suppress(memstore.NotFoundError):
                    self.items.invalidate(key)
            for ttl, pairs in by_ttl.items():
                for key, record in pairs:
                    self._put_keeping_past(key, record, ttl, parts.get(key))
            return
        if deletes:
            self.items.delete_where({"key": {"$in": deletes}})
        if len(by_ttl) == 1 and len(pairs := next(iter(by_ttl.values()))) == 1:
            (ttl,) = by_ttl
            key = pairs[0][0]
            self.items.put(*pairs[0], ttl=None if ttl is None else ttl * 60, vector=parts.get(key))
            return
        for ttl, pairs in by_ttl.items():
            self.items.put_many(
                pairs,
                ttl=None if ttl is None else ttl * 60,
                vectors=None if parts is _NO_PARTS else [parts[key] for key, _ in pairs],
            )

    def _put_keeping_past(
        self, key: str, record: dict[str, Any], ttl: float | None, parts: Any
    ) -> None:
        """A put that keeps the item's past: a new value supersedes the one that held until
        now (or, after a delete, the one that held until then); a first value holds from
        now on. A change in the instant the value began waits for the next (memstore's
        supersede does), so that every value held for a while."""
        try:  # an item with a past (not its whole timeline, read to learn that it has one)
            self.items.supersede(key, record, vector=parts)
        except memstore.NotFoundError:  # a first value
            self.items.put(
                key,
                record,
                ttl=None if ttl is None else ttl * 60,
                vector=parts,
                valid_from=datetime.now(UTC),
                valid_to=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            )
            return
        if ttl is not None:
            self.items.touch([key], ttl=ttl * 60)

    # LangGraph's BaseStore checks a namespace's labels before it builds the operation,
    # raising its own InvalidNamespaceError: these raise NamespaceError (both a memstore
    # error and LangGraph's), and refuse what is no namespace at all (None, a str).

    @_namespace_errors
    def put(self, namespace: tuple[str, ...], key: str, value: Any, *a: Any, **k: Any) -> None:
        """LangGraph's put."""
        super().put(_namespace(namespace, "namespace"), key, value, *a, **k)

    @_async_namespace_errors
    async def aput(
        self, namespace: tuple[str, ...], key: str, value: Any, *a: Any, **k: Any
    ) -> None:
        """LangGraph's aput."""
        await super().aput(_namespace(namespace, "namespace"), key, value, *a, **k)

    @_namespace_errors
    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """LangGraph's delete."""
        super().delete(_namespace(namespace, "namespace"), key)

    @_async_namespace_errors
    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        """LangGraph's adelete."""
        await super().adelete(_namespace(namespace, "namespace"), key)

    @_namespace_errors
    def list_namespaces(self, **options: Any) -> list[tuple[str, ...]]:
        """LangGraph's list_namespaces."""
        _affixes(options)
        return super().list_namespaces(**options)

    @_async_namespace_errors
    async def alist_namespaces(self, **options: Any) -> list[tuple[str, ...]]:
        """LangGraph's alist_namespaces."""
        _affixes(options)
        return await super().alist_namespaces(**options)

    @_async_namespace_errors
    async def aget(self, namespace: tuple[str, ...], key: str, **options: Any) -> Item | None:
        """LangGraph's aget."""
        return await super().aget(_namespace(namespace, "namespace"), key, **options)

    @_async_namespace_errors
    async def asearch(
        self, namespace_prefix: tuple[str, ...], /, **options: Any
    ) -> list[SearchItem]:
        """LangGraph's asearch."""
        prefix = _namespace(namespace_prefix, "namespace_prefix")
        return await super().asearch(prefix, **options)

    @_namespace_errors
    def get(
        self,
        namespace: tuple[str, ...],
        key: str,
        *,
        refresh_ttl: bool | None = None,
        as_of: Any = None,
    ) -> Item | None:
        """LangGraph's get; with ``keep_past=True``, ``as_of`` (an aware datetime or ISO-8601
        text) reads the item as it was then."""
        _namespace(namespace, "namespace")
        if as_of is None:
            return super().get(namespace, key, refresh_ttl=refresh_ttl)
        found = list(
            self.items.rows({"key": _item_key(tuple(namespace), key)}, limit=1, as_of=as_of)
        )
        if not found:
            return None
        return Item(**_item_fields(found[0].record, found[0].created_at, found[0].updated_at))

    @_namespace_errors
    def search(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
        as_of: Any = None,
    ) -> list[SearchItem]:
        """LangGraph's search; with ``keep_past=True``, ``as_of`` searches the items as they
        were then (ranked as now: BM25, or similarity with ``index``)."""
        _namespace(namespace_prefix, "namespace_prefix")
        if as_of is None:
            return super().search(
                namespace_prefix,
                query=query,
                filter=filter,
                limit=limit,
                offset=offset,
                refresh_ttl=refresh_ttl,
            )
        op = SearchOp(tuple(namespace_prefix), filter, limit, offset, query, refresh_ttl=False)
        with self.store.transaction(immediate=False):
            return self._search(op, {}, as_of)

    def _embed(self, puts: Sequence[PutOp]) -> dict[str, Any]:
        """Each put item's vectors by part (its fields' texts), embedded in one call; an item
        put with index=False, or with no text at its fields, gets none ({})."""
        if self.index_config is None or self.embeddings is None:
            return _NO_PARTS
        texts: list[tuple[str, str, str]] = []  # (item key, part, text)
        parts: dict[str, Any] = {}
        for op in puts:
            if op.value is None:
                continue
            key = _item_key(op.namespace, op.key)
            parts[key] = {}
            if op.index is False:
                continue
            paths = (
                self.index_config["__tokenized_fields"]
                if op.index is None
                else [_text_path(p) for p in _sequence(op.index, "index")]
            )
            for path, tokens in paths:
                found = get_text_at_path(op.value, tokens)
                for i, text in enumerate(found):
                    texts.append((key, f"{path}.{i}" if len(found) > 1 else path, text))
        if texts:
            vectors = self.embeddings.embed_documents([text for _, _, text in texts])
            if len(vectors) != len(texts):
                raise memstore.ValidationError(
                    f"embed returned {len(vectors)} vectors for {len(texts)} texts"
                )
            for (key, part, _), vector in zip(texts, vectors, strict=True):
                parts[key][part] = vector
        return parts

    def _refreshes(self, op: GetOp | SearchOp) -> bool:
        if op.refresh_ttl is False:
            return False
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    def _refresh(self, ttls: Mapping[str, float]) -> None:
        """Push back the expiry of items read (those with a TTL): refresh_on_read."""
        by_ttl: dict[float, list[str]] = {}
        for key, minutes in ttls.items():
            by_ttl.setdefault(minutes, []).append(key)
        for minutes, keys in by_ttl.items():
            self.items.touch(keys, ttl=minutes * 60)


# What _embed returns without an index: no item's vectors are touched.
_NO_PARTS: dict[str, Any] = {}


def _text_path(path: Any) -> tuple[str, Any]:
    """A field of LangGraph's index config: its name and what get_text_at_path takes."""
    if not isinstance(path, str) or not path:
        raise memstore.ValidationError(f"an index field is a path string, not {path!r:.60}")
    return path, path if path == "$" else tokenize_path(path)


def _note_ttl(refresh: dict[str, float], key: str, record: Mapping[str, Any]) -> None:
    """Remember an item read whose TTL (minutes, a positive number) refresh_on_read renews."""
    ttl = record.get("ttl")
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < math.inf:
        refresh[key] = float(ttl)


def _ops(ops: Any) -> list[Op]:
    """A batch's operations as a list; what is not a list of them, a memstore error."""
    if type(ops) is list:  # BaseStore's methods' (no ABC's isinstance on every call)
        return ops
    if isinstance(ops, (str, bytes, Mapping)) or not isinstance(ops, Iterable):
        raise memstore.ValidationError(f"ops must be a list of operations, not {ops!r:.60}")
    return list(ops)


def _namespace(namespace: Any, name: str) -> tuple[str, ...]:
    """A namespace argument as a tuple; None, a str (whose letters a tuple() would make
    labels) or anything else that is no sequence of labels, a NamespaceError. The labels
    themselves are LangGraph's to check."""
    if type(namespace) is tuple:
        return namespace
    if not isinstance(namespace, (tuple, list)):
        raise NamespaceError(f"{name} must be a tuple of str labels, not {namespace!r:.60}")
    return tuple(namespace)


def _item_key(namespace: Sequence[str], key: str) -> str:
    """The memstore key of an item: its namespace and key, unambiguous whatever they hold."""
    if not isinstance(key, str):
        raise memstore.ValidationError(f"a store key must be a str, not {type(key).__name__}")
    return _KEY_ENCODER.encode([*namespace, key])


def _item_fields(record: dict[str, Any], created_at: str, updated_at: str) -> dict[str, Any]:
    """What LangGraph's Item is made of, from an item's record and memstore's timestamps."""
    return {
        "namespace": tuple(record["namespace"].split(".")),
        "key": record["key"],
        "value": record["value"],
        "created_at": _datetime(created_at),
        "updated_at": _datetime(updated_at),
    }


def _datetime(stamp: str) -> datetime:
    """memstore's ISO-8601 UTC text (nanosecond digits) as an aware datetime."""
    return datetime.fromisoformat(stamp[:26]).replace(tzinfo=UTC)


def _check_put(op: PutOp) -> None:
    if not op.namespace:
        raise NamespaceError("a namespace cannot be empty")
    # A namespace starting with "langgraph" is LangGraph's own: put() refuses it, batch()
    # takes it, as in LangGraph's stores.
    if op.value is not None and not isinstance(op.value, Mapping):
        raise memstore.ValidationError(f"a store value must be a dict, not {op.value!r:.60}")


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise memstore.ValidationError(f"{name} must be a whole number >= 0, not {value!r}")


def _namespace_filter(prefix: Sequence[str]) -> dict[str, Any]:
    """Namespaces equal to ``prefix`` or under it, by whole labels: one index range.

    Labels hold no ".", so "a.b" and everything from "a.b." up to (not
    including) "a.b/" ("/" follows "." in code point order) is the subtree.
    """
    if not prefix:
        return {}
    joined = ".".join(prefix)
    after, before = _below(joined)
    return {"$or": [{"namespace": joined}, {"namespace": {"$gt": after, "$lt": before}}]}


def _below(joined: str) -> tuple[str, str]:
    """The bounds, both excluded, of the namespaces below ``joined``: see _namespace_filter."""
    return joined + ".", joined + "/"


def _value_filter(filter: Mapping[str, Any], path: str = "value") -> dict[str, Any]:
    """LangGraph's filter as memstore's ``where`` on the item's value.

    A dotted key is a path into nested objects; a dict of ``$`` operators
    compares; a dict without them matches the nested keys it names.
    """
    conditions: list[dict[str, Any]] = []
    for key, wanted in filter.items():
        if not isinstance(key, str) or not key:
            raise memstore.ValidationError(f"filter keys must be non-empty strings, not {key!r}")
        field = f"{path}.{key}"
        if isinstance(wanted, Mapping) and wanted and all(str(k).startswith("$") for k in wanted):
            unknown = set(wanted) - set(_FILTER_OPERATORS)
            if unknown:
                raise memstore.QueryError(
                    f"unknown filter operator {sorted(unknown)}; use {', '.join(_FILTER_OPERATORS)}"
                )
            conditions.append({field: dict(wanted)})
        elif isinstance(wanted, Mapping) and wanted:
            conditions.append(_value_filter(wanted, field))
        else:
            conditions.append({field: {"$eq": wanted}})
    return {"$and": conditions} if conditions else {}


_FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    labels = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, labels, strict=True)) if path else True
