"""memstore: durable memory for AI agents in one SQLite file.

    import memstore

    with memstore.Store("agent.db") as store:
        events = store.collection("events", fields={"kind": str}, fts=["summary"])
        key = events.add({"kind": "error", "summary": "tool timeout"})
        hits = events.search("timeout", where={"kind": "error"})

A `Store` is one SQLite file opened through apsw in WAL mode. Each collection
is a table of its own: the record is a JSON TEXT column, declared fields are
generated columns with indexes, FTS5 gives full-text search. The file stays
readable and writable by stock SQLite 3.40 and every tool built on it. Given a
PostgreSQL URL instead, a Store keeps its collections in that database, behind
one small engine class (section 3b); the other layers are SQLite's for now.

This module is the library and only the library. What connects memstore to
the rest of the world lives in modules of its own, each in a folder named for
what it is: the ``memstore`` command (cli/memstore_cli), the demo store
(demo/memstore_demo), the importer of older stores' files
(legacy/memstore_legacy), the framework adapters (adapters/) and the
Datasette explorer (plugins/memstore_datasette, the only module Datasette's
``--plugins-dir plugins`` loads). ``import memstore`` loads none of them.

The module reads top to bottom:

1. Constants, then exceptions (one family under MemstoreError).
2. Connection setup: one small function per pragma, with its reason.
3. Schema migrations: the sql/ files, applied by PRAGMA user_version.
3b. Engines: what differs between SQLite and PostgreSQL, a class each.
4. Store: opening, transactions, collections, check/repair, backup/restore,
   export/import, and maintenance (cleanup of every layer, optimize,
   vacuum, checkpoint_wal, stats).
5. Vector memory: the in-memory index (which decides how each query is
   answered), and Collection's vector methods beside it (_CollectionVectors).
6. Collection: records, queries, search, aggregates, retention, history.
7. Full-text search: one query shape and one runner for every FTS5 index.
8. Agent memory, part 1: EventLog and Conversations.
9. Agent memory, part 2: Checkpoints, Graph and Cache.
10. Operations: the export format, backup helpers, Tenants.
11. AsyncStore: the same API for asyncio, carried to a worker thread.
12. Collection tables: the DDL written for each collection.
13. Query compilation: filters as data, operators as a table.
14. Helpers for tools reading the file with their own SQL (public).
15. Private helpers: validation, timestamps, JSON, keys.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import decimal
import functools
import json
import math
import operator
import os
import re
import struct
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice, zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, cast

import apsw

__version__ = "0.1.0"

__all__ = [
    "APPLICATION_ID",
    "CIPHER",
    "COMPRESS_ABOVE",
    "FTS_BATCH",
    "HISTORY_RANGES_SQL",
    "INDEX_PENDING_MESSAGES_SQL",
    "PENDING_MESSAGES_SQL",
    "SCHEMA_VERSION",
    "SQL_NOW",
    "Adapter",
    "AsyncHandle",
    "AsyncStore",
    "BusyError",
    "Cache",
    "Checkpoint",
    "Checkpoints",
    "Collection",
    "ConflictError",
    "Conversations",
    "DependencyError",
    "Edge",
    "EncryptionError",
    "Event",
    "EventLog",
    "Graph",
    "Hit",
    "HybridHit",
    "Key",
    "MemstoreError",
    "Message",
    "Neighbor",
    "Node",
    "NotFoundError",
    "QueryError",
    "QuotaError",
    "Remembered",
    "Row",
    "SchemaError",
    "StorageFullError",
    "Store",
    "StorePool",
    "Tenants",
    "Thread",
    "UnknownFieldWarning",
    "UnsupportedError",
    "ValidationError",
    "Version",
    "__version__",
    "check_collection_name",
    "copy",
    "decrypt",
    "encrypt",
    "field_column",
    "fts_table",
    "fts_words",
    "history_clause",
    "index_pending",
    "live_clause",
    "looks_encrypted",
    "migrate",
    "new_key",
    "parse_duration",
    "quote_identifier",
    "recall_score",
    "rekey",
    "state_diff",
    "without_password",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: Written to the file header (PRAGMA application_id) so tools can tell a
#: memstore file from any other SQLite file: "MEMS" in ASCII.
APPLICATION_ID = 0x4D454D53
#: PostgreSQL's advisory lock (transaction-level) that ``transaction(exclusive=True)``
#: blocks take in turn; APPLICATION_ID itself is the migrations', + 1 declarations'.
WRITERS_LOCK = APPLICATION_ID + 2

#: How far ahead of this client's clock (seconds) a fact may have begun for a change of it
#: "now" to wait until it has (Collection._moment); further, the change is refused.
CLOCK_WAIT = 0.05

#: The versioned schema files, applied in order by PRAGMA user_version.
SQL_DIR = Path(__file__).resolve().parent / "sql"

#: Every table memstore keeps for itself starts with this.
INTERNAL_PREFIX = "_memstore_"

MAX_KEY_LENGTH = 1024
MAX_NAME_LENGTH = 64

#: The largest whole number SQLite stores (a signed 64-bit integer).
INT64_MAX = 2**63 - 1

#: A temporal record's validity without a bound: from the first instant memstore's
#: timestamps can say, to the last (so that "valid at t" is two comparisons).
NEVER_BEFORE = "0001-01-01T00:00:00.000000Z"
NEVER_AFTER = "9999-12-31T23:59:59.999999Z"

#: The longest duration (ttl, older_than) memstore takes: a thousand years, so
#: that now plus or minus it is still a timestamp (years 1 to 9999).
MAX_DURATION = timedelta(days=365_250)

#: Filters nest at most this deep and hold at most this many conditions:
#: SQLite's own limit on an expression's depth is 1000.
MAX_FILTER_DEPTH = 32
MAX_FILTER_TERMS = 500

#: A full-text query is at most this long, and runs for at most
#: ``Store(query_timeout=...)`` seconds.
MAX_SEARCH_LENGTH = 4096

#: The smallest quota (``Store(max_size=...)``): an empty store takes about 352 KiB.
MIN_QUOTA = 2**20

#: A cache's hits and misses are counted in memory and written to the file
#: with the next set(), stats() or close(), or after this many lookups.
CACHE_COUNTS_FLUSH = 100

#: Reads counted with track=True are written to their records after this many
#: distinct records (or at close, or by the next cleanup).
ACCESS_FLUSH_EVERY = 100

#: A put_many of at least this many records runs PRAGMA optimize afterwards.
ANALYZE_AFTER = 10_000

#: Messages are indexed for search in batches (sql/0008): by add_message when
#: this many wait, and before that by any search, check() or optimize(), and
#: by the close() of a Store that added messages.
INDEX_MESSAGES_EVERY = 100

#: Rows per statement batch in bulk writes and per transaction in cleanup.
BATCH_SIZE = 1000

#: put_many batches at least this large keep the FTS index up to date from
#: memstore's own code instead of the per-row triggers (see Collection._bulk_fts).
BULK_THRESHOLD = 64

#: The page cache a bulk put_many works with (KiB; SQLite's default is 2 MiB). With
#: the default, a load of 300,000 records missed the cache 2.4 million times as
#: the indexes outgrew it, and took 45 % longer. Given back when the call ends.
BULK_CACHE_KIB = 65_536

#: How nearest() may compare vectors: cosine similarity, dot product, Euclidean distance.
VECTOR_METRICS = ("cosine", "dot", "l2")

#: The largest vector dimension a collection may declare.
MAX_VECTOR_DIM = 65_536

#: Vectors whose norm is this large (or a query's this small) are compared in
#: float64: float32 sums of their products could overflow, and rows would be lost.
WIDE_ABOVE = 1e18

#: An unfiltered cosine nearest() over more vectors than this scans 1-bit codes
#: of them first and ranks the best VECTOR_CANDIDATES exactly, unless the codes
#: look unreliable for the query (BENCHMARKS.md: recall and speed at a million
#: vectors); below it, and with exact=True, every vector is compared exactly.
QUANTIZE_ABOVE = 250_000
VECTOR_CANDIDATES = 4096

#: A filtered nearest() over more matching vectors than this screens them with
#: an 8-bit copy first, a quarter of the bytes to read, and ranks exactly every
#: vector the screen cannot rule out: the result is exact.
SCREEN_ABOVE = 2048

#: memstore trims a collection's vector change log (sql/0011) to this many
#: entries; a process further behind loads the collection's vectors again.
VECTOR_LOG_KEEP = 10_000

#: The constant of reciprocal-rank fusion (Cormack et al., 2009): a hit ranked r
#: in one list scores 1 / (RRF_K + r).
RRF_K = 60

#: Columns every collection table has besides its declared fields. The four
#: in META_COLUMNS can be filtered and sorted on by name.
META_COLUMNS = ("key", "created_at", "updated_at", "expires_at")
RESERVED_COLUMNS = frozenset(
    {"id", "body", "rowid", "oid", "_rowid_", "rank", "valid_from", "valid_to", "fact_of"}
    | {"fts_document"}  # a collection's full-text document on PostgreSQL
    | {"pinned", "forgotten_at", "access_count", "last_accessed", "content_hash", "merged_into"}
    | set(META_COLUMNS)
)
#: What memory hygiene adds to a collection's table (hygiene=...).
_HYGIENE_COLUMNS = {
    "pinned": "INTEGER NOT NULL DEFAULT 0",
    "forgotten_at": "TEXT",
    "access_count": "INTEGER NOT NULL DEFAULT 0",
    "last_accessed": "TEXT",
    "content_hash": "TEXT",
    "merged_into": "TEXT",
}
#: Hygiene's dedup policies: what a write of content already stored does.
DEDUP_POLICIES = ("skip", "merge", "keep")
#: A temporal collection's columns for a record's validity, which filters and orders name.
_VALIDITY_COLUMNS = ("valid_from", "valid_to")

#: Declared field types: name -> (column type, Python types a value may have).
FIELD_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "text": ("TEXT", (str,)),
    "integer": ("INTEGER", (int,)),
    "real": ("REAL", (int, float)),
    "boolean": ("INTEGER", (bool,)),
}
# The types a field's value usually has, checked first because it is cheap.
_EXACT_TYPES: dict[str, frozenset[type]] = {
    "text": frozenset({str}),
    "integer": frozenset(),  # every int is checked against SQLite's 64-bit range
    "real": frozenset({int, float}),
    "boolean": frozenset({bool}),
}
_PYTHON_FIELD_TYPES: dict[type, str] = {
    str: "text",
    int: "integer",
    float: "real",
    bool: "boolean",
}

# SQLite's own format for the same timestamps, used as column defaults so rows
# written by other tools get them too: milliseconds (all SQLite 3.40 has),
# written with six fractional digits. _iso writes Python's times the same way.
_SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')"

_COLLECTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING: Any = object()


# --------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------


class MemstoreError(Exception):
    """Base class of every error memstore raises."""


class SchemaError(MemstoreError):
    """The file's schema cannot be used: too new, not memstore's, or a conflicting declaration."""


class NotFoundError(MemstoreError, KeyError):
    """No record with that key, no such collection, or no store file at that path."""

    def __str__(self) -> str:  # KeyError would repr() its message
        return str(self.args[0]) if self.args else ""


class ValidationError(MemstoreError, ValueError):
    """A value, key, name or record that memstore refuses to store; nothing was written."""


class QueryError(MemstoreError, ValueError):
    """A filter, ordering or full-text query that cannot be run."""


class ConflictError(MemstoreError):
    """The write contradicts what is stored: a duplicate id, a closed thread, live branches."""


class BusyError(MemstoreError):
    """The database stayed locked by another connection for longer than the timeout."""


class StorageFullError(MemstoreError):
    """The disk, or the file's size limit, is full; the transaction was rolled back."""


class QuotaError(StorageFullError):
    """The store reached its size quota (``max_size``); the transaction was rolled back."""


class DependencyError(MemstoreError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


class UnsupportedError(MemstoreError):
    """This store's engine cannot do that; the message says what to use instead."""


class EncryptionError(MemstoreError):
    """An encrypted file's key is missing or wrong, or this apsw cannot encrypt."""


class UnknownFieldWarning(UserWarning):
    """A query names a field no record of the collection has (a typo?); see Collection.query."""


class _RolledBack(Exception):
    """Raised inside a transaction to roll it back on purpose (a dry run)."""


# Driver errors mapped to memstore's own, in order: the first match wins.
_TRANSLATIONS: tuple[tuple[type[BaseException], type[MemstoreError]], ...] = (
    (apsw.BusyError, BusyError),
    (apsw.NotADBError, SchemaError),
    (apsw.LockedError, BusyError),
    (apsw.ConstraintError, ValidationError),
    (apsw.FullError, StorageFullError),
    (apsw.TooBigError, ValidationError),
    (UnicodeEncodeError, ValidationError),
    # apsw refuses to bind a value of another type (a tuple for an id, say),
    # and an int beyond 64 bits: the caller's mistake, caught before any write.
    (TypeError, ValidationError),
    (OverflowError, ValidationError),
)


# What a statement can raise that is translated into memstore's own errors.
_DRIVER_ERRORS = (apsw.Error, UnicodeEncodeError, TypeError, OverflowError)


def _translate(err: BaseException) -> MemstoreError:
    for source, target in _TRANSLATIONS:
        if isinstance(err, source):
            return target(f"{type(err).__name__}: {err}")
    return MemstoreError(f"{type(err).__name__}: {err}")


# --------------------------------------------------------------------------
# Connection setup: one small function per concern, applied to every
# connection memstore opens (never apsw.bestpractice, which is process-global).
# --------------------------------------------------------------------------


def _set_busy_timeout(conn: apsw.Connection, seconds: float) -> None:
    """Wait for other writers instead of failing at once with SQLITE_BUSY."""
    conn.set_busy_timeout(int(seconds * 1000))


def _use_wal(conn: apsw.Connection, timeout: float) -> None:
    """Readers never block the writer, nor the writer readers. Switching a new file to
    WAL takes it alone, and SQLite's busy handler may not wait for that: another
    connection switching it, or reading it meanwhile, gives SQLITE_BUSY at once (1 in 60
    runs of 32 connections opening a new file together). So it is tried again, until
    the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _set_synchronous(conn: apsw.Connection, level: str) -> None:
    """NORMAL survives process crashes; FULL also survives power loss, at a cost per commit."""
    conn.execute(f"PRAGMA synchronous = {level}")


def _enable_foreign_keys(conn: apsw.Connection) -> None:
    """Memory layers link tables with foreign keys; SQLite ignores them unless told."""
    conn.execute("PRAGMA foreign_keys = ON")


def _refuse_double_quoted_strings(conn: apsw.Connection) -> None:
    """A mistyped identifier in double quotes must be an error, not a string literal."""
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)


def _set_quota(conn: apsw.Connection, max_size: int) -> None:
    """A size limit SQLite itself enforces: past it, writes fail with SQLITE_FULL. The WAL
    is not part of the database's pages, so it is kept small too: checkpointed every
    eighth of the quota and truncated back to a quarter of it."""
    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    assert isinstance(page_size, int)
    pages = min(max_size // page_size, 4_294_967_294)  # SQLite's largest page count
    conn.execute(f"PRAGMA max_page_count = {pages}").fetchall()
    conn.execute(f"PRAGMA journal_size_limit = {max_size // 4}").fetchall()
    conn.wal_autocheckpoint(min(max(16, pages // 8), 1000))  # 1000 pages: SQLite's default


def _refresh_statistics(conn: apsw.Connection, timeout: float) -> None:
    """Give the query planner statistics from the start, not only after close(): analyze
    the tables that need it (as apsw's best practice does), from a bounded sample. A file
    another writer holds skips it rather than wait."""
    conn.execute("PRAGMA analysis_limit = 1000").fetchall()
    _set_busy_timeout(conn, 0)
    try:
        with contextlib.suppress(apsw.BusyError, apsw.LockedError):
            conn.execute("PRAGMA optimize(0x10002)").fetchall()
    finally:
        _set_busy_timeout(conn, timeout)


def _register_functions(conn: apsw.Connection) -> None:
    """Functions memstore's queries (never its schema) use: other tools lack them."""
    conn.create_aggregate_function(
        "_memstore_quantiles", lambda: cast("apsw.AggregateClass", _Quantiles()), 2
    )
    conn.create_scalar_function("_memstore_inflate", _inflate, 1, deterministic=True)
    conn.register_fts5_function("_memstore_fts_stats", _fts_stats_function)
    conn.register_fts5_function("_memstore_bm25", _bm25_function)


# --------------------------------------------------------------------------
# Encryption at rest: SQLite3 Multiple Ciphers, when apsw is apsw-sqlite3mc's build
# --------------------------------------------------------------------------

#: The cipher of the files memstore encrypts: SQLite3 Multiple Ciphers' own default
#: (ChaCha20-Poly1305), named so that a later default cannot change what a file needs.
CIPHER = "chacha20"

#: How to get the apsw that encrypts: its files take the place of apsw's (the same
#: package, built with SQLite3 Multiple Ciphers), which an extra cannot ask pip for.
_CIPHERS_INSTALL = "pip install --force-reinstall --no-deps 'apsw-sqlite3mc>=3.47'"

_SQLITE_HEADER = b"SQLite format 3\x00"


class Key:
    """An encrypted store's key: a passphrase (str) or bytes, never shown.

    >>> store = memstore.Store("agent.db", key=memstore.Key.from_env("MEMSTORE_KEY"))

    ``Store(path, key=...)`` takes a str or bytes too; either way memstore
    keeps it in a Key, whose repr hides it, and puts it in no message, log
    or argument list. A str is the UTF-8 passphrase; bytes are the
    passphrase's bytes (SQLite3 Multiple Ciphers derives the cipher's key
    from either).
    """

    __slots__ = ("_secret",)
    _secret: str | bytes

    def __init__(self, secret: str | bytes | Key) -> None:
        if isinstance(secret, Key):
            secret = secret._secret
        if isinstance(secret, (bytearray, memoryview)):
            secret = bytes(secret)
        if not isinstance(secret, (str, bytes)):
            raise ValidationError(f"a key is a str or bytes, not {type(secret).__name__}")
        if not secret:
            raise ValidationError("a key cannot be empty")
        if isinstance(secret, str) and ("\x00" in secret or not _encodable(secret)):
            raise ValidationError("a str key must be text without NUL characters")
        if len(secret) > 4096:
            raise ValidationError("a key is 4,096 characters (or bytes) at most")
        self._secret = secret

    @classmethod
    def from_env(cls, name: str = "MEMSTORE_KEY") -> Key:
        """The key held by the environment variable ``name``."""
        value = os.environ.get(name)
        if not value:
            raise EncryptionError(f"${name} is not set: set it to the store's key")
        return cls(value)

    def __repr__(self) -> str:
        return "Key(<hidden>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return self._pragma() == other._pragma()  # the same key for SQLite3 Multiple Ciphers

    __hash__ = None  # type: ignore[assignment]

    def _pragma(self) -> tuple[str, str]:
        """The PRAGMA that sets this key, and its value."""
        if isinstance(self._secret, bytes):
            return "hexkey", self._secret.hex()
        return "key", self._secret

    def _uri(self) -> str:
        """This key as URI parameters (VACUUM INTO an encrypted file)."""
        name, value = self._pragma()
        return f"cipher={CIPHER}&{name}={urllib.parse.quote(value, safe='')}"


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _as_key(key: str | bytes | Key | None) -> Key | None:
    return None if key is None else Key(key)


def _require_ciphers() -> None:
    """Refuse encryption with an apsw that has no ciphers, saying how to get one."""
    if not getattr(apsw, "mc_version", None):
        raise EncryptionError(
            "encryption needs apsw built with SQLite3 Multiple Ciphers (apsw-sqlite3mc) in "
            f"place of apsw: {_CIPHERS_INSTALL}"
        )


def _apply_key(conn: apsw.Connection, key: Key | None) -> None:
    """An encrypted file is read with its key, set before anything reads the file."""
    if key is None:
        return
    _require_ciphers()
    name, value = key._pragma()
    conn.pragma("cipher", CIPHER)
    conn.pragma(name, value)


#: SQLite's page cache of an encrypted store, in KiB (SQLite's default: 2,000), filled as
#: pages are read: see _cache_decrypted_pages.
_ENCRYPTED_CACHE_KIB = 32768


def _cache_decrypted_pages(conn: apsw.Connection) -> None:
    """An encrypted file's pages are decrypted each time SQLite reads them from the file,
    and the OS's cache of the file cannot spare that: keep more of them decrypted in
    SQLite's own cache (an indexed query reading 19 MB of pages in random order: 11.5 ms
    with the default cache, 3.0 with 16 MiB, as on a plain file)."""
    conn.execute(f"PRAGMA cache_size = {-_ENCRYPTED_CACHE_KIB}")


def _encrypted_look(path: str) -> bool | None:
    """Whether a file looks encrypted: whole pages without SQLite's header (a file of
    another kind is seldom that); None when it is empty or absent."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return None
    if not head:
        return None
    return head != _SQLITE_HEADER and size >= 512 and size % 512 == 0


def looks_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` looks like an encrypted store: whole pages without
    SQLite's header (False for a plain SQLite file, an empty or absent one)."""
    return bool(_encrypted_look(_file_path(path)))


def _file_path(value: Any, what: str = "path") -> str:
    """A file's path (or a store's PostgreSQL URL) given by the caller, as a str;
    ValidationError if it is none."""
    try:
        path = os.fspath(value)
    except TypeError:
        raise ValidationError(f"{what} must be a file's path, not {type(value).__name__}") from None
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValidationError(f"{what} must be a file's path (text, no NUL), not {path!r:.60}")
    return path


def _vacuum_into(conn: apsw.Connection, target: str, key: Key | None, plain: bool) -> None:
    """VACUUM INTO ``target``: encrypted with ``key``, plain if ``plain``, else as the
    source is (SQLite3 Multiple Ciphers gives the copy the source's key). The
    connection must take URI file names (_connect's do)."""
    if key is None and not plain:
        conn.execute("VACUUM INTO ?", (_sqlite_name(target),))  # a path, never a URI
        return
    _require_ciphers()
    query = key._uri() if key is not None else "key="
    uri = f"file:{urllib.parse.quote(os.path.abspath(target))}?{query}"
    try:
        conn.execute("VACUUM INTO ?", (uri,))
    except apsw.Error as err:  # SQLite's message may hold the URI, and so the key: not shown
        message = str(err).replace(uri, target)
        if key is not None:
            message = message.replace(key._pragma()[1], "***")
        raise _translate(type(err)(message)) from None


def _sqlite_name(path: str) -> str:
    """The name apsw opens a file by: absolute, so that with URI names enabled (for
    VACUUM INTO an encrypted copy) a path never reads as a URI."""
    return path if path == ":memory:" else os.path.abspath(path)


def _connect(
    path: str,
    *,
    synchronous: str,
    timeout: float,
    create: bool = True,
    key: Key | None = None,
) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if not create and path != ":memory:" and not os.path.exists(path):
        raise NotFoundError(f"no store at {path}: check the path (nothing was created)")
    try:
        conn = apsw.Connection(_sqlite_name(path), flags=flags | apsw.SQLITE_OPEN_URI)
    except apsw.Error as err:
        raise _open_error(path, err) from err
    try:
        _apply_key(conn, key)
        _set_busy_timeout(conn, timeout)  # before any statement that reads the file
        if key is not None:
            _cache_decrypted_pages(conn)
        _refuse_double_quoted_strings(conn)
        _refuse_foreign_files(conn)
        if path != ":memory:":
            _use_wal(conn, timeout)
        _set_synchronous(conn, synchronous)
        _enable_foreign_keys(conn)
        _register_functions(conn)
    except BaseException as err:
        conn.close()
        if isinstance(err, apsw.Error):
            raise _open_error(path, err, key) from err
        raise
    return conn


def _open_error(path: str, err: apsw.Error, key: Key | None = None) -> MemstoreError:
    """An error opening a file, naming the file and saying what to do."""
    if isinstance(err, apsw.NotADBError) and key is not None:
        if _encrypted_look(path) is False:
            return EncryptionError(
                f"{path} is not encrypted: open it without a key, or encrypt it first "
                "(memstore.encrypt, or `memstore encrypt`)"
            )
        return EncryptionError(f"wrong key for {path} (or it is not a memstore file)")
    if isinstance(err, apsw.NotADBError) and _encrypted_look(path):
        return EncryptionError(
            f"{path} is encrypted (or is not a SQLite file): open it with its key (key=, "
            "or $MEMSTORE_KEY for the memstore command)"
        )
    if isinstance(err, apsw.NotADBError):
        return SchemaError(
            f"{path} is not a SQLite database: give the path of a memstore file, or a new "
            "path to create one"
        )
    if isinstance(err, apsw.CantOpenError):
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            why = "it is a directory; give a file's path"
        elif not os.path.isdir(folder):
            why = f"the directory {folder} does not exist; create it first"
        else:
            why = "permission denied, or not a regular file; check the path and its permissions"
        return MemstoreError(f"cannot open {path}: {why}")
    if isinstance(err, apsw.ReadOnlyError):
        return MemstoreError(f"cannot write to {path}: it (or its directory) is read-only")
    return _translate(err)


def _refuse_foreign_files(conn: apsw.Connection) -> None:
    """Another application's file, or a newer memstore's, is refused before anything
    (WAL mode included) changes it: it is left byte for byte as it was."""
    # One statement, one snapshot: read apart, a file another process is creating could
    # show its application id from before its first version and a user_version from after.
    app_id, version = conn.execute(
        "SELECT * FROM pragma_application_id(), pragma_user_version()"
    ).fetchall()[0]
    assert isinstance(app_id, int) and isinstance(version, int)
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        raise SchemaError(
            f"not a memstore file (application_id {app_id:#x}, user_version {version}); "
            "it was left as it was"
        )
    _check_schema_version(version)


# --------------------------------------------------------------------------
# Schema migrations: sql/NNNN_name.sql, each applied with its user_version
# bump in one transaction; a file newer than this code is refused.
# --------------------------------------------------------------------------


def _migrations(directory: Path = SQL_DIR) -> list[tuple[int, Path]]:
    """An engine's chain of schema files: numbered without gaps, up to SCHEMA_VERSION. The
    SQLite chain starts at 1; PostgreSQL's at the version memstore first ran on it."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"(\d+)_", path.name)
        if match:
            found.append((int(match.group(1)), path))
    versions = [version for version, _ in found]
    if not found or versions != list(range(versions[0], versions[0] + len(found))):
        raise SchemaError(f"schema files in {directory} are not numbered without gaps")
    return found


SCHEMA_VERSION = _migrations(SQL_DIR)[-1][0]


def _migrate(engine: _Engine, conn: Any) -> None:
    """Bring a database up to SCHEMA_VERSION along its engine's chain: each file with its
    version record in one transaction, under a lock that makes other processes wait."""
    for version, path in engine.migrations():
        if engine.schema_version(conn) >= version:
            continue
        engine.begin_migration(conn)
        try:
            # Another process may have migrated while we waited for the lock.
            current = engine.schema_version(conn)
            if current < version:
                engine.claim(conn, current)
                engine.run_script(conn, path.read_text(encoding="utf-8"))
                engine.upgrade(conn, version)
                engine.set_schema_version(conn, version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    engine.check_schema(conn)


def _upgrade_collection_triggers(conn: apsw.Connection) -> None:
    """Version 7: history triggers that number versions, and triggers keeping updated_at
    and the default TTL for other tools' writes, on the collections that exist already
    (new ones get them when created); thread counts made right once."""
    rows = conn.execute(
        "SELECT name, history, ttl_seconds, fts FROM _memstore_collections"
    ).fetchall()
    for name, history, ttl_seconds, fts in rows:
        assert isinstance(name, str) and isinstance(fts, str)
        columns = [field_column(path) for path in json.loads(fts)]
        if columns:  # FTS update triggers fire on body updates only
            conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(_fts_trigger(name, 'update'))}")
            conn.execute(_fts_trigger_sql(name, columns)["update"])
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(_touch_trigger(name))}")
        conn.execute(_touch_trigger_sql(name))
        if ttl_seconds is not None:
            conn.execute(_ttl_trigger_sql(name))
        if history:
            for sql in [*_history_trigger_sql(name, drop=True), *_history_trigger_sql(name)]:
                conn.execute(sql)
    for (thread_id,) in conn.execute("SELECT id FROM memstore_threads").fetchall():
        _recount_thread(_fetcher(conn), thread_id)


#: Steps in Python that a schema version needs besides its SQL file, run in the
#: same transaction: what SQL alone cannot do for every collection.
def _upgrade_batched_fts(conn: apsw.Connection) -> None:
    """Schema 13: each collection's full-text index is complete up to its newest row, and
    its triggers cover the rows up to that mark only (new rows then wait for a batch)."""
    for name, fts in conn.execute("SELECT name, fts FROM _memstore_collections").fetchall():
        assert isinstance(name, str) and isinstance(fts, str)
        columns = [field_column(path) for path in json.loads(fts)]
        if not columns:
            continue
        conn.execute(_fts_progress_sql(name))
        for event, sql in _fts_trigger_sql(name, columns).items():
            conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(_fts_trigger(name, event))}")
            conn.execute(sql)


# CHECK constraints whose IN list of three or more values SQLite tests through a temporary
# b-tree, built for every row written (a fifth of the instructions of an append of two
# messages), and the same constraint as comparisons, which it tests in place.
_CHECKS_WITHOUT_LISTS = {
    "memstore_messages": (
        "CHECK (role IN ('system', 'user', 'assistant', 'tool'))",
        "CHECK (role = 'system' OR role = 'user' OR role = 'assistant' OR role = 'tool')",
    ),
    "memstore_threads": (
        "CHECK (status IN ('active', 'merged', 'abandoned'))",
        "CHECK (status = 'active' OR status = 'merged' OR status = 'abandoned')",
    ),
}


def _upgrade_schema_13(conn: apsw.Connection) -> None:
    """Schema 13: batched full-text indexing of collections, and CHECK constraints that
    need no temporary b-tree. A CHECK is rewritten in place, as SQLite documents for
    changes that leave what is stored as it is (lang_altertable.html, "making other kinds
    of table schema changes"): the table's text in sqlite_schema, then schema_version."""
    _upgrade_batched_fts(conn)
    version = conn.execute("PRAGMA schema_version").fetchall()[0][0]
    assert isinstance(version, int)
    conn.execute("PRAGMA writable_schema = ON")
    try:
        for table, (listed, compared) in _CHECKS_WITHOUT_LISTS.items():
            conn.execute(
                "UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE type = 'table' "
                "AND name = ?",
                (listed, compared, table),
            )
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


_UPGRADES: dict[int, Callable[[apsw.Connection], None]] = {
    7: _upgrade_collection_triggers,
    13: _upgrade_schema_13,
}


def _claim_file(conn: apsw.Connection) -> None:
    """Mark a new file as memstore's; refuse one another application owns."""
    app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
    if app_id not in (0, APPLICATION_ID):
        raise SchemaError(f"not a memstore file (application_id {app_id:#x})")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


# A statement of the sql/ files that creates or drops an index or a trigger.
_CREATED = re.compile(r"\s*(?:--[^\n]*\n\s*)*CREATE\s+(INDEX|TRIGGER)\s+(\w+)", re.I)
_DROPPED = re.compile(r"\s*(?:--[^\n]*\n\s*)*DROP\s+(?:INDEX|TRIGGER)\s+(\w+)", re.I)


@functools.cache
def _schema_objects(directory: Path = SQL_DIR) -> dict[str, tuple[str, str]]:
    """The indexes and triggers the sql/ files create (or sql/postgres/'s): name -> (kind,
    statement).

    ``check()`` looks for them and ``repair()`` recreates the missing ones.
    """
    found: dict[str, tuple[str, str]] = {}
    for _, path in _migrations(directory):
        for statement in _statements(path.read_text(encoding="utf-8"), directory != SQL_DIR):
            match = _CREATED.match(statement)
            if match:
                found[match.group(2)] = (match.group(1).lower(), statement.strip())
            dropped = _DROPPED.match(statement)
            if dropped:  # a later version's, unless it creates it again
                found.pop(dropped.group(1), None)
    return found


# PostgreSQL's CREATE and DROP of an index or a trigger: at a line's start, to a semicolon
# (none of them holds one; PL/pgSQL bodies elsewhere do, which SQLite's splitter misreads).
_PG_INDEX_OR_TRIGGER = re.compile(r"^(?:CREATE|DROP)\s+(?:INDEX|TRIGGER)\b[^;]*;", re.M | re.I)


def _statements(script: str, postgres: bool) -> Iterator[str]:
    """A migration's statements (on PostgreSQL: those creating or dropping indexes and
    triggers)."""
    if postgres:
        yield from _PG_INDEX_OR_TRIGGER.findall(script)
        return
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if apsw.complete(statement):
            yield statement
            statement = ""


def _check_schema(conn: apsw.Connection, version: int) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
    if app_id != APPLICATION_ID:
        raise SchemaError(f"not a memstore file (application_id {app_id:#x})")
    _check_schema_version(version)


def _check_schema_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"this file has memstore schema version {version}, written by a newer "
            f"memstore; this memstore {__version__} knows versions up to "
            f"{SCHEMA_VERSION}. Upgrade memstore to open it."
        )


# --------------------------------------------------------------------------
# Engines: what differs between SQLite and PostgreSQL, one class each (the
# pattern of peewee's Database subclasses). Everything else is written once.
# --------------------------------------------------------------------------


#: A table of rows bound as parameters (_Engine.tuples): its FROM item, its columns' SQL,
#: its order's, and the parameters.
_Tuples = tuple[str, list[str], str, list[Any]]
#: Up to how many rows SQLite's Adapter.tuples binds as a VALUES list (more: one JSON array).
_TUPLES_AS_VALUES = 64


class _Engine:
    """The dialect boundary: how a Store connects, runs statements, begins transactions,
    translates driver errors and migrates, plus the few SQL spellings that differ. A
    layer's SQL is written once, in the spelling both engines take; where they differ,
    it asks its store's engine (``store._engine``). Where a method or attribute has a
    value here, it is SQLite's, the reference, and _Postgres overrides it."""

    name = ""
    #: Driver errors a statement can raise, translated into memstore's (Store._error).
    errors: tuple[type[BaseException], ...] = ()
    #: ``a IS NOT b``: inequality that holds for NULL and a value.
    differs = "IS NOT"
    #: ``a IS b``: equality that holds for two NULLs.
    same = "IS"
    #: The column type of a time (and of a key) memstore compares and orders as text.
    time_type = "TEXT"
    #: A JSON object of a record's vectors by part, as hex (``v``: memstore_vectors).
    hex_by_part = "json_group_object(v.part, hex(v.vector))"
    #: Whether the database ranks vectors itself (PostgreSQL with pgvector); where it
    #: does not, memstore's in-memory index (_VectorIndex) does.
    pgvector = False

    def nearest(
        self,
        store: Store,
        name: str,
        config: Mapping[str, Any],
        q: Any,
        metric: str,
        k: int,
        among: tuple[str, Sequence[Any]],
        approximate: bool,
    ) -> list[tuple[int, float]] | None:
        """The k best (record id, score) of vector collection ``name`` (a collection, or
        "graph:" and a graph's name) for query ``q``, as _VectorIndex.search gives them,
        ranked by the database; ``among``: a condition on ``v.record_id`` (``v``:
        memstore_vectors) and its parameters. None: rank them in memory."""
        return None

    def vector_index(self, store: Store, name: str, config: Mapping[str, Any] | None) -> None:
        """Give vector collection ``name`` the approximate-search index its declaration
        asks for (``hnsw``), and no other; ``config`` None: none (it is dropped)."""

    def rows_of(self, columns: int) -> str | None:
        """A query of rows of ``columns`` text columns (or nulls) from a parameter a column
        (``rows_params``): many rows in one statement (PostgreSQL); None where a statement
        a row is as fast (SQLite: executemany)."""
        return None

    def rows_params(self, rows: Sequence[Sequence[Any]], columns: int) -> list[str]:
        """The parameters of ``rows_of``'s query: a JSON array of each column's values."""
        return [json.dumps([row[i] for row in rows], ensure_ascii=False) for i in range(columns)]

    def fetch_together(
        self, store: Store, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        """Each statement's rows: run one after the other here; sent together, in one
        round trip, where the engine can (PostgreSQL, in a transaction)."""
        return [store._fetch(sql, params) for sql, params in statements]

    def row_order(self, columns: Sequence[str]) -> str:
        """ORDER BY of a layer table's rows in the order they were written (export)."""
        return "rowid"

    def millisecond_after(self, sql: str) -> str:
        """The timestamp a millisecond after the one ``sql`` gives, as memstore writes them."""
        return f"strftime('%Y-%m-%dT%H:%M:%f000Z', {sql}, '+0.001 seconds')"

    #: Whether text (keys, and strings in records) may hold U+0000.
    holds_nul = True
    #: LIMIT's value for no limit.
    no_limit: int | None = -1
    #: An inner join whose left side is read first (SQLite's CROSS JOIN), where the
    #: planner may lack the statistics to see it should be.
    join_in_order = "CROSS JOIN"
    #: Whether indexes are told to hold NULLs first, as SQLite orders them (_index_sql).
    nulls_first = False

    def open(self, store: Store) -> Any:
        raise NotImplementedError

    def close(self, conn: Any) -> None:
        raise NotImplementedError

    # Statements. Every read and write goes through ``bind``'s two functions: SQLite's are
    # the connection's own methods, with no Python frame between (issue 24: a put's
    # instructions), and the other methods here are apsw's where SQLite's can be.

    def bind(self, conn: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(execute, execute_many) on this connection: ``execute(sql, params)`` runs a
        statement, ``execute_many(sql, rows)`` one per row of parameters; what each returns
        has ``fetchall()``: the rows (RETURNING's), [] for none."""
        raise NotImplementedError

    def cursor(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """An iterator over a statement's rows, closed with ``close()``."""
        raise NotImplementedError

    def idle(self, conn: Any) -> bool:
        """Whether the connection is outside any transaction."""
        raise NotImplementedError

    def lost(self, conn: Any) -> bool:
        """Whether the other end ended the connection (a server's restart or failover, an
        idle connection dropped): the store then connects again (Store._check_connection).
        A file's connection is never lost."""
        return False

    #: How a transaction begins: deferred (reads see one snapshot), then immediate (takes
    #: the write lock at once), indexed by ``immediate``.
    begin: tuple[str, str] = ("BEGIN", "BEGIN IMMEDIATE")

    def start(self, conn: Any, sql: str) -> None:
        """Begin a transaction (``begin``) or a savepoint in one."""
        raise NotImplementedError

    def run_alone(self, conn: Any) -> None:
        """Just begun with ``begin[True]``: make the block wait for, and then keep out,
        every other connection's block that does the same (``transaction(exclusive=True)``).
        SQLite's ``BEGIN IMMEDIATE`` has: its write lock is the file's, one writer at a
        time."""

    def take_turns(self, store: Store, name: str) -> None:
        """Inside a write block: wait until no other connection's block holds ``name``,
        then hold it to the block's end. For memstore's own reads that a write then
        depends on (a thread's latest checkpoint, the record a new one duplicates).
        SQLite's write lock, the file's, has every write block take turns already."""

    #: What makes a SELECT lock the rows it reads until the block ends (so that another
    #: connection's write of them waits): nothing on SQLite, whose writers take turns.
    lock_rows = ""

    def end(self, conn: Any, sql: str) -> None:
        """Commit a transaction, or release a savepoint: raise what failed in it."""
        raise NotImplementedError

    def abort(self, conn: Any, sql: str) -> None:
        """Roll a transaction (or a savepoint) back, if it is still there."""
        raise NotImplementedError

    def translate(self, err: BaseException) -> MemstoreError:
        raise NotImplementedError

    #: Changes other connections may have made to declarations, as the engine counts them.
    declarations = 0

    def data_version(self, store: Store) -> Any:
        """A value that moves on when another connection may have changed a declaration
        (Collection._fresh, on every write): it may move on for other reasons too, never
        stay when one changed."""
        return self.declarations

    def schema_version(self, conn: Any) -> int:
        raise NotImplementedError

    # The migration runner's steps (_migrate), in the order it takes them.

    def migrations(self) -> list[tuple[int, Path]]:
        raise NotImplementedError

    def begin_migration(self, conn: Any) -> None:
        raise NotImplementedError

    def claim(self, conn: Any, current: int) -> None:
        raise NotImplementedError

    def run_script(self, conn: Any, script: str) -> None:
        raise NotImplementedError

    def upgrade(self, conn: Any, version: int) -> None:
        raise NotImplementedError

    def set_schema_version(self, conn: Any, version: int) -> None:
        raise NotImplementedError

    def check_schema(self, conn: Any) -> None:
        raise NotImplementedError

    # Collections: the SQL that differs, for Collection and Store.collection.

    #: Whether a bulk put_many drops the insert triggers while it loads (SQLite's FTS).
    bulk_triggers = True

    @property
    def now(self) -> str:
        """SQL for now, as memstore writes times (ISO-8601 UTC, six fractional digits)."""
        return _SQL_NOW

    @property
    def operators(self) -> _Operators:
        """The filter operators (see _compile_filter)."""
        return _OPERATORS

    def column_type(self, kind: str) -> str:
        """The column type of a declared field of this kind (FIELD_TYPES)."""
        return FIELD_TYPES[kind][0]

    def json_target(self, path: str) -> _Target:
        """A field read from the record's JSON (an undeclared one): ``t.body`` at ``path``."""
        return _Target("json_extract(t.body, ?)", (path,), path)

    def path_exists(self, path: str) -> _Compiled:
        """A condition: the record has ``path`` (JSON null included)."""
        return "json_type(t.body, ?) IS NOT NULL", [path]

    def order(self, target: _Target, descending: bool) -> _Compiled:
        """An ORDER BY term for a target; NULLs (and missing fields) first."""
        return target.sql + (" DESC" if descending else ""), list(target.params)

    #: Whether new rows wait for the full-text index in batches (sql/0013).
    batches_fts = True
    #: Whether each request is a round trip to a server (Adapter.remote).
    remote = False
    #: Whether the full-text index reads its fields from columns of their own (FTS5's
    #: external content), not from the JSON itself (a generated tsvector).
    fts_columns = True

    def fts_sql(self, name: str, paths: list[str]) -> list[str]:
        """A collection's full-text index made again for these paths (columns already there)."""
        return [*_drop_fts_sql(name), *_create_fts_sql(name, [field_column(p) for p in paths])]

    def fts_search(
        self, collection: Collection, clause: str, params: list[Any], text: str, options: Any
    ) -> list[Any]:
        """Rows (key, body, rank, snippet) matching the full-text query ``text`` and the
        filter, best first; ``options`` are (highlight, snippet_tokens, limit, offset)."""
        (opening, closing), tokens, limit, offset = options
        fts = collection._fts_table
        columns = f"{collection._key_sql}, t.body, {fts}.rank, snippet({fts}, -1, ?, ?, '…', ?)"
        sql = _match_sql(fts, collection._table, "t", columns, clause)
        bound = [opening, closing, tokens, text, *params, limit, offset]
        return _search(collection.store, sql, bound, text)

    def known_matches(
        self,
        collection: Collection,
        text: str,
        known: tuple[str, list[Any], list[int]],
        n: int,
        options: tuple[tuple[str, str], int],
    ) -> list[Any]:
        """Collection._known_matches: the best full-text matches among what the store held
        at a time (current rows by a condition, replaced versions by id, negated)."""
        return collection._fts5_known_matches(text, known, n, *options)

    def fts_ranked(
        self, collection: Collection, clause: str, params: list[Any], text: str, limit: int
    ) -> list[Any]:
        """(row id, rank) of the best ``limit`` records matching ``text`` and the filter."""
        fts = collection._fts_table
        sql = _match_sql(fts, collection._table, "t", f"t.id, {fts}.rank", clause)
        return _search(collection.store, sql, [text, *params, limit, 0], text)

    def layer_search(
        self,
        store: Store,
        table: str,
        columns: str,
        where: _Compiled,
        text: str,
        limit: int,
        joins: str = "",
    ) -> list[Any]:
        """A memory layer's full-text search (its index: _LAYER_FTS_OF, the rows as ``t``,
        with ``joins`` after them): rows of ``columns``, then the rank and a snippet, best
        first."""
        fts = _LAYER_FTS_OF[table]
        clause, params = where
        selected = f"{columns}, {fts}.rank, snippet({fts}, -1, '[', ']', '…', 12)"
        sql = _match_sql(fts, table, "t", selected, clause, joins=joins)
        return _search(store, sql, [text, *params, limit, 0], text)

    #: Whether a read of many rows first probes for records with an expiry (and leaves
    #: the test out when there are none): SQLite tests it row by row otherwise.
    probes_expiry = True

    #: Whether every memory layer's tables are here (event logs, conversations,
    #: checkpoints, graphs, caches, versions, vectors): what check and repair go over.
    layers = True

    def integrity_problems(self, store: Store, full: bool) -> list[str]:
        """The database's own check of its pages and indexes (``full``: every one)."""
        pragma = "integrity_check" if full else "quick_check"
        return [f"integrity: {r[0]}" for r in store._fetch(f"PRAGMA {pragma}") if r[0] != "ok"]

    def schema_objects(self) -> dict[str, tuple[str, str]]:
        """The indexes and triggers the migrations create: name -> (kind, statement)."""
        return _schema_objects(SQL_DIR)

    def schema_names(self, store: Store, table: str | None = None) -> set[str]:
        """The names of the tables, indexes and triggers there (of one collection's table,
        with its FTS table, when ``table`` is given)."""
        if table is None:
            return {row[0] for row in store._fetch("SELECT name FROM sqlite_schema")}
        return {
            row[0]
            for row in store._fetch(
                "SELECT name FROM sqlite_schema WHERE tbl_name IN (?, ?)",
                (table, fts_table(table)),
            )
        }

    def touch_trigger_sql(self, table: str, temporal: bool) -> str:
        return _touch_trigger_sql(table, temporal)

    def drop_trigger_sql(self, table: str, trigger: str) -> str:
        return f"DROP TRIGGER IF EXISTS {quote_identifier(trigger)}"

    def vector_history_trigger_sql(self, table: str, *, drop: bool = False) -> list[str]:
        """A temporal collection's triggers keeping the vectors of its versions."""
        return _vector_history_trigger_sql(table, drop=drop)

    def history_trigger_sql(
        self, table: str, *, drop: bool = False, temporal: bool = False
    ) -> list[str]:
        """The triggers archiving a collection's versions (update, delete), or dropping them."""
        return _history_trigger_sql(table, drop=drop, temporal=temporal)

    def sizes(self, store: Store) -> tuple[int, int, int]:
        """(bytes of the database, bytes of its WAL, bytes vacuum would give back)."""
        on_disk = store.path != ":memory:" and os.path.exists(store.path)
        wal = Path(f"{store.path}-wal")
        page_size = int(store._fetch("PRAGMA page_size")[0][0])
        return (
            os.path.getsize(store.path) if on_disk else store._database_bytes(),
            wal.stat().st_size if on_disk and wal.exists() else 0,
            int(store._fetch("PRAGMA freelist_count")[0][0]) * page_size,
        )

    def has_table(self, store: Store, name: str) -> bool:
        """Whether anything of this name (any case) is in the database."""
        return bool(
            store._fetch("SELECT 1 FROM sqlite_schema WHERE name = ? COLLATE NOCASE", (name,))
        )

    def columns(self, store: Store, table: str) -> dict[str, str]:
        """A table's columns and their types (upper case)."""
        return {
            row[1]: (row[2] or "").upper()
            for row in store._fetch(f"PRAGMA table_xinfo({quote_identifier(table)})")
        }

    def insertable(self, store: Store, table: str) -> list[str]:
        """A table's columns a row is written with: not the generated ones."""
        return [row[1] for row in store._fetch(f"PRAGMA table_info({quote_identifier(table)})")]

    def after_copy(self, store: Store, table: str) -> None:
        """After rows were written with their ids (copy): new rows' ids come after them."""

    def optimize(self, store: Store) -> int:
        """Store.optimize: the planner's statistics, and every FTS5 index's segments merged;
        how many such indexes."""
        fts = [
            r[0]
            for r in store._fetch(
                "SELECT name FROM sqlite_schema WHERE type = 'table' "
                "AND sql LIKE 'CREATE VIRTUAL TABLE%USING fts5%' ORDER BY name"
            )
        ]
        with store._transaction():
            _catch_up_messages(store)
            for table in fts:
                quoted = quote_identifier(table)
                store._fetch(f"INSERT INTO {quoted} ({quoted}) VALUES ('optimize')")
        store._fetch("PRAGMA optimize(0x10002)")  # analyze every table that may benefit
        return len(fts)

    def defer_references(self, store: Store) -> None:
        """In a transaction: references between rows are checked at its commit, not at
        each write (copy writes a layer's rows in any order)."""
        store._fetch("PRAGMA defer_foreign_keys = ON")  # until the transaction ends

    def create_table_sql(self, name: str) -> list[str]:
        return _create_table_sql(name)

    def add_column_sql(self, table: str, path: str, kind: str) -> str:
        return _add_column_sql(table, path, self.column_type(kind))

    def ttl_trigger_sql(self, table: str, ttl: bool) -> str:
        """Create (``ttl``) or drop the trigger giving other tools' rows the default TTL."""
        return _ttl_trigger_sql(table) if ttl else _drop_ttl_trigger_sql(table)

    def analyze_sql(self, table: str, index: str) -> str:
        return f"ANALYZE {quote_identifier(index)}"

    def drop_collection_sql(self, name: str) -> list[str]:
        return [*_drop_fts_sql(name), f"DROP TABLE IF EXISTS {quote_identifier(name)}"]

    def check_names(self, meta: _Meta) -> None:
        """Refuse a declaration whose names this engine cannot hold as they are."""

    def lock_declarations(self, store: Store) -> None:
        """In a transaction that changes a declaration, before it reads the registry: wait
        for any other connection's to end. SQLite's BEGIN IMMEDIATE has done it already."""

    def after_bulk(self, store: Store, table: str) -> None:
        """After a large put_many: the planner learns the table's new size."""
        store._fetch("PRAGMA optimize")

    def vector_trigger_sql(self, table: str) -> str:
        """The trigger deleting a record's vectors with it, whichever tool deletes it."""
        return _vector_trigger_sql(table)

    def concat_ids(self, column: str) -> str:
        """An aggregate of integer ids as text, comma-separated (numpy's fromstring reads it)."""
        return f"group_concat({column})"

    def json_array(self, sql: str) -> str:
        """An aggregate of values as the text of a JSON array."""
        return f"json_group_array({sql})"

    #: The columns of a collection with memory hygiene, and their types.
    hygiene_columns: Mapping[str, str] = _HYGIENE_COLUMNS

    def json_entries(self, sql: str) -> str:
        """A table of the (key, value) entries of the JSON object ``sql``, values as text."""
        return f"json_each({sql})"

    def group_terms(self, target: _Target) -> tuple[list[str], list[Any], Callable[..., Any]]:
        """A group of Collection.aggregate: the terms it is grouped and ordered by, their
        parameters, and how its value is read from a row's values of them."""
        return [target.sql], list(target.params), operator.itemgetter(0)

    def summary_terms(self, target: _Target, quantiles: list[float]) -> tuple[list[str], list[Any]]:
        """Collection.aggregate's summary of ``of``: its min, max, sum and avg, then its
        ``quantiles`` (of 0..1) as a JSON list (None where it has no numbers)."""
        terms = [f"{f}({target.sql})" for f in ("min", "max", "sum", "avg")]
        terms.append(f"_memstore_quantiles({target.sql}, ?)")
        return terms, [*target.params * 5, json.dumps(quantiles)]

    def summary_value(self, value: Any) -> Any:
        """A summary's value (summary_terms) as SQLite gives it."""
        return value

    def json_field(self, sql: str, key: str, what: str) -> _Compiled:
        """A field of the JSON object ``sql`` by its key: its ``"type"`` (json_type's names:
        null, true, false, integer, real, text, array, object; NULL when missing), its
        ``"number"`` or its ``"text"`` (json_extract's value, compared with numbers or text)."""
        path = '$."' + key.replace('"', '""') + '"'
        return (f"json_type({sql}, ?)" if what == "type" else f"json_extract({sql}, ?)"), [path]

    def tuples(self, alias: str, width: int, rows: Sequence[Sequence[Any]]) -> _Tuples:
        """A table ``alias`` of ``rows`` (each ``width`` text values) bound as parameters,
        for a join that reads it first (``join_in_order``): its FROM item, the SQL of each
        column, an expression keeping the rows' order, and the parameters. A few rows are
        a VALUES list, each value a parameter (a third of json_each's cost for the ten of
        a page of checkpoints); more, one JSON array (one statement text for any number)."""
        if 0 < len(rows) <= _TUPLES_AS_VALUES:
            row = f"(?, {', '.join(['?'] * width)})"
            columns = [f"{alias}.column{i + 2}" for i in range(width)]
            params = [value for n, each in enumerate(rows) for value in (n, *each)]
            values = f"(VALUES {', '.join([row] * len(rows))}) AS {alias}"
            return values, columns, f"{alias}.column1", params
        columns = [f"json_extract({alias}.value, '$[{i}]')" for i in range(width)]
        return f"json_each(?) AS {alias}", columns, f"{alias}.key", [json.dumps(list(rows))]

    def ids_in(self, column: str) -> str:
        """``column`` is one of a list bound as one parameter (see ``ids``)."""
        return f"{column} IN (SELECT value FROM json_each(?))"

    def ids(self, values: Sequence[Any]) -> Any:
        """A list of ids or keys as the one parameter of ``ids_in``."""
        return json.dumps(list(values))

    def unsupported(self, what: str) -> None:
        """Raise UnsupportedError if this engine cannot do ``what`` (a key of
        _POSTGRES_LIMITS); return on an engine that can."""

    #: How a statement names a row of a layer table whatever its key: _delete_batches.
    row_ref = "rowid"
    #: At least the number of rows of a table, cheaply: bounds a walk of parent links.
    row_bound = "coalesce(max(rowid), 0)"
    #: Whether large checkpoint states are stored zlib-compressed (PostgreSQL compresses
    #: large values itself, and can then still read them in a filter).
    compresses_states = True
    #: A checkpoint's state as JSON text, for filters on it (Checkpoints.find).
    state_sql = "coalesce(c.state, _memstore_inflate(c.state_zlib))"

    def json_value(self, sql: str, path: str) -> _Target:
        """A value inside JSON text (``sql``) at a JSON path, as a filter target that is
        none of a collection's columns (Checkpoints.find)."""
        return _Target(f"json_extract({sql}, ?)", (path,), None)

    #: A thread's status, the last position of its history and the message search index's
    #: mark (Conversations._last_position): _LAST_POSITION_SQL, set below it.
    last_position_sql = ""
    #: The sum of a column, never NULL, that does not overflow (Conversations.usage).
    total = "total"

    def holds_all(self, sql: str) -> str:
        """A condition: the JSON array ``sql`` holds every value of the JSON array bound."""
        return (
            "NOT EXISTS (SELECT 1 FROM json_each(?) AS wanted WHERE wanted.value "
            f"NOT IN (SELECT value FROM json_each({sql})))"
        )


class _SQLite(_Engine):
    """The default engine and the reference: one file (or ``:memory:``) through apsw."""

    name = "sqlite"
    errors = _DRIVER_ERRORS

    def open(self, store: Store) -> apsw.Connection:
        self._writing = False  # a forked child's new connection is in no transaction
        conn = _connect(
            store.path,
            synchronous=store.synchronous.upper(),
            timeout=store.timeout,
            create=store._create,
            key=store._key,
        )
        try:
            _migrate(self, conn)
            _refresh_statistics(conn, store.timeout)
            if store.max_size is not None:
                _set_quota(conn, store.max_size)
        except apsw.Error as err:
            conn.close()
            raise store._error(err) from err
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self, conn: apsw.Connection) -> None:
        # Keeps query plans good for later opens; a busy or read-only file skips it
        # at once rather than waiting for another writer.
        with contextlib.suppress(apsw.Error):
            conn.set_busy_timeout(0)
            conn.execute("PRAGMA optimize")
        conn.close()

    cursor = staticmethod(apsw.Connection.execute)  # type: ignore[assignment]
    idle = staticmethod(apsw.Connection.get_autocommit)  # type: ignore[assignment]

    # Whether another connection committed, asked on every write (Collection._fresh):
    # the file's data version (SQLITE_FCNTL_DATA_VERSION, a C call) moves on with every
    # commit, this connection's own included, where PRAGMA data_version, which moves on
    # with others' only, is a statement (3 µs a put). While this connection's BEGIN
    # IMMEDIATE holds the write lock no one else commits: the version its COMMIT leaves
    # is its own, and a version seen after the next BEGIN IMMEDIATE that differs is
    # another connection's doing. Anything else (a deferred block, a write outside one)
    # only makes the version differ more often: a declaration read again for nothing.
    _version = -1  # the file's data version last accounted for
    _writing = False  # inside this connection's BEGIN IMMEDIATE

    def start(self, conn: apsw.Connection, sql: str) -> None:
        conn.execute(sql)
        if sql == "BEGIN IMMEDIATE":
            self._writing = True

    def end(self, conn: apsw.Connection, sql: str) -> None:
        conn.execute(sql)
        if sql == "COMMIT" and self._writing:
            self._writing = False
            self._version = conn.data_version()

    def abort(self, conn: apsw.Connection, sql: str) -> None:
        if not sql.startswith("ROLLBACK TO"):
            self._writing = False
        if not conn.get_autocommit():  # SQLite may have rolled back already
            conn.execute(sql)

    def data_version(self, store: Store) -> int:
        conn = store.connection
        if not self._writing:  # start the read a deferred block may not have started
            conn.execute("PRAGMA data_version").fetchall()
        version = conn.data_version()
        if version != self._version:
            self._version = version
            self.declarations += 1
        return self.declarations

    def bind(
        self, conn: apsw.Connection
    ) -> tuple[Callable[..., apsw.Cursor], Callable[..., apsw.Cursor]]:
        return conn.execute, conn.executemany

    def translate(self, err: BaseException) -> MemstoreError:
        return _translate(err)

    def schema_version(self, conn: apsw.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchall()[0][0]
        assert isinstance(version, int)
        return version

    def migrations(self) -> list[tuple[int, Path]]:
        return _migrations(SQL_DIR)

    def begin_migration(self, conn: apsw.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def claim(self, conn: apsw.Connection, current: int) -> None:
        if current == 0:
            _claim_file(conn)

    def run_script(self, conn: apsw.Connection, script: str) -> None:
        # Consumed: apsw runs a script's later statements as its rows are read.
        conn.execute(script).fetchall()

    def upgrade(self, conn: apsw.Connection, version: int) -> None:
        if version in _UPGRADES:
            _UPGRADES[version](conn)

    def set_schema_version(self, conn: apsw.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {version}")

    def check_schema(self, conn: apsw.Connection) -> None:
        _check_schema(conn, self.schema_version(conn))


#: What a PostgreSQL store cannot do, and what to use instead: UnsupportedError's message.
_POSTGRES_LIMITS = {
    "backup": "backup() copies a SQLite file; back a PostgreSQL store up with pg_dump "
    "(or your provider's snapshots), or copy it to a file with `memstore copy`",
    "restore": "restore() reads a SQLite file; load a PostgreSQL store with pg_restore, "
    "or copy a file into it with `memstore copy`",
    "max_size": "max_size is a SQLite page quota (PRAGMA max_page_count); give the database "
    "a quota on the server (a tablespace or your provider's limit)",
    "vacuum": "vacuum() rewrites a SQLite file; PostgreSQL's autovacuum does this, or run VACUUM",
    "checkpoint_wal": "checkpoint_wal() is SQLite's WAL; PostgreSQL checkpoints on its own",
    "key": "key= encrypts a SQLite file; encrypt a PostgreSQL database at rest on the server "
    "(an encrypted volume, or your provider's encryption at rest) and connect over TLS",
    # Adapter.layer's default: an adapter whose SQL was written for the file.
    "the framework adapters": "the framework adapters: an Adapter with SQL of its own is "
    "taken to be SQLite's; set its layer to None once its SQL runs on PostgreSQL too",
}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as err:
        raise DependencyError(
            "a PostgreSQL store needs psycopg 3: pip install 'agent-memstore[postgres]'"
        ) from err
    return psycopg


# A NUL in JSON text: \u0000 after an even number of backslashes (not an escaped "\\u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: pgvector's distance operator and HNSW operator class for each of memstore's metrics.
_PGVECTOR_OPERATORS = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "dot": ("<#>", "vector_ip_ops"),
    "l2": ("<->", "vector_l2_ops"),
}
# A string literal, a quoted identifier, a ? placeholder or a % sign (outside the first two).
_PLACEHOLDERS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")
_CURSOR_NAMES = iter(range(1, INT64_MAX))


# A write whose rows no one reads: in a transaction on PostgreSQL, nothing waits for it.
#: Statements a transaction that only reads sends (PostgreSQL: see _Postgres.end).
_READS = ("SELECT ", "SET LOCAL ")
_NO_ROWS = re.compile(r"\s*(?:INSERT|UPDATE|DELETE)\b(?![\s\S]*\bRETURNING\b)", re.IGNORECASE)


class _Fetched(list[Any]):
    """Rows a PostgreSQL statement gave, read as an apsw cursor's: ``fetchall()``."""

    def fetchall(self) -> list[Any]:
        return self


class _Postgres(_Engine):
    """A PostgreSQL database (``postgresql://user@host/db``) through psycopg 3.

    Records stay JSON text, timestamps ISO-8601 text, as in the file: the same
    values compare and sort the same way on both engines (see _PG_OPERATORS).
    Statements are written with ``?`` as in SQLite; they are given to psycopg
    with ``%s`` (``_prepared``), and psycopg prepares the ones run often.
    """

    name = "postgresql"
    differs = "IS DISTINCT FROM"
    same = "IS NOT DISTINCT FROM"
    time_type = 'TEXT COLLATE "C"'
    hex_by_part = "json_object_agg(v.part, encode(v.vector, 'hex'))::text"
    holds_nul = False
    no_limit = None
    join_in_order = "JOIN"  # the server's statistics (autovacuum's ANALYZE) choose
    nulls_first = True

    def __init__(self) -> None:
        self.psycopg = _psycopg()
        errors = self.psycopg.errors
        self.errors = (self.psycopg.Error, UnicodeEncodeError, TypeError, OverflowError)
        self._translations: tuple[tuple[type[BaseException], type[MemstoreError]], ...] = (
            (errors.LockNotAvailable, BusyError),
            (errors.DeadlockDetected, BusyError),
            (errors.SerializationFailure, BusyError),
            (errors.DiskFull, StorageFullError),
            (self.psycopg.IntegrityError, ValidationError),
            (self.psycopg.DataError, ValidationError),
            (errors.ProgramLimitExceeded, ValidationError),
            *_TRANSLATIONS[-3:],  # the caller's values that cannot be bound
        )
        self._statements: dict[str, str] = {}
        self._pipeline: Any = None  # the pipeline of the transaction under way, if any
        self._in_pipeline: Any = None  # and the context it was entered with
        # A write transaction's BEGIN not sent yet, and its one write so far: [BEGIN,
        # (statement, parameters) or None]; see start().
        self._pending: list[Any] | None = None
        # Whether the transaction under way has only read so far, and whether the COMMIT
        # of one that only read was sent without waiting for its result (see end()).
        self._reading_only = False
        self._lingering = False

    def open(self, store: Store) -> Any:
        psycopg = self.psycopg
        # A new connection (or one in place of a lost one): no pipeline, nothing pending;
        # the declarations announced while none listened are taken to have changed.
        self._pipeline = self._in_pipeline = self._pending = None
        self._reading_only = self._lingering = False
        self.declarations += 1
        try:
            conn = psycopg.connect(
                store.path,
                autocommit=True,  # memstore begins and ends its transactions itself
                application_name="memstore",
                connect_timeout=max(2, math.ceil(store.timeout)),
            )
        except psycopg.Error as err:
            raise MemstoreError(f"cannot connect to {store.shown_path}: {err}") from err
        try:
            if conn.info.server_version < 140000:
                raise UnsupportedError(
                    f"{store.shown_path} runs PostgreSQL {conn.info.server_version // 10000}; "
                    "memstore needs PostgreSQL 14 or newer"
                )
            if not store._create and self.schema_version(conn) == 0:
                raise NotFoundError(
                    f"no store at {store.shown_path}: the database has no memstore schema "
                    "(nothing was created)"
                )
            conn.execute("SET TIME ZONE 'UTC'")
            # How long to wait for another writer's lock; 0 would mean for ever.
            conn.execute(f"SET lock_timeout = {max(1, round(store.timeout * 1000))}")
            if store.synchronous == "full":
                conn.execute("SET synchronous_commit = on")
            _migrate(self, conn)
            self.pgvector = self._adopt_pgvector(conn)
            conn.add_notify_handler(self._announced)
            conn.execute("LISTEN memstore_declarations")
        except BaseException as err:
            conn.close()
            if isinstance(err, psycopg.Error):
                raise store._error(err) from err
            raise
        return conn

    def _adopt_pgvector(self, conn: Any) -> bool:
        """Whether this database ranks vectors by pgvector: it does once someone allowed
        to has run ``CREATE EXTENSION vector`` in it (memstore creates no extension);
        then memstore adds its column of them (sql/postgres/pgvector.sql) at the next
        open, once, under the migrations' lock."""
        probe = (
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
            "'memstore_vectors'::regclass AND attname = 'embedding' AND NOT attisdropped), "
            "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"
        )
        adopted, installed = conn.execute(probe).fetchone()
        if adopted or not installed:
            return bool(adopted)
        self.begin_migration(conn)
        try:
            if not conn.execute(probe).fetchone()[0]:
                conn.execute((SQL_DIR / "postgres" / "pgvector.sql").read_text("utf-8"))
                # The HNSW indexes that collections declared before pgvector came.
                for name, vectors in conn.execute(
                    "SELECT name, vectors FROM _memstore_collections WHERE vectors IS NOT NULL"
                ).fetchall():
                    config = json.loads(vectors)
                    if config.get("hnsw"):
                        conn.execute(_hnsw_index(name, config)[1])
        except self.psycopg.errors.InsufficientPrivilege:
            conn.execute("ROLLBACK")  # not the tables' owner: memstore's own index ranks
            return False
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def nearest(
        self,
        store: Store,
        name: str,
        config: Mapping[str, Any],
        q: Any,
        metric: str,
        k: int,
        among: tuple[str, Sequence[Any]],
        approximate: bool,
    ) -> list[tuple[int, float]] | None:
        if not self.pgvector or int(config["dim"]) > PGVECTOR_MAX_DIM:
            return None
        np = _numpy()
        q64 = q.astype(np.float64)
        q_norm = math.sqrt(float(q64 @ q64))
        model, dim = config["model"], int(config["dim"])
        # Literals, not parameters: a partial index (the wide ones', a collection's HNSW)
        # serves a statement only when its conditions are written out.
        same = f"v.collection = {_literal(name)} AND v.model = {_literal(model)} AND v.dim = {dim}"
        if not (q_norm == 0 or 1 / WIDE_ABOVE < q_norm < WIDE_ABOVE):
            return None  # float32 sums could overflow: memstore's index ranks in float64
        # Whether the collection has vectors too long for float32 sums (then memstore's
        # index ranks, in float64), asked with each candidates' statement.
        wide = (
            f"(SELECT EXISTS (SELECT 1 FROM memstore_vectors AS v WHERE {same} "
            "AND vector_norm(v.embedding) >= '1e18'::float8))"
        )
        text = "[" + ",".join(map(repr, q64.tolist())) + "]"
        operator = _PGVECTOR_OPERATORS[metric][0]
        restrict, params = among
        n = k + 8  # candidates: the k best by pgvector's float32, and a margin

        def candidates(order: str) -> list[Any] | None:
            """The n best (record id, bytes) in this order (which binds the query); None
            when the collection has vectors too long for float32 sums."""
            rows = store._fetch(
                f"SELECT v.record_id, v.vector, {wide} FROM memstore_vectors AS v "
                f"WHERE {same} AND {restrict} ORDER BY {order} LIMIT ?",
                (*params, text, n),
            )
            return None if rows and rows[0][2] else rows

        found: list[tuple[int, float]] = []
        if approximate and config.get("hnsw") and metric == config["metric"]:
            ef_search = max(int(config["hnsw"]["ef_search"]), n)
            store._fetch(f"SET LOCAL hnsw.ef_search = {min(1000, ef_search)}")
            rows = candidates(f"v.embedding::vector({dim}) {operator} (SELECT ?::vector({dim}))")
            if rows is None:
                return None
            found = _rescored(np, rows, q64, metric, k)
        if len(found) < k:  # exact, or the approximation found too few: every vector
            distance = f"v.embedding {operator} (SELECT ?::vector)"  # the query parsed once
            if metric == "cosine":  # a zero vector: similarity 0 (pgvector gives NaN)
                distance = f"coalesce(nullif({distance}, 'NaN'), 1)"
            rows = candidates(f"{distance}, v.record_id")
            if rows is None:
                return None
            found = _rescored(np, rows, q64, metric, k)
            if len(found) < k and len(rows) == n:  # records of several parts: by record
                ids = store._fetch(
                    f"SELECT record_id FROM (SELECT v.record_id, {distance} AS d "
                    f"FROM memstore_vectors AS v WHERE {same} AND {restrict}) AS s "
                    "GROUP BY record_id ORDER BY min(d), record_id LIMIT ?",
                    (text, *params, n),
                )
                rows = store._fetch(
                    f"SELECT v.record_id, v.vector FROM memstore_vectors AS v WHERE {same} "
                    f"AND {self.ids_in('v.record_id')}",
                    (self.ids([row[0] for row in ids]),),
                )
                found = _rescored(np, rows, q64, metric, k)
        return found

    def vector_index(self, store: Store, name: str, config: Mapping[str, Any] | None) -> None:
        if not self.pgvector:
            return
        prefix = _hnsw_prefix(name)
        wanted = None
        if config is not None and config.get("hnsw"):
            wanted = _hnsw_index(name, config)
        found = store._fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'memstore_vectors' AND left(indexname, ?) = ?",
            (len(prefix), prefix),
        )
        for (index,) in found:
            if wanted is None or index != wanted[0]:
                store._fetch(f"DROP INDEX {quote_identifier(index)}")
        if wanted is not None and wanted[0] not in [row[0] for row in found]:
            store._fetch(wanted[1])

    def close(self, conn: Any) -> None:
        with contextlib.suppress(self.psycopg.Error):
            self._settle()
        conn.close()

    def _prepared(self, sql: str) -> str:
        """A statement with ``?`` placeholders as psycopg takes it: ``%s``, and ``%`` doubled."""
        found = self._statements.get(sql)
        if found is None:
            # A ? in a string literal or a quoted name is itself; a % anywhere is doubled.
            found = _PLACEHOLDERS.sub(
                lambda m: "%s" if m.group(0) == "?" else m.group(0).replace("%", "%%"), sql
            )
            if len(self._statements) < 2000:
                self._statements[sql] = found
        return found

    def bind(self, conn: Any) -> tuple[Callable[..., _Fetched], Callable[..., _Fetched]]:
        return functools.partial(self.execute, conn), functools.partial(self.execute_many, conn)

    # A transaction runs in psycopg's pipeline mode: its statements go to the server without
    # waiting for each other's results, and a write whose rows no one reads (no RETURNING)
    # waits for none. The next read, the commit or the end of a savepoint waits for all
    # sent before it, and raises what failed among them. An error then comes out of the
    # block's end rather than its statement, and the whole block is rolled back as ever.
    # A server-side cursor (Store._stream) leaves pipeline mode for the rest of the
    # transaction.
    #
    # A write transaction (plain BEGIN) is sent only with its second statement or its
    # first read: one that holds a single write (a put) is that statement alone,
    # autocommitted, as atomic and durable as in BEGIN ... COMMIT, in one round trip
    # and without the server's two statements more (_pending).
    #
    # A transaction that only read (SELECTs) ends with a COMMIT whose result nobody
    # waits for: the pipeline stays open (_lingering) and the next read transaction's
    # statements follow it there; anything else waits for it first. Nothing a COMMIT of
    # reads could report is lost by that: it frees the snapshot, and cannot fail but
    # with the connection, which the next call then finds.

    def _settle(self) -> None:
        """Wait for a read transaction's COMMIT left in the pipeline, and leave it."""
        if self._lingering:
            self._lingering = False
            self._leave_pipeline()

    def start(self, conn: Any, sql: str) -> None:
        if self._lingering:
            if sql.startswith("BEGIN ISOLATION LEVEL REPEATABLE READ"):  # reads follow reads
                self._lingering = False
                self._reading_only = True
                conn.execute(sql)
                return
            self._settle()
        if self._pipeline is None and self._pending is None and sql.startswith("BEGIN"):
            # Announcements of declarations (_announced) come in with results; the block's
            # first write reads their count before any result of it has come, so those that
            # are on the socket already are taken now (a read that does not wait: 2 us).
            pgconn = conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                self.declarations += 1
            if sql == "BEGIN":
                self._pending = [sql, None]
                return
            self._in_pipeline = conn.pipeline()
            self._pipeline = self._in_pipeline.__enter__()
            self._reading_only = True
        self._send_pending(conn)
        conn.execute(sql)

    def run_alone(self, conn: Any) -> None:
        # One lock of the database's for every exclusive block, held to its end: blocks
        # wait here in turn (up to lock_timeout: BusyError), as writers do for SQLite's
        # write lock. Sent with the BEGIN; nothing waits for its result but the block's
        # first read or its commit, so it costs no round trip of its own.
        self._send_pending(conn)
        conn.execute(f"SELECT pg_advisory_xact_lock({WRITERS_LOCK})")

    def take_turns(self, store: Store, name: str) -> None:
        # A lock of (memstore, the name's hash), held to the block's end; a hash shared
        # by two names only makes their blocks wait for each other. Sent pipelined:
        # the block's next read (which takes its snapshot after) waits for it.
        with store._lock:
            conn = store.connection
            try:
                self._reading_only = False  # its COMMIT, which frees the lock, is waited for
                self._send_pending(conn)
                self._send(
                    conn, "SELECT pg_advisory_xact_lock(?, hashtext(?))", (APPLICATION_ID, name)
                )
            except self.errors as err:
                raise store._error(err) from err

    lock_rows = " FOR UPDATE"

    def _send(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """Send one statement; its cursor. Without parameters, a statement is sent as it
        is (and may be several, outside a transaction's pipeline)."""
        return conn.execute(self._prepared(sql), params) if params else conn.execute(sql)

    def _send_pending(self, conn: Any) -> None:
        """Send the BEGIN held back, and the write it holds, pipelined."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._in_pipeline = conn.pipeline()
            self._pipeline = self._in_pipeline.__enter__()
            self._reading_only = False  # a write transaction
            conn.execute(pending[0])
            if pending[1] is not None:
                self._send(conn, *pending[1])

    def end(self, conn: Any, sql: str) -> None:
        try:
            pending, self._pending = self._pending, None
            if pending is not None:  # nothing sent yet: the one write, if any, alone
                if pending[1] is not None:
                    self._send(conn, *pending[1])
                return
            conn.execute(sql)
            if sql == "COMMIT" and self._reading_only and self._pipeline is not None:
                self._lingering = True  # its result waits for the next call (see above)
            elif sql == "COMMIT":
                self._leave_pipeline()
            elif self._pipeline is not None:  # a savepoint's statements fail at its end
                self._pipeline.sync()
        except self.psycopg.OperationalError as err:
            if sql != "COMMIT" or not conn.broken:
                raise
            self._in_pipeline = self._pipeline = None
            raise MemstoreError(
                f"the connection to the server was lost while committing ({err}): the "
                "transaction may have been committed or not; read to find out (the next "
                "call connects again)"
            ) from err

    def abort(self, conn: Any, sql: str) -> None:
        if self._pending is not None:  # nothing was sent
            self._pending = None
            return
        if conn.broken or conn.closed:  # the server ended the transaction with the connection
            self._in_pipeline = self._pipeline = None
            return
        pipeline = self._pipeline
        if pipeline is not None:
            with contextlib.suppress(self.psycopg.Error):
                pipeline.sync()  # what failed before, if anything: the reason for this
        if pipeline is not None or not self.idle(conn):
            for statement in sql.split("; "):  # one statement a call in pipeline mode
                conn.execute(statement)
        if sql == "ROLLBACK":
            self._leave_pipeline()
        elif pipeline is not None:
            pipeline.sync()

    def _leave_pipeline(self) -> None:
        """Wait for what was sent, raising what failed, and leave pipeline mode."""
        context, self._in_pipeline, self._pipeline = self._in_pipeline, None, None
        if context is not None:
            context.__exit__(None, None, None)

    def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> _Fetched:
        if self._lingering:  # outside a transaction: what was sent is done first
            self._settle()
        elif self._reading_only and not sql.startswith(_READS):
            self._reading_only = False
        pending = self._pending
        if pending is not None:
            if pending[1] is None and _NO_ROWS.match(sql):
                pending[1] = (sql, params)  # held: the transaction's only statement, so far
                return _Fetched()
            self._send_pending(conn)
        cursor = self._send(conn, sql, params)
        if self._pipeline is not None:
            if _NO_ROWS.match(sql):
                return _Fetched()
            self._pipeline.sync()
        return _Fetched(cursor.fetchall() if cursor.description is not None else ())

    def rows_of(self, columns: int) -> str | None:
        # JSON, not text[] arrays: psycopg escapes each element of those in Python (a
        # regular expression per record: 0.8 s a 18,000-record load), the server's JSON
        # parser reads these in C, each array once (an array a row, ->> a column, parsed
        # each row again: 3.3 against 1.5 ms for 1,000 records).
        arrays = ", ".join(["json_array_elements_text(?::json)"] * columns)
        return f"SELECT * FROM ROWS FROM ({arrays})"

    def fetch_together(
        self, store: Store, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        if (self._pipeline is None and self._pending is None) or self._lingering:
            return super().fetch_together(store, statements)  # not in a transaction
        if not all(sql.startswith(_READS) for sql, _ in statements):
            self._reading_only = False
        with store._lock:
            conn = store.connection
            try:
                self._send_pending(conn)
                cursors = [self._send(conn, sql, params) for sql, params in statements]
                self._pipeline.sync()
                return [
                    cursor.fetchall() if cursor.description is not None else []
                    for cursor in cursors
                ]
            except self.errors as err:
                raise store._error(err) from err

    def execute_many(self, conn: Any, sql: str, rows: Iterable[Sequence[Any]]) -> _Fetched:
        found = _Fetched()
        self._settle()
        self._reading_only = False
        self._send_pending(conn)
        if self._pipeline is not None and _NO_ROWS.match(sql):
            # The cursor stays with the pipeline until its results come (at the next wait).
            conn.cursor().executemany(self._prepared(sql), rows)
            return found
        with conn.cursor() as cursor:
            cursor.executemany(self._prepared(sql), rows, returning=True)
            while True:
                if cursor.description is not None:
                    found += cursor.fetchall()
                if not cursor.nextset():
                    return found

    def cursor(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        # A server-side cursor, held past the end of the transaction that opened it (and
        # never in pipeline mode).
        self._settle()
        self._send_pending(conn)
        self._leave_pipeline()
        cursor = conn.cursor(f"memstore_{next(_CURSOR_NAMES)}", withhold=True)
        cursor.itersize = 256
        cursor.execute(self._prepared(sql) if params else sql, params or None)
        return cursor

    def idle(self, conn: Any) -> bool:
        if self._lingering:  # a read transaction's COMMIT was sent: none is open
            return True
        return bool(conn.info.transaction_status == self.psycopg.pq.TransactionStatus.IDLE)

    def lost(self, conn: Any) -> bool:
        # Closed; or left in pipeline mode by an error while leaving it (the server went
        # away with results still to come): nothing can be sent on it any more.
        return bool(conn.closed) or (
            self._pipeline is None
            and conn.pgconn.pipeline_status != self.psycopg.pq.PipelineStatus.OFF
        )

    # Deferred (one snapshot for the block's reads): repeatable read. Writers wait for
    # each other's row locks either way.
    begin = ("BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN")

    def translate(self, err: BaseException) -> MemstoreError:
        for source, target in self._translations:
            if isinstance(err, source):
                return target(f"{type(err).__name__}: {err}")
        return MemstoreError(f"{type(err).__name__}: {err}")

    # Every change to the registry is announced (its trigger's NOTIFY, at commit, from any
    # connection and any tool): the connection LISTENs and counts them, with no query a
    # write. psycopg takes in what waits on the socket with the next result; between
    # statements, data_version reads what has come already (a read that does not wait:
    # about a microsecond), so that a write or store.collection() sent next sees a
    # declaration committed before it, rather than the call after it.
    def _announced(self, notification: Any) -> None:
        self.declarations += 1

    def data_version(self, store: Store) -> Any:
        conn: Any = store._conn
        if self._lingering:  # a read block's COMMIT, which the next statement would wait for
            with contextlib.suppress(self.psycopg.Error):  # a loss: the next call meets it
                self._settle()
        if self._pipeline is None and conn is not None and not conn.closed:
            pgconn = conn.pgconn
            with contextlib.suppress(self.psycopg.OperationalError):  # the next call says
                pgconn.consume_input()
                while (notice := pgconn.notifies()) is not None:  # as psycopg hands them out:
                    pgconn.notify_handler(notice)  # to _announced, and the user's handlers
        return self.declarations

    def schema_objects(self) -> dict[str, tuple[str, str]]:
        return _schema_objects(SQL_DIR / "postgres")

    def schema_version(self, conn: Any) -> int:
        if conn.execute("SELECT to_regclass('_memstore_schema')").fetchall()[0][0] is None:
            return 0
        return int(conn.execute("SELECT version FROM _memstore_schema").fetchall()[0][0])

    def migrations(self) -> list[tuple[int, Path]]:
        return _migrations(SQL_DIR / "postgres")

    def begin_migration(self, conn: Any) -> None:
        conn.execute("BEGIN")
        # One migrating connection at a time: the others wait here, then see it done.
        conn.execute(f"SELECT pg_advisory_xact_lock({APPLICATION_ID})")

    def claim(self, conn: Any, current: int) -> None:
        pass  # a database holds other applications' tables beside memstore's

    def run_script(self, conn: Any, script: str) -> None:
        conn.execute(script)

    def upgrade(self, conn: Any, version: int) -> None:
        pass

    def set_schema_version(self, conn: Any, version: int) -> None:
        conn.execute("DELETE FROM _memstore_schema")
        conn.execute("INSERT INTO _memstore_schema (version) VALUES (%s)", (version,))

    def check_schema(self, conn: Any) -> None:
        _check_schema_version(self.schema_version(conn))

    bulk_triggers = False

    @property
    def now(self) -> str:
        return "_memstore_now()"

    @property
    def operators(self) -> _Operators:
        return _PG_OPERATORS

    def column_type(self, kind: str) -> str:
        return _PG_COLUMN_TYPES[kind]

    def json_target(self, path: str) -> _Target:
        return _pg_body_value(path)

    def path_exists(self, path: str) -> _Compiled:
        value = _pg_body_value(path)
        return f"{value.sql} IS NOT NULL", list(value.params)

    def order(self, target: _Target, descending: bool) -> _Compiled:
        direction = " DESC" if descending else ""
        if target.kind == "json":  # in SQLite's order: null, numbers, then text
            terms = [f"_memstore_{f}({target.sql}){direction}" for f in ("class", "number")]
            terms.append(f'_memstore_text({target.sql}) COLLATE "C"{direction}')
            return ", ".join(terms), [*target.params] * 3
        nulls = " NULLS LAST" if descending else " NULLS FIRST"  # as SQLite orders them
        return target.sql + direction + nulls, list(target.params)

    batches_fts = False
    remote = True
    # The tsvector reads the JSON: a column for each searched field would be one more
    # reading of it on every write (10 of a store put's 240 µs, measured), for nothing.
    fts_columns = False

    def fts_sql(self, name: str, paths: list[str]) -> list[str]:
        table = quote_identifier(name)
        return [
            f"ALTER TABLE {table} DROP COLUMN IF EXISTS fts_document",
            f"ALTER TABLE {table} ADD COLUMN fts_document tsvector GENERATED ALWAYS AS "
            f"(to_tsvector('memstore'::regconfig, {_pg_fts_text(paths)})) STORED",
            f"CREATE INDEX {quote_identifier(_index_name(name, 'fts'))} ON {table} "
            "USING gin (fts_document)",
        ]

    def fts_search(
        self, collection: Collection, clause: str, params: list[Any], text: str, options: Any
    ) -> list[Any]:
        (opening, closing), tokens, limit, offset = options
        texts = {field_column(path): _pg_fts_text([path]) for path in collection.fts}
        return self.search(
            collection.store,
            f"{collection._table} AS t",
            f"{collection._key_sql}, t.body",
            texts,
            (clause, params),
            text,
            (opening, closing, tokens, limit, offset),
        )

    def known_matches(
        self,
        collection: Collection,
        text: str,
        known: tuple[str, list[Any], list[int]],
        n: int,
        options: tuple[tuple[str, str], int],
    ) -> list[Any]:
        # One search over the current rows the condition keeps and the replaced versions,
        # their words computed for the query (a version has no column of them).
        clause, params, ids = known
        (opening, closing), tokens = options
        texts = {field_column(path): _pg_fts_text([path]) for path in collection.fts}
        words = f"to_tsvector('memstore'::regconfig, {_pg_fts_text(collection.fts)})"
        source = (
            f"(SELECT t.id, {collection._key_sql} AS key, t.body, t.fts_document "
            f"FROM {collection._table} AS t WHERE {clause} UNION ALL "
            f"SELECT -v.id, coalesce(v.fact_of, v.key), v.body, {words} "
            "FROM memstore_versions AS v WHERE v.id = ANY(?)) AS t"
        )
        with collection.store._transaction(immediate=False):
            return self.search(
                collection.store,
                source,
                "t.id, t.key, t.body",
                texts,
                ("TRUE", []),
                text,
                (opening, closing, tokens, n, 0),
                [*params, [-i for i in ids]],
            )

    def fts_ranked(
        self, collection: Collection, clause: str, params: list[Any], text: str, limit: int
    ) -> list[Any]:
        texts = {field_column(path): _pg_fts_text([path]) for path in collection.fts}
        rows = self.search(
            collection.store,
            f"{collection._table} AS t",
            "t.id",
            texts,
            (clause, params),
            text,
            ("[", "]", 2, limit, 0),
            snippets=False,  # hybrid ranks by them: it shows no snippet
        )
        return [row[:2] for row in rows]

    #: The texts each memory layer's words come from (FTS5's columns there), as SQL.
    layer_texts: Mapping[str, Mapping[str, str]] = {
        "memstore_events": {"kind": "kind", "payload": "payload"},
        "memstore_messages": {"content": "content"},
        "memstore_graph_text": {"words": "words"},
    }

    def layer_search(
        self,
        store: Store,
        table: str,
        columns: str,
        where: _Compiled,
        text: str,
        limit: int,
        joins: str = "",
    ) -> list[Any]:
        texts = {name: f"t.{sql}" for name, sql in self.layer_texts[table].items()}
        with store._transaction(immediate=False):
            return self.search(
                store,
                f"{table} AS t {joins}",
                columns,
                texts,
                where,
                text,
                ("[", "]", 12, limit, 0),
            )

    def search(
        self,
        store: Store,
        source: str,
        columns: str,
        texts: Mapping[str, str],
        where: _Compiled,
        text: str,
        options: tuple[str, str, int, int, int],
        source_params: Sequence[Any] = (),
        snippets: bool = True,
    ) -> list[Any]:
        """PostgreSQL's full-text search of any table ``source`` (aliased ``t``, with its
        words in ``t.fts_document``; ``source_params`` its parameters): rows of
        ``columns``, then the rank and a snippet (None without ``snippets``: ts_headline
        reads each hit's whole text), best first. ``texts`` names the indexed texts (FTS5's
        columns) as SQL; ``options`` are (highlight opening, closing, snippet words, limit,
        offset). Call it inside a transaction: its statement timeout ends with it."""
        opening, closing, tokens, limit, offset = options
        match, match_params, ranked = _pg_match(text, texts)
        words, document = max(2, tokens), " || ' ' || ".join(texts.values())
        headline = (
            f"ts_headline('memstore'::regconfig, {document}, q, "
            f"'StartSel=\x01, StopSel=\x02, MaxWords={words}, MinWords={words - 1}, "
            "ShortWord=0, FragmentDelimiter=…, MaxFragments=1')"
            if snippets
            else "NULL"
        )
        clause, params = where
        sql = (
            f"SELECT {columns}, -ts_rank(t.fts_document, q), {headline} "
            f"FROM {source}, to_tsquery('memstore'::regconfig, ?) AS q "
            f"WHERE {match} AND {clause} ORDER BY -ts_rank(t.fts_document, q), t.id "
            "LIMIT ? OFFSET ?"
        )
        bound = [*source_params, ranked, *match_params, *params, limit, offset]
        milliseconds = max(1, round(store.query_timeout * 1000))
        store._fetch(f"SET LOCAL statement_timeout = {milliseconds}")
        try:
            rows = store._fetch(sql, bound)
        except MemstoreError as err:
            if isinstance(err.__cause__, self.psycopg.errors.QueryCanceled):
                raise QueryError(
                    f"the search for {text!r:.80} took longer than "
                    f"{store.query_timeout:g} s; use fewer terms (or Store(query_timeout=...))"
                ) from err.__cause__
            raise
        if not snippets:
            return rows
        return [
            (*row[:-1], row[-1].replace("\x01", opening).replace("\x02", closing)) for row in rows
        ]

    layers = False
    probes_expiry = False  # a round trip costs more than the test (bench_postgres.py)

    def integrity_problems(self, store: Store, full: bool) -> list[str]:
        return []  # the server checks its pages itself (data checksums, amcheck)

    def schema_names(self, store: Store, table: str | None = None) -> set[str]:
        if table is None:
            rows = store._fetch(
                "SELECT relname FROM pg_catalog.pg_class "
                "WHERE relnamespace = current_schema()::regnamespace UNION ALL "
                "SELECT t.tgname FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c "
                "ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
                "AND NOT t.tgisinternal"
            )
        else:
            rows = store._fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = ? UNION ALL SELECT tgname FROM pg_catalog.pg_trigger "
                "WHERE tgrelid = to_regclass(quote_ident(?)) AND NOT tgisinternal",
                (table, table),
            )
        return {row[0] for row in rows}

    def touch_trigger_sql(self, table: str, temporal: bool) -> str:
        return _pg_touch_trigger_sql(table, temporal)

    def drop_trigger_sql(self, table: str, trigger: str) -> str:
        return f"DROP TRIGGER IF EXISTS {quote_identifier(trigger)} ON {quote_identifier(table)}"

    def vector_history_trigger_sql(self, table: str, *, drop: bool = False) -> list[str]:
        quoted = quote_identifier(table)
        names = [
            quote_identifier(f"{table}__history_vectors_{event}") for event in ("update", "delete")
        ]
        if drop:
            return [f"DROP TRIGGER IF EXISTS {name} ON {quoted}" for name in names]
        _, changed = _pg_versioned(temporal=True)
        return [
            f"CREATE TRIGGER {names[0]} BEFORE UPDATE OF body, valid_from, valid_to ON {quoted} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION _memstore_archive_vectors()",
            f"CREATE TRIGGER {names[1]} BEFORE DELETE ON {quoted} FOR EACH ROW "
            "EXECUTE FUNCTION _memstore_archive_vectors()",
        ]

    def history_trigger_sql(
        self, table: str, *, drop: bool = False, temporal: bool = False
    ) -> list[str]:
        quoted = quote_identifier(table)
        names = [quote_identifier(f"{table}__history_{event}") for event in ("update", "delete")]
        if drop:
            return [f"DROP TRIGGER IF EXISTS {name} ON {quoted}" for name in names]
        columns, changed = _pg_versioned(temporal)
        archive = "_memstore_archive('temporal')" if temporal else "_memstore_archive()"
        return [
            f"CREATE TRIGGER {names[0]} AFTER UPDATE OF {columns} ON {quoted} FOR EACH ROW "
            f"WHEN ({changed}) EXECUTE FUNCTION {archive}",
            f"CREATE TRIGGER {names[1]} AFTER DELETE ON {quoted} FOR EACH ROW "
            f"EXECUTE FUNCTION {archive}",
        ]

    def sizes(self, store: Store) -> tuple[int, int, int]:
        size = store._fetch("SELECT pg_database_size(current_database())")[0][0]
        return int(size), 0, 0  # the server's WAL and free space are its own

    def has_table(self, store: Store, name: str) -> bool:
        return bool(
            store._fetch(
                "SELECT 1 FROM pg_catalog.pg_class WHERE lower(relname) = lower(?) "
                "AND relnamespace = current_schema()::regnamespace",
                (name,),
            )
        )

    def columns(self, store: Store, table: str) -> dict[str, str]:
        return {
            name: kind.upper()
            for name, kind in store._fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?",
                (table,),
            )
        }

    def insertable(self, store: Store, table: str) -> list[str]:
        return [
            row[0]
            for row in store._fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = ? AND is_generated = 'NEVER' "
                "ORDER BY ordinal_position",
                (table,),
            )
        ]

    def after_copy(self, store: Store, table: str) -> None:
        if "id" not in self.insertable(store, table):
            return
        sequence = store._fetch("SELECT pg_get_serial_sequence(?, 'id')", (table,))[0][0]
        if sequence is not None:  # an identity: it moves on past the ids written
            store._fetch(
                f"SELECT setval(?, coalesce(max(id), 0) + 1, false) FROM {quote_identifier(table)}",
                (sequence,),
            )

    def defer_references(self, store: Store) -> None:
        store._fetch("SET CONSTRAINTS ALL DEFERRED")  # every reference is DEFERRABLE

    def row_order(self, columns: Sequence[str]) -> str:
        return "id" if "id" in columns else ", ".join(quote_identifier(c) for c in columns)

    def millisecond_after(self, sql: str) -> str:
        return (
            f"to_char((({sql})::timestamptz + interval '1 millisecond') AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.MS"000Z"\')'
        )

    def optimize(self, store: Store) -> int:
        """Store.optimize: the planner's statistics, and the full-text indexes' pending
        entries merged into them (gin_clean_pending_list); how many such indexes."""
        indexes = store._fetch(
            "SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index AS i "
            "JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid "
            "JOIN pg_catalog.pg_am AS a ON a.oid = c.relam "
            "WHERE a.amname = 'gin' AND c.relnamespace = current_schema()::regnamespace "
            "ORDER BY 1"
        )
        for (index,) in indexes:
            store._fetch("SELECT gin_clean_pending_list(?::regclass)", (index,))
        tables = store._fetch(  # memstore's: the database may hold other applications' too
            "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r' "
            "AND relnamespace = current_schema()::regnamespace AND (relname = ANY(?) "
            "OR relname LIKE 'memstore\\_%' OR relname LIKE '\\_memstore\\_%')",
            (store.collections(),),
        )
        store._fetch(f"ANALYZE {', '.join(quote_identifier(t) for (t,) in tables)}")
        return len(indexes)

    def create_table_sql(self, name: str) -> list[str]:
        return _pg_create_table_sql(name)

    def add_column_sql(self, table: str, path: str, kind: str) -> str:
        return _pg_add_column_sql(table, path, kind)

    def ttl_trigger_sql(self, table: str, ttl: bool) -> str:
        name, quoted = quote_identifier(_ttl_trigger(table)), quote_identifier(table)
        if not ttl:
            return f"DROP TRIGGER IF EXISTS {name} ON {quoted}"
        return (
            f"CREATE OR REPLACE TRIGGER {name} BEFORE INSERT ON {quoted} FOR EACH ROW "
            "WHEN (new.expires_at IS NULL) EXECUTE FUNCTION _memstore_ttl()"
        )

    def analyze_sql(self, table: str, index: str) -> str:
        return f"ANALYZE {quote_identifier(table)}"

    def drop_collection_sql(self, name: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {quote_identifier(name)}"]

    def check_names(self, meta: _Meta) -> None:
        names = [meta.name, *(field_column(p) for p in meta.fields)]
        names += [_index_name(meta.name, field_column(p)) for p in meta.fields]
        names += [_compound_index_name(meta.name, spec) for spec in meta.indexes]
        names += [_index_name(meta.name, c) for c in _BASE_INDEXED] + [_ttl_trigger(meta.name)]
        long = [n for n in names if len(n.encode()) > 63]
        if long:
            raise ValidationError(
                f"PostgreSQL names are 63 bytes at most, and {long[0]!r} would be longer: "
                f"give {meta.name!r} (or its fields) a shorter name"
            )

    def after_bulk(self, store: Store, table: str) -> None:
        store._fetch(f"ANALYZE {quote_identifier(table)}")

    def lock_declarations(self, store: Store) -> None:
        # Writers of rows do not wait for each other here, only declarations do.
        store._fetch(f"SELECT pg_advisory_xact_lock({APPLICATION_ID + 1})")

    row_ref = "ctid"
    row_bound = "count(*)"
    compresses_states = False
    state_sql = "c.state"

    def json_value(self, sql: str, path: str) -> _Target:
        return _Target(f"({sql}::json #> ?::text[])", (_path_segments(path),), None, "json")

    def holds_all(self, sql: str) -> str:
        return f"{sql}::jsonb @> ?::jsonb"

    # The thread's row is locked first (sql/postgres: _memstore_last_position), so that
    # appends from many connections take gap-free positions; no index waits for messages.
    last_position_sql = "SELECT status, last, NULL FROM _memstore_last_position(?)"
    total = "sum"

    def vector_trigger_sql(self, table: str) -> str:
        return (
            f"CREATE OR REPLACE TRIGGER {quote_identifier(_vector_trigger(table))} AFTER DELETE "
            f"ON {quote_identifier(table)} FOR EACH ROW EXECUTE FUNCTION _memstore_vectors_gone()"
        )

    def concat_ids(self, column: str) -> str:
        return f"string_agg({column}::text, ',')"

    def json_array(self, sql: str) -> str:
        return f"json_agg({sql})::text"

    hygiene_columns: Mapping[str, str] = {
        "pinned": "INTEGER NOT NULL DEFAULT 0",  # 0 or 1, as SQLite keeps it
        "forgotten_at": 'TEXT COLLATE "C"',
        "access_count": "BIGINT NOT NULL DEFAULT 0",
        "last_accessed": 'TEXT COLLATE "C"',
        "content_hash": 'TEXT COLLATE "C"',
        "merged_into": 'TEXT COLLATE "C"',
    }

    def json_entries(self, sql: str) -> str:
        return f"json_each_text(({sql})::json)"

    # A field read from the JSON is grouped as SQLite groups its values (numbers by value,
    # true with 1, text by its bytes) and summarized over its numbers: text values count
    # as none, where SQLite's min, max and sum would take them in too.

    def group_terms(self, target: _Target) -> tuple[list[str], list[Any], Callable[..., Any]]:
        if target.kind != "json":
            return [target.sql], list(target.params), operator.itemgetter(0)
        terms = [f"_memstore_{f}({target.sql})" for f in ("class", "number")]
        terms.append(f'_memstore_text({target.sql}) COLLATE "C"')
        return terms, [*target.params * 3], _pg_group_value

    def summary_terms(self, target: _Target, quantiles: list[float]) -> tuple[list[str], list[Any]]:
        value, own = target.sql, list(target.params)
        if target.kind == "json":
            value = number = f"_memstore_number({value})"
        elif target.kind in ("integer", "real"):
            number = value
        elif target.kind == "boolean":
            value = number = f"({value})::int"
        else:  # text: its min and max, as SQLite gives them, but no sum
            number = "NULL::numeric"
        counted = own if number != "NULL::numeric" else []
        terms = [f"min({value})", f"max({value})", f"sum({number})", f"avg({number})"]
        terms.append(
            f"array_to_json(percentile_cont(?::float8[]) WITHIN GROUP (ORDER BY {number}))::text"
        )
        return terms, [*own, *own, *counted, *counted, quantiles, *counted]

    def summary_value(self, value: Any) -> Any:
        return _pg_number_value(value)

    def json_field(self, sql: str, key: str, what: str) -> _Compiled:
        function = {"type": "_memstore_json_type", "number": "_memstore_number"}.get(
            what, "_memstore_text"
        )
        return f"{function}(({sql})::json #> ?::text[])", [[key]]

    def tuples(self, alias: str, width: int, rows: Sequence[Sequence[Any]]) -> _Tuples:
        names = [f"c{i}" for i in range(width)]
        arrays = [[str(row[i]) for row in rows] for i in range(width)]
        unnest = ", ".join(["?::text[]"] * width)
        return (
            f"unnest({unnest}) WITH ORDINALITY AS {alias}({', '.join(names)}, ord)",
            [f'{alias}.{name} COLLATE "C"' for name in names],
            f"{alias}.ord",
            arrays,
        )

    def ids_in(self, column: str) -> str:
        return f"{column} = ANY(?)"

    def ids(self, values: Sequence[Any]) -> Any:
        return list(values)

    def unsupported(self, what: str) -> None:
        if what in _POSTGRES_LIMITS:
            raise UnsupportedError(_POSTGRES_LIMITS[what])


def _closed(*args: Any) -> Any:
    """A closed Store's statements."""
    raise MemstoreError("the store is closed")


def without_password(path: str) -> str:
    """A store's path as it may be shown: a PostgreSQL URL's password (after the user's
    name, or a ``password=`` parameter) as ``***``; a file's path as it is."""
    path = re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", path)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", path, flags=re.IGNORECASE)


def _engine_for(path: str) -> _Engine:
    """The engine a Store's ``path`` names: a PostgreSQL URL, else a SQLite file."""
    if path.startswith(("postgresql://", "postgres://")):
        return _Postgres()
    return _SQLite()


# Stores to reconnect in a forked child: a connection must not cross a fork.
_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
_ABANDONED: list[apsw.Connection] = []  # the parent's, kept (never closed) in a child


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------


class _Meta(NamedTuple):
    """A collection as the registry table describes it."""

    name: str
    fields: dict[str, str]
    fts: list[str]
    ttl_seconds: float | None
    history: bool = False
    indexes: tuple[tuple[tuple[str, ...], bool], ...] = ()  # (fields, unique) each
    vectors: dict[str, Any] | None = None  # {"dim", "model", "metric", "fields"}
    temporal: bool = False  # records have validity periods (sql/0012)
    hygiene: dict[str, Any] | None = None  # {"dedup", "policy"} (sql/0012)
    time_indexes: bool = True  # created_at and updated_at indexed (sql/0013)


class _Transaction:
    """``Store.transaction()``: a class, not a generator, as every write goes through it.

    The store's lock is held from the block's start to its end, so that no
    other thread's statement lands inside it.
    """

    __slots__ = ("_commit", "_conn", "_exclusive", "_immediate", "_rollback", "_store")
    _conn: Any

    def __init__(self, store: Store, immediate: bool, exclusive: bool = False) -> None:
        self._store = store
        self._immediate = immediate
        self._exclusive = exclusive

    def __enter__(self) -> Store:
        store = self._store
        store._lock.acquire()
        try:
            conn = self._conn = store.connection
            engine = store._engine
            alone = False
            if store._depth == 0 and engine.idle(conn):
                begin = engine.begin[self._immediate]
                self._commit, self._rollback = "COMMIT", "ROLLBACK"
                alone = self._immediate and self._exclusive
            else:
                name = f"memstore_{store._depth}"
                begin, self._commit = f"SAVEPOINT {name}", f"RELEASE {name}"
                self._rollback = f"ROLLBACK TO {name}; RELEASE {name}"
            try:
                engine.start(conn, begin)
                if alone:
                    engine.run_alone(conn)
            except engine.errors as err:
                if alone:
                    engine.abort(conn, self._rollback)
                raise store._error(err) from err
        except BaseException:
            store._lock.release()
            raise
        store._depth += 1
        return store

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> None:
        store, conn = self._store, self._conn
        engine = store._engine
        try:
            store._depth -= 1
            if kind is not None:
                engine.abort(conn, self._rollback)
                if store._depth == 0:
                    store._check_connection()
                return
            try:
                engine.end(conn, self._commit)
            except engine.errors as err:
                engine.abort(conn, self._rollback)
                raise store._error(err) from err
            except MemstoreError:  # the connection was lost while committing
                if store._depth == 0:
                    store._check_connection()
                raise
        finally:
            store._lock.release()


class Store:
    """One SQLite file of agent memory, opened in WAL mode.

    >>> with Store("agent.db") as store:
    ...     notes = store.collection("notes")

    ``path`` is a file (created and migrated as needed) or ``":memory:"``, or
    a PostgreSQL URL, ``postgresql://user@host/db`` (README, "PostgreSQL").
    ``synchronous="full"`` makes every commit survive power loss as well as
    crashes. ``timeout`` is how long to wait, in seconds, for another writer.
    ``max_size`` (bytes, at least 1 MiB) is a quota SQLite enforces (``PRAGMA
    max_page_count``): a write past it raises QuotaError and changes nothing;
    the WAL is checkpointed early and truncated so that it stays small too.
    ``query_timeout`` is how long, in seconds, a full-text search may run
    before it is stopped with QueryError. ``create=False`` opens only a file
    that exists (NotFoundError otherwise), so that a mistyped path is an
    error rather than a new, empty store. ``key`` (a str or bytes passphrase,
    or a Key) opens or creates an encrypted file (README, "Encryption at
    rest"): a wrong key, or a key for a plain file, is an EncryptionError.

    One Store may be shared by threads: its operations take turns on one
    connection. Open a Store per thread or per process for parallel readers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        synchronous: Literal["normal", "full"] = "normal",
        timeout: float = 5.0,
        max_size: int | None = None,
        query_timeout: float = 5.0,
        create: bool = True,
        key: str | bytes | Key | None = None,
    ) -> None:
        if not isinstance(create, bool):
            raise ValidationError(f"create must be True or False, not {create!r:.60}")
        if synchronous not in ("normal", "full"):
            raise ValidationError('synchronous must be "normal" or "full"')
        if not 0 <= _finite(timeout, "timeout") <= 86400:
            raise ValidationError(f"timeout must be 0 to 86400 seconds, not {timeout!r:.60}")
        if not 0 < _finite(query_timeout, "query_timeout") <= 3600:
            raise ValidationError("query_timeout must be a number of seconds, up to 3600")
        if max_size is not None and (
            not isinstance(max_size, int)
            or isinstance(max_size, bool)
            or not MIN_QUOTA <= max_size <= INT64_MAX
        ):
            raise ValidationError(
                f"max_size must be a whole number of bytes, at least {MIN_QUOTA:,} "
                f"(an empty store takes about 352 KiB), not {max_size!r}"
            )
        self.path = _file_path(path, "path")
        self._engine = _engine_for(self.path)
        if max_size is not None:
            self._engine.unsupported("max_size")
        self._key = _as_key(key)
        if self._key is not None:
            self._engine.unsupported("key")
            if self.path == ":memory:":
                raise ValidationError("key= encrypts a file; a :memory: store is on no disk")
            _require_ciphers()
        self.synchronous = synchronous
        self.timeout = float(timeout)
        self.query_timeout = float(query_timeout)
        self.max_size = max_size
        self._create = create
        self._lock = threading.RLock()
        self._depth = 0
        self._cache_counts: dict[str, list[int]] = {}  # cache -> [hits, misses] not yet written
        # Reads of hygiene collections not yet counted: collection -> key -> [count, last].
        self._accesses: dict[str, dict[str, list[Any]]] = {}
        # Messages added or deleted: close() brings the search index up to date (sql/0008).
        self._added_messages = False
        # Rows each collection was given since its index last caught up (sql/0013).
        self._fts_writes: dict[str, int] = {}
        self._generation = 0  # moved on by every declaration: Collection handles reload
        # Declarations read by collection(): the (generation, data version) then, the
        # declaration, and whether a call without one leaves it as it is (_known_meta).
        self._metas: dict[str, tuple[tuple[int, Any], _Meta, bool]] = {}
        # Collections' vectors in memory, by collection name (see _VectorIndex).
        self._vector_indexes: dict[str, _VectorIndex] = {}
        self._vector_writes = 0  # vectors written since the change log was last trimmed
        self._reconnect_pending = False  # the server ended the connection: see _reconnect
        self._conn: apsw.Connection | None = None  # (errors while opening find none)
        self._conn = self._open()
        _STORES.add(self)

    @classmethod
    def from_env(cls, **options: Any) -> Store:
        """The store named by the MEMSTORE_PATH environment variable."""
        path = os.environ.get("MEMSTORE_PATH")
        if not path:
            raise MemstoreError("MEMSTORE_PATH is not set")
        return cls(path, **options)

    def _open(self) -> Any:
        conn = self._engine.open(self)
        self._execute, self._execute_many = self._engine.bind(conn)
        return conn

    @property
    def shown_path(self) -> str:
        """The path, or a PostgreSQL URL with its password as ``***``: for messages, logs
        and reprs (``path`` keeps the password, to connect again)."""
        return without_password(self.path)

    def _after_fork(self) -> None:
        if self._conn is not None and self.path != ":memory:":
            _ABANDONED.append(self._conn)
            self._conn = self._open()
        self._lock = threading.RLock()
        self._depth = 0
        self._cache_counts = {}  # the parent's, which the parent writes

    def __repr__(self) -> str:
        return f"<memstore.Store {self.shown_path!r}>"

    @property
    def encrypted(self) -> bool:
        """Whether the store's file is encrypted (opened with a key)."""
        return self._key is not None

    def _error(self, err: BaseException) -> MemstoreError:
        """A driver error as memstore's; a full file under a quota is the quota's."""
        translated = self._engine.translate(err)
        if isinstance(translated, StorageFullError) and self.max_size is not None:
            return QuotaError(f"{self.path} reached its size quota of {self.max_size:,} bytes")
        if self._depth == 0 and self._check_connection():
            return MemstoreError(
                f"{translated} (the connection was lost: the next call connects again)"
            )
        return translated

    def _check_connection(self) -> bool:
        """After an error outside any transaction: whether the server ended the connection
        (it restarted, failed over, or dropped an idle connection). If it did, the next
        statement, transaction or ``connection`` connects again (_reconnect), with every
        handle taking its declarations afresh; the call that met the loss has raised."""
        conn = self._conn
        if conn is None or not self._engine.lost(conn):
            return False
        if not self._reconnect_pending:
            self._reconnect_pending = True

            def execute(sql: str, params: Sequence[Any]) -> Any:
                self._reconnect()
                return self._execute(sql, params)

            def execute_many(sql: str, rows: Iterable[Sequence[Any]]) -> Any:
                self._reconnect()
                return self._execute_many(sql, rows)

            self._execute, self._execute_many = execute, execute_many
        return True

    def _reconnect(self) -> None:
        """Connect again in place of a lost connection (which is closed); if the server
        cannot be reached yet, the error says so and the next call tries again."""
        old = self._conn
        if old is not None:
            with contextlib.suppress(*self._engine.errors):
                self._engine.close(old)
        self._conn = self._open()
        self._reconnect_pending = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._lock:
            if self._conn is None:
                return
            if self._depth == 0:
                with contextlib.suppress(MemstoreError):
                    if self._cache_counts:
                        with self._transaction():
                            for name in list(self._cache_counts):
                                _flush_cache_counts(self, name)
                    if self._accesses:
                        _flush_accesses(self)
                    if self._added_messages:  # a store that only read takes no write lock
                        _catch_up_messages(self)
                    for name in list(self._fts_writes):
                        meta = self._load_meta(name)
                        if meta is not None and meta.fts and _fts_waiting(self, name):
                            _catch_up_fts(self, name, meta.fts)
            conn, self._conn = self._conn, None
            self._execute = self._execute_many = _closed
            self._engine.close(conn)

    @property
    def connection(self) -> Any:
        """The underlying connection (apsw's, or psycopg's on PostgreSQL), for anything
        memstore does not wrap."""
        if self._conn is None:
            raise MemstoreError("the store is closed")
        if self._reconnect_pending:
            with self._lock:
                if self._reconnect_pending:
                    self._reconnect()
        return self._conn

    def _data_version(self) -> Any:
        """Moves on when another connection may have changed a declaration."""
        with self._lock:
            try:
                return self._engine.data_version(self)
            except self._engine.errors as err:
                raise self._error(err) from err

    @property
    def schema_version(self) -> int:
        with self._lock:
            try:
                return self._engine.schema_version(self.connection)
            except self._engine.errors as err:
                raise self._error(err) from err

    # -- transactions ------------------------------------------------------

    def transaction(self, *, immediate: bool = True, exclusive: bool = True) -> _Transaction:
        """Run a block atomically; nestable, across collections.

        >>> with store.transaction():
        ...     a.put("x", {...})
        ...     b.delete("y")

        The outermost block is ``BEGIN IMMEDIATE`` (so it waits for, rather
        than deadlocks with, other writers); inner blocks are savepoints. An
        exception anywhere inside rolls back everything in its block.
        ``immediate=False`` begins a deferred transaction instead: reads in the
        block see one snapshot, and the write lock is taken only if it writes.

        On PostgreSQL, where writers run at once, an outermost immediate block
        runs alone among the blocks of every connection that are ``exclusive``
        (the default), as every write block does on SQLite: what it reads, no
        other such block changes before it ends, so a read-modify-write loses
        no update. ``exclusive=False`` lets a block of writes that depend on
        nothing it read run beside them (memstore's own calls do).
        """
        return _Transaction(self, immediate, exclusive)

    def _transaction(self, *, immediate: bool = True) -> _Transaction:
        """memstore's own blocks: each call's writes, atomic, not ``exclusive`` (they
        depend on no read of the caller's, and take the row locks they need)."""
        return _Transaction(self, immediate)

    # -- statements, each under the lock with driver errors translated -----

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                rows: list[Any] = self._execute(sql, params).fetchall()
                return rows
            except self._engine.errors as err:
                raise self._error(err) from err

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> list[Any]:
        with self._lock:
            try:
                found: list[Any] = self._execute_many(sql, rows).fetchall()
                return found
            except self._engine.errors as err:
                raise self._error(err) from err

    def _stream(
        self, sql: str, params: Sequence[Any], convert: Callable[[Any], Any]
    ) -> Iterator[Any]:
        """Yield converted rows, holding the lock only while fetching each batch."""
        engine = self._engine
        with self._lock:
            try:
                cursor = engine.cursor(self.connection, sql, params)
            except engine.errors as err:
                raise self._error(err) from err
        try:
            while True:
                with self._lock:
                    try:
                        batch = list(islice(cursor, 256))
                    except engine.errors as err:
                        raise self._error(err) from err
                if not batch:
                    return
                for row in batch:
                    yield convert(row)
        finally:
            cursor.close()

    # -- collections -------------------------------------------------------

    def collection(
        self,
        name: str,
        *,
        fields: Mapping[str, type | str] | None = None,
        fts: Sequence[str] | None = None,
        ttl: timedelta | float | str | None = None,
        model: type | None = None,
        history: bool | None = None,
        indexes: Sequence[str | Sequence[str] | Mapping[str, Any]] | None = None,
        vectors: Mapping[str, Any] | None = None,
        temporal: bool | None = None,
        hygiene: bool | Mapping[str, Any] | None = None,
        time_indexes: bool | None = None,
        create: bool = True,
    ) -> Collection:
        """Open a collection, creating it or adding to its declaration.

        >>> events = store.collection(
        ...     "events",
        ...     fields={"kind": str, "duration": float},  # indexed columns
        ...     fts=["summary", "payload.text"],           # full-text search
        ...     ttl=timedelta(days=30),                    # default time to live
        ... )

        The declaration is remembered in the file, so ``store.collection("events")``
        opens it again as it was. Fields and FTS paths declared later are
        added (indexes and the FTS index filled from the existing rows, which
        are not rewritten); a field cannot change type. ``ttl`` replaces the
        collection's default time to live. ``model`` is a pydantic model class:
        records are validated by it and returned as its instances.
        ``history=True`` keeps every record's previous versions (see
        ``Collection.history``); ``history=False`` stops keeping new ones.

        ``indexes`` adds indexes over several fields, for filters and orders
        that use them together: ``indexes=[("event_type", "-timestamp")]``
        (``-`` for descending), or ``{"fields": [...], "unique": True}`` for a
        unique one. Their fields are declared fields (in ``fields`` now or
        before) or ``key``, ``created_at``, ``updated_at``, ``expires_at``.

        ``vectors`` gives records embeddings for ``Collection.nearest`` and
        ``hybrid``: ``{"dim": 384, "model": "all-MiniLM-L6-v2"}``, and
        optionally ``"metric"`` (the default of nearest(): "cosine", "dot" or
        "l2"), ``"fields"`` (the text paths ``embed`` reads; the FTS paths by
        default) and ``"embed"``, a function from a list of texts to their
        vectors (or a LangChain ``Embeddings``), kept by this handle only:
        with it, records are embedded as they are put and queries may be text.
        The model and dimension cannot change but through ``re_embed``.

        ``temporal=True`` gives records validity periods in world time
        (``valid_from``/``valid_to``), ``supersede`` and ``invalidate``, and
        ``as_of=``/``known_at=`` on reads: see Collection.supersede. It keeps
        history (``known_at`` reads it) and cannot be undone.

        ``hygiene=True`` (or ``{"dedup": "exact" | "near", "threshold": 0.95,
        "policy": "skip" | "merge" | "keep"}``) tends the memory: dedup on
        write, ``pin``, soft ``forget`` and ``purge``, reads counted with
        ``track=True``, ``candidates_for_merge`` and ``merge``; see
        Collection.remember.

        ``time_indexes=False`` goes without the indexes on ``created_at`` and
        ``updated_at``: every put writes each index it has (these two cost a
        quarter of a single put at 100,000 records), and a collection read by
        key and by its own indexes never uses them; retention by age and
        orders by those times then scan the table. ``True`` makes them again.

        ``create=False`` opens only a collection that exists, and raises
        NotFoundError otherwise; so does ``store["events"]``. Creating is the
        default because the declaration is the schema: the same call creates
        the collection on the first run and opens it on every later one. Code
        that only reads, or takes a name from outside (a user, a command
        line), should use ``create=False`` or ``store[name]``, so that a typo
        is an error rather than a new, empty collection.
        """
        check_collection_name(name)
        if not isinstance(create, bool):
            raise ValidationError(f"create must be True or False, not {create!r:.60}")
        if (  # opened as it is, as each call of a pool's user may
            fields is None
            and fts is None
            and ttl is None
            and history is None
            and indexes is None
            and vectors is None
            and temporal is None
            and hygiene is None
            and time_indexes is None
        ):
            meta = self._known_meta(name)
            if meta is not None and meta.name == name and self._metas[name][2]:
                return Collection(self, meta, model, seen=self._metas[name][0])
        wanted_vectors, embed = _normalize_vectors(vectors)
        wanted_fields = _normalize_fields(fields)
        wanted_fts = _normalize_fts(fts)
        ttl_seconds = None if ttl is None else _seconds(ttl, "ttl")
        wanted_indexes = _normalize_indexes(indexes)
        _check_columns_distinct([*wanted_fields, *wanted_fts])
        if history is not None and not isinstance(history, bool):
            raise ValidationError(f"history must be True or False, not {history!r}")
        if temporal is not None and not isinstance(temporal, bool):
            raise ValidationError(f"temporal must be True or False, not {temporal!r}")
        if time_indexes is not None and not isinstance(time_indexes, bool):
            raise ValidationError(f"time_indexes must be True or False, not {time_indexes!r}")
        wanted_hygiene = _normalize_hygiene(hygiene)
        wanted = _Declaration(
            wanted_fields,
            wanted_fts,
            ttl_seconds,
            history,
            wanted_indexes,
            wanted_vectors,
            temporal,
            wanted_hygiene,
            time_indexes,
        )
        meta = self._known_meta(name)
        if meta is None and not create:
            raise NotFoundError(self._no_collection(name))
        if meta is not None and meta.name != name:
            raise ValidationError(f"collection {meta.name!r} exists; names ignore case")
        if meta is None or _declared(meta, wanted) != meta:
            with self._transaction():
                hygienic = meta is not None and meta.hygiene is not None
                meta = self._declare(name, wanted)
                opened = Collection(self, meta, model, embed=embed)
                if meta.hygiene is not None and not hygienic:  # the records there: hashes
                    opened._after_hygienic_write(
                        opened._hashed(
                            self._fetch(f"SELECT key, body FROM {quote_identifier(name)}")
                        )
                    )
            return opened
        return Collection(self, meta, model, embed=embed)

    def __getitem__(self, name: str) -> Collection:
        """The existing collection ``name`` as declared; NotFoundError if there is none.

        >>> notes = store["notes"]
        """
        return self.collection(name, create=False)

    def collections(self) -> list[str]:
        """Names of the collections in this file."""
        return [r[0] for r in self._fetch("SELECT name FROM _memstore_collections ORDER BY name")]

    def _no_collection(self, name: object) -> str:
        """NotFoundError's message for a missing collection, naming those there are."""
        names = self.collections()
        known = f"; there are {', '.join(names)}" if names else "; there are none yet"
        return f"no collection named {name!r}{known}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._load_meta(name) is not None

    def drop_collection(self, name: str) -> None:
        """Delete a collection: its table, indexes, FTS index and registry entry."""
        meta = self._require_meta(name)
        with self._transaction():
            self._engine.lock_declarations(self)
            meta = self._require_meta(name)  # as it is now no other declaration runs
            self._engine.vector_index(self, meta.name, None)
            for sql in self._engine.drop_collection_sql(meta.name):
                self._fetch(sql)
            self._fetch("DELETE FROM _memstore_collections WHERE name = ?", (meta.name,))
            # The vectors' log after the vectors, whose deletes it logs.
            for table in ("memstore_versions", "memstore_version_counters", *_VECTOR_TABLES):
                self._fetch(f"DELETE FROM {table} WHERE collection = ?", (meta.name,))
            self._vector_indexes.pop(meta.name, None)
            self._generation += 1

    def event_log(self, name: str) -> EventLog:
        """An append-only event log (created by its first append); see EventLog."""
        return EventLog(self, name)

    def event_logs(self) -> list[str]:
        """Names of the event logs in this file."""
        return [r[0] for r in self._fetch("SELECT name FROM memstore_logs ORDER BY name")]

    def conversations(self) -> Conversations:
        """Chat threads, messages, token usage and branches; see Conversations."""
        return Conversations(self)

    def checkpoints(self) -> Checkpoints:
        """Saved agent states with history, branches and diffs; see Checkpoints."""
        return Checkpoints(self)

    def graph(self, name: str, *, vectors: Mapping[str, Any] | None = None) -> Graph:
        """A graph of nodes, edges and profiles; see Graph. ``vectors={"dim": ...,
        "model": ..., "metric": ..., "embed": ...}`` lets its nodes carry embeddings
        (``add_node(vector=)``, or embedded from their words by ``embed``) and be found
        by ``Graph.nearest``."""
        return Graph(self, name, vectors=vectors)

    def cache(self, name: str, *, ttl: timedelta | float | str | None = None) -> Cache:
        """A TTL cache of JSON values with a default ``ttl``; see Cache."""
        return Cache(self, name, ttl)

    def check(self, *, full: bool = False) -> list[str]:
        """Look for problems; return them, an empty list when all is well.

        The file's integrity (``full=True``: every page and index, not a
        quick check), each collection against the registry, its indexes,
        triggers and FTS index, the ``sql/`` files' indexes and triggers and
        the memory layers' FTS indexes and dangling references (graph edges,
        branches, checkpoint parents). Records past their TTL are not a
        problem: they wait for ``cleanup()`` (``stats()`` counts them).
        ``repair()`` mends what it can.
        """
        problems = self._engine.integrity_problems(self, full)
        tables = self._engine.schema_names(self)
        for name in self.collections():
            if name not in tables:
                problems.append(f"{name}: registered, but its table is missing")
                continue
            problems += self.collection(name).check()
        for name, (kind, _) in self._engine.schema_objects().items():
            if name not in tables:
                problems.append(f"missing {kind} {name}")
        if not self._engine.layers:  # the layers it has that check themselves
            return problems + self._stray_vectors() + self._layer_problems()
        problems += self._stray_vectors()
        with contextlib.suppress(MemstoreError):  # a read-only file: check what is there
            _catch_up_messages(self)
        for fts in _LAYER_FTS:
            problems += _fts_problems(self, fts)
        problems += self._layer_problems()
        problems += [
            f"thread {tid} branches from a missing thread {parent}"
            for tid, parent in self._fetch(
                "SELECT t.id, t.parent_id FROM memstore_threads AS t WHERE t.parent_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM memstore_threads AS p WHERE p.id = t.parent_id)"
            )
        ]
        return problems

    def _stray_vectors(self) -> list[str]:
        """Vectors of no collection with vectors, or of graph items that are gone."""
        problems = [
            f"{count} vectors of {name!r}, which is not a collection with vectors"
            for name, count in self._fetch(_STRAY_VECTORS_SQL.format("collection, count(*)"))
        ]
        return problems + [
            f"{count} vectors of nodes or edges no longer in graph {name[6:]!r}"
            for name, count in self._fetch(
                "SELECT collection, count(*) FROM memstore_vectors "
                f"WHERE {_GRAPH_VECTOR_ORPHAN} GROUP BY collection ORDER BY collection"
            )
        ]

    def _layer_problems(self) -> list[str]:
        """What the memory layers find wrong with themselves."""
        problems = []
        for (graph,) in self._fetch("SELECT DISTINCT graph FROM memstore_edges ORDER BY 1"):
            problems += self.graph(graph).check()
        return problems + self.checkpoints().check() + self.conversations().check()

    def repair(self) -> list[str]:
        """Recreate missing indexes and triggers, rebuild damaged FTS indexes, drop registry
        entries whose table is gone; return a line per change."""
        done = []
        tables = self._engine.schema_names(self)
        for name in self.collections():
            if name not in tables:
                with self._transaction():
                    self._fetch("DELETE FROM _memstore_collections WHERE name = ?", (name,))
                done.append(f"{name}: removed from the registry (its table is gone)")
                continue
            done += self.collection(name)._repair()
        for name, (kind, sql) in self._engine.schema_objects().items():
            if name not in tables:
                with self._transaction():
                    self._fetch(sql)
                done.append(f"recreated {kind} {name}")
        if not self._engine.layers:
            done += self._delete_stray_vectors()
            return done + self._recount_threads()
        done += self._delete_stray_vectors()
        for fts in _LAYER_FTS:
            if _fts_problems(self, fts):
                with self._transaction():
                    self._fetch(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
                    if fts == "memstore_messages_fts":  # the rebuild indexed every message
                        self._fetch("DELETE FROM memstore_messages_fts_gone")
                        self._fetch(
                            "INSERT INTO memstore_fts_progress (fts, indexed_to) "
                            "SELECT ?, coalesce(max(id), 0) FROM memstore_messages WHERE true "
                            "ON CONFLICT (fts) DO UPDATE SET indexed_to = excluded.indexed_to",
                            (fts,),
                        )
                done.append(f"rebuilt the full-text index {fts}")
        return done + self._recount_threads()

    def _delete_stray_vectors(self) -> list[str]:
        """Delete the vectors _stray_vectors finds (repair)."""
        done = []
        with self._transaction():
            for (name,) in self._fetch(_STRAY_VECTORS_SQL.format("DISTINCT collection")):
                self._fetch("DELETE FROM memstore_vectors WHERE collection = ?", (name,))
                done.append(f"deleted the vectors of {name!r}, which is not a collection")
            gone = self._fetch(
                f"DELETE FROM memstore_vectors WHERE {_GRAPH_VECTOR_ORPHAN} RETURNING collection"
            )
            for name in sorted({row[0] for row in gone}):
                done.append(f"deleted vectors of nodes or edges no longer in graph {name[6:]!r}")
        return done

    def _recount_threads(self) -> list[str]:
        """Count again the messages of threads whose counts drifted (repair)."""
        done = []
        conversations = self.conversations()
        for thread_id, *_ in conversations._drifted():
            with self._transaction():
                conversations._recount(thread_id)
            done.append(f"thread {thread_id}: recounted its messages")
        return done

    # -- operations ----------------------------------------------------------

    def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        compact: bool = False,
        progress: Callable[[int, int], None] | None = None,
        key: str | bytes | Key | None = None,
        plaintext: bool = False,
    ) -> dict[str, Any]:
        """Copy the store to ``dest`` while it stays in use, and check the copy.

        Uses SQLite's backup API, or with ``compact=True`` ``VACUUM INTO`` (a
        smaller, defragmented copy). The copy is a consistent snapshot
        whatever other processes write meanwhile, and must pass
        ``integrity_check`` before this returns; ``dest`` must not exist.
        ``progress(pages_done, pages_total)`` is called as pages are copied.

        The copy of an encrypted store is encrypted with its key; ``key``
        encrypts the copy with another key (of a plain store too), and
        ``plaintext=True`` writes a plain copy of an encrypted store. Those
        two go through ``VACUUM INTO`` (no progress is reported).
        """
        self._engine.unsupported("backup")
        target = _file_path(dest, "dest")
        if os.path.exists(target):
            raise ValidationError(f"{target} exists; back up to a new file")
        if not isinstance(plaintext, bool):
            raise ValidationError(f"plaintext must be True or False, not {plaintext!r:.60}")
        new_key = _as_key(key)
        if new_key is not None and plaintext:
            raise ValidationError("a backup is encrypted with key= or plain, not both")
        recrypt = (plaintext and self._key is not None) or new_key not in (None, self._key)
        with self._lock:
            try:
                if recrypt:
                    _vacuum_into(self.connection, target, new_key, plaintext)
                elif compact:
                    _vacuum_into(self.connection, target, None, False)
                else:
                    copy = apsw.Connection(_sqlite_name(target))
                    try:
                        _apply_key(copy, self._key)
                        _copy_pages(self.connection, copy, progress)
                    finally:
                        copy.close()
            except apsw.Error as err:
                raise self._error(err) from err
        written = new_key if recrypt else self._key
        problems = _verify_copy(target, written)
        if problems:
            raise MemstoreError(f"the backup {target} failed its check: {'; '.join(problems)}.")
        return {
            "path": target,
            "bytes": os.path.getsize(target),
            "compact": compact or recrypt,
            "encrypted": written is not None,
        }

    def restore(
        self, source: str | os.PathLike[str], *, key: str | bytes | Key | None = None
    ) -> dict[str, Any]:
        """Replace this store's contents with a backup's, in one step, after checking it.

        The backup must be an intact memstore file no newer than this
        memstore; other connections see the old contents or the new, never a mix.
        An encrypted store restores a backup encrypted with its own key (or
        ``key``, the backup's); a plain store, a plain backup.
        """
        self._engine.unsupported("restore")
        origin = _file_path(source, "source")
        backup_key = _as_key(key) or self._key
        if os.path.isfile(origin) and (self._key is not None) != bool(_encrypted_look(origin)):
            raise EncryptionError(
                "an encrypted store restores an encrypted backup, a plain store a plain one: "
                "encrypt or decrypt the backup first (memstore.encrypt, memstore.decrypt)"
            )
        problems = _verify_copy(origin, backup_key)
        if problems:
            raise MemstoreError(f"{origin} is not a sound memstore backup: {'; '.join(problems)}.")
        with self._lock:
            if self._depth:
                raise MemstoreError("cannot restore inside a transaction")
            copy = apsw.Connection(_sqlite_name(origin), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                _apply_key(copy, backup_key)
                _copy_pages(copy, self.connection, None, restarts=0)
            except apsw.Error as err:
                raise self._error(err) from err
            finally:
                copy.close()
        return {"path": self.path, "from": origin, "schema_version": self.schema_version}

    def export(
        self,
        directory: str | os.PathLike[str],
        *,
        collections: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
        plaintext: bool = False,
    ) -> dict[str, Any]:
        """Write the store as JSONL files with a ``manifest.json``; return the manifest.

        Every collection (or those named) as ``collections/<name>.jsonl``,
        one ``{"key", "record", "created_at", "updated_at", "expires_at"}``
        per line (and ``"vectors"``, ``{part: [floats]}``, for a record with
        vectors), and every memory layer's table as ``tables/<table>.jsonl``,
        one row per line. Streams: memory stays flat whatever the size.
        ``progress`` is called with the number of rows written as they go.
        The files are plain JSON: an encrypted store exports only with
        ``plaintext=True`` (an encrypted copy is ``backup``'s).
        """
        _refuse_plaintext(self, plaintext, "an export is plain JSON")
        engine = self._engine
        root = Path(_file_path(directory, "directory"))
        (root / "collections").mkdir(parents=True, exist_ok=True)
        (root / "tables").mkdir(exist_ok=True)
        manifest: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "memstore_version": __version__,
            "schema_version": self.schema_version,
            "exported_at": _iso(_utcnow()),
            "collections": {},
            "tables": {},
        }
        names = self.collections() if collections is None else list(collections)
        for name in names:
            meta = self._require_meta(name)
            # A record's vectors (of the collection's model), as {part: [floats]}.
            vectors, params = "NULL", []
            if meta.vectors is not None:
                vectors = (
                    f"(SELECT {engine.hex_by_part} FROM memstore_vectors AS v "
                    "WHERE v.collection = ? AND v.record_id = t.id AND v.model = ? AND v.dim = ?)"
                )
                params = [meta.name, meta.vectors["model"], meta.vectors["dim"]]
            # A temporal collection's rows carry their validity, and superseded facts
            # the key they are a fact of.
            validity = "valid_from, valid_to, fact_of" if meta.temporal else "NULL, NULL, NULL"
            rows = self._stream(
                f"SELECT key, body, created_at, updated_at, expires_at, {vectors}, {validity} "
                f"FROM {quote_identifier(meta.name)} AS t ORDER BY id",
                params,
                lambda r: {
                    "key": r[0],
                    "record": json.loads(r[1]),
                    "created_at": r[2],
                    "updated_at": r[3],
                    "expires_at": r[4],
                    **({"vectors": _floats_by_part(r[5])} if r[5] and r[5] != "{}" else {}),
                    **(
                        {"valid_from": r[6], "valid_to": r[7], "fact_of": r[8]}
                        if r[6] is not None
                        else {}
                    ),
                },
            )
            file = f"collections/{meta.name}.jsonl"
            count = _write_jsonl(root / file, rows, progress)
            manifest["collections"][meta.name] = {
                "file": file,
                "rows": count,
                "fields": meta.fields,
                "fts": meta.fts,
                "ttl_seconds": meta.ttl_seconds,
                "history": meta.history,
                "indexes": _index_dicts(meta.indexes),
                "vectors": meta.vectors,
                "temporal": meta.temporal,
                "time_indexes": meta.time_indexes,
            }
        if collections is None:
            for table in _EXPORT_TABLES:
                if table == "memstore_graph_vectors":  # by graph and node: ids are this file's
                    columns, sql = list(_GRAPH_VECTOR_COLUMNS), _GRAPH_VECTORS_SQL
                else:
                    columns = engine.insertable(self, table)
                    sql = (
                        f"SELECT {', '.join(map(quote_identifier, columns))} "
                        f"FROM {quote_identifier(table)} ORDER BY {engine.row_order(columns)}"
                    )
                rows = self._stream(sql, (), functools.partial(_row_dict, columns))
                file = f"tables/{table}.jsonl"
                manifest["tables"][table] = {
                    "file": file,
                    "rows": _write_jsonl(root / file, rows, progress),
                }
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        return manifest

    def import_(
        self,
        source: str | os.PathLike[str],
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Import a directory written by ``export()``; return a report.

        Collections are declared as the manifest says and their rows keep
        their keys and timestamps. The memory layers' rows are merged with
        what the store holds: matched by their natural keys (a thread's id,
        an event's id, a message's position in its thread), given new row
        ids, and appended after an event log's own events; the report counts
        the rows really written. Files are read a line at a time; one that
        is not valid JSONL is reported under ``"skipped"`` and none of its
        rows are written; everything else goes in one transaction, or
        nothing does. Importing the same export again changes nothing.
        ``dry_run`` counts the rows in the files and writes nothing.
        ``progress`` is called with numbers of rows as they are written.
        (The file layouts of older stores are read by the ``memstore_legacy``
        module, which ``memstore import`` uses.)
        """
        files = _read_manifest(Path(_file_path(source, "source")))
        report: dict[str, Any] = {
            "source": os.fspath(source),
            "layout": "memstore export",
            "dry_run": dry_run,
            "collections": {},
            "tables": {},
            "skipped": [],
        }

        def done(file: _ExportFile, count: int) -> None:
            report["collections" if file.kind == "collection" else "tables"][file.name] = count

        def skip(file: _ExportFile, why: str) -> None:
            report["skipped"].append(
                {"file": file.path.relative_to(source).as_posix(), "error": why}
            )

        if dry_run:
            for file in files:
                try:
                    done(file, sum(1 for _ in _jsonl(file.path)))
                except _BadFile as err:
                    skip(file, str(err))
            return report
        with self._transaction():
            self._engine.defer_references(self)  # rows may come before their parents
            layers = _LayerImport(self)
            for file in files:
                try:
                    with self._transaction():  # a file that turns out malformed is undone alone
                        if file.kind == "collection":
                            collection = self.collection(file.name, **file.declaration)
                            count = collection.import_rows(_jsonl(file.path))
                        else:
                            count = layers.rows(file.name, _jsonl(file.path))
                except _BadFile as err:
                    skip(file, str(err))
                    continue
                done(file, count)
                if progress:
                    progress(count)
            layers.finish()
        return report

    # -- maintenance ---------------------------------------------------------

    def cleanup(
        self,
        *,
        older_than: timedelta | float | str | None = None,
        by: Literal["created", "updated"] = "created",
        keep_last: int | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, int]:
        """Apply retention to every layer; return how many rows each part lost.

        >>> store.cleanup(older_than=timedelta(days=30))
        {'collection events': 12, 'event log agent-1': 40, 'conversations': 2,
         'checkpoints': 7, 'graph history': 4, 'cache llm': 3}

        Expired records and cache entries always go. ``older_than`` and
        ``keep_last`` apply to every collection (``by`` as in
        ``Collection.cleanup``), every event log and each thread's
        checkpoints (tagged ones and branch points are kept, as in
        ``Checkpoints.cleanup``); ``older_than`` also removes conversations
        with no newer message, and versions of graph nodes and edges replaced
        before then (``Graph.cleanup``). ``dry_run=True`` does the same work in a
        transaction it then rolls back: the counts are exact and nothing
        changes (the write lock is held meanwhile). ``progress(done, total)``
        is called after each part.
        """
        age = None if older_than is None else _seconds(older_than, "older_than")
        if keep_last is not None:
            _check_count(keep_last, "keep_last")
        _check_by(by)
        steps: list[tuple[str, Callable[[], int]]] = [
            (
                f"collection {name}",
                functools.partial(
                    self.collection(name).cleanup, older_than=age, by=by, keep_last=keep_last
                ),
            )
            for name in self.collections()
        ]
        steps += self._layer_cleanup(age, keep_last)
        removed: dict[str, int] = {}

        def run() -> None:
            for done, (label, step) in enumerate(steps, 1):
                removed[label] = step()
                if progress:
                    progress(done, len(steps))

        if not dry_run:
            run()
            return removed
        with contextlib.suppress(_RolledBack), self._transaction():
            run()
            raise _RolledBack
        return removed

    def _layer_cleanup(
        self, age: float | None, keep_last: int | None
    ) -> list[tuple[str, Callable[[], int]]]:
        """Store.cleanup's steps for the memory layers: event logs, conversations,
        checkpoints, graph history, caches."""
        steps: list[tuple[str, Callable[[], int]]] = [
            (
                f"event log {log}",
                functools.partial(self.event_log(log).cleanup, older_than=age, keep_last=keep_last),
            )
            for log in self.event_logs()
        ]
        if age is not None:
            steps.append(
                ("conversations", functools.partial(self.conversations().cleanup, older_than=age))
            )
        if age is not None or keep_last is not None:
            steps.append(
                ("checkpoints", functools.partial(self._cleanup_checkpoints, age, keep_last))
            )
        if age is not None:
            steps.append(("graph history", functools.partial(_cleanup_graph_history, self, age)))
        steps += [(f"cache {name}", self.cache(name).expire) for name in self._cache_names()]
        return steps

    def _cleanup_checkpoints(self, age: float | None, keep_last: int | None) -> int:
        checkpoints = self.checkpoints()
        threads = self._fetch("SELECT DISTINCT thread_id FROM memstore_checkpoints ORDER BY 1")
        return sum(
            checkpoints.cleanup(thread, older_than=age, keep_last=keep_last)
            for (thread,) in threads
        )

    def _cache_names(self) -> list[str]:
        return [r[0] for r in self._fetch("SELECT DISTINCT cache FROM memstore_cache ORDER BY 1")]

    def optimize(self) -> dict[str, int]:
        """Refresh the query planner's statistics and merge full-text index segments.

        Returns ``{"fts_indexes": n}``, the number of FTS indexes merged.
        Worth running after large loads or deletes; ``close()`` also runs
        SQLite's cheaper ``PRAGMA optimize``. On PostgreSQL: ANALYZE, and the
        full-text (GIN) indexes' pending entries merged into them.
        """
        return {"fts_indexes": self._engine.optimize(self)}

    def vacuum(self) -> dict[str, int]:
        """Rebuild the database to give its free pages back; return its size before and after.

        Returns ``{"before": bytes, "after": bytes}`` (the database's size in
        pages times the page size; in WAL mode the file itself shrinks at
        the next ``checkpoint_wal()``). Blocks other writers while it runs
        and needs temporary disk space up to the database's size.
        """
        self._engine.unsupported("vacuum")
        with self._lock:
            if self._depth:
                raise MemstoreError("cannot vacuum inside a transaction")
            before = self._database_bytes()
            self._fetch("VACUUM")
            return {"before": before, "after": self._database_bytes()}

    def checkpoint_wal(
        self, mode: Literal["passive", "full", "restart", "truncate"] = "truncate"
    ) -> dict[str, Any]:
        """Copy the write-ahead log into the database file (and, by default, truncate it).

        Returns ``{"busy": bool, "wal_pages": n, "checkpointed": n}``:
        ``busy`` is True when readers still held part of the log, so not all
        of it could be copied (try again later). ``mode`` is SQLite's
        ``wal_checkpoint`` mode.
        """
        self._engine.unsupported("checkpoint_wal")
        if mode not in ("passive", "full", "restart", "truncate"):
            raise ValidationError(
                f'mode must be "passive", "full", "restart" or "truncate", not {mode!r}'
            )
        busy, log, done = self._fetch(f"PRAGMA wal_checkpoint({mode.upper()})")[0]
        return {"busy": bool(busy), "wal_pages": log, "checkpointed": done}

    def stats(self) -> dict[str, Any]:
        """Sizes, schema version, every collection and the rows in each memory layer.

        Returns ``{"path", "bytes", "wal_bytes", "free_bytes", "schema_version",
        "memstore_version", "collections": {name: Collection.stats()},
        "layers": {table: rows}}``. ``bytes`` is the file's size on disk (for
        ``:memory:``, the database's); ``free_bytes`` is what ``vacuum()``
        would give back.
        """
        collections = {name: self.collection(name).stats() for name in self.collections()}
        size, wal_bytes, free_bytes = self._engine.sizes(self)
        return {
            "path": self.shown_path,
            "bytes": size,
            "wal_bytes": wal_bytes,
            "free_bytes": free_bytes,
            "schema_version": self.schema_version,
            "memstore_version": __version__,
            "collections": collections,
            "layers": {table: _rows_of(self, table) for table in LAYER_TABLES},
        }

    def _database_bytes(self) -> int:
        pages = self._fetch("PRAGMA page_count")[0][0]
        return int(pages) * int(self._fetch("PRAGMA page_size")[0][0])

    # -- registry ----------------------------------------------------------

    def _known_meta(self, name: str) -> _Meta | None:
        """_load_meta, read again only when a declaration may have changed since it was
        read (as Collection._fresh tells): ``store.collection(name)`` for each call, as a
        pool's user writes it, asks the database nothing (on PostgreSQL a round trip)."""
        seen = (self._generation, self._data_version())
        known = self._metas.get(name)
        if known is not None and known[0] == seen:
            return known[1]
        meta = self._load_meta(name)
        if meta is not None:  # and whether opening it as it is leaves it as it is
            self._metas[name] = (seen, meta, _declared(meta, _OPEN_AS_IT_IS) == meta)
        return meta

    def _load_meta(self, name: str) -> _Meta | None:
        rows = self._fetch(
            "SELECT name, fields, fts, ttl_seconds, history, indexes, vectors, temporal, hygiene, "
            "time_indexes FROM _memstore_collections WHERE name = ?",
            (name,),
        )
        if not rows:
            return None
        (
            found,
            fields,
            fts,
            ttl_seconds,
            history,
            indexes,
            vectors,
            temporal,
            hygiene,
            time_indexes,
        ) = rows[0]
        return _Meta(
            found,
            json.loads(fields),
            json.loads(fts),
            ttl_seconds,
            bool(history),
            tuple((tuple(i["fields"]), bool(i["unique"])) for i in json.loads(indexes)),
            None if vectors is None else json.loads(vectors),
            bool(temporal),
            None if hygiene is None else json.loads(hygiene),
            bool(time_indexes),
        )

    def _vector_index(self, name: str, config: Mapping[str, Any]) -> _VectorIndex:
        """The collection's vectors in memory, brought up to date; call in a snapshot."""
        index = self._vector_indexes.get(name)
        if index is None or (index.model, index.dim) != (config["model"], config["dim"]):
            index = self._vector_indexes[name] = _VectorIndex(name, config["model"], config["dim"])
        # Inside a caller's transaction (ours is depth 1), what we see may be rolled back.
        index.sync(self, tentative=self._depth > 1)
        return index

    def _require_meta(self, name: str) -> _Meta:
        meta = self._load_meta(name) if isinstance(name, str) else None
        if meta is None:
            raise NotFoundError(self._no_collection(name))
        return meta

    def _declare(self, name: str, wanted: _Declaration) -> _Meta:
        """Create or extend a collection; runs inside a transaction. Check what is wanted
        against what is there (_declared), plan the statements (_declaration_sql), apply
        them and the registry row together."""
        self._engine.lock_declarations(self)
        old, engine = self._load_meta(name), self._engine
        if old is None:
            if engine.has_table(self, name):
                raise SchemaError(f"{name!r} already exists in this file and is not a collection")
            old = _Meta(name, {}, [], None)
            columns: dict[str, str] = {}
            statements = engine.create_table_sql(name)
        else:
            columns = engine.columns(self, name)
            statements = []
        new = _declared(old, wanted)
        engine.check_names(new)
        for sql in [*statements, *_declaration_sql(old, new, columns, engine)]:
            self._fetch(sql)
        self._generation += 1
        self._fetch(
            "INSERT INTO _memstore_collections (name, fields, fts, ttl_seconds, history, "
            "indexes, vectors, temporal, hygiene, time_indexes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "fields = excluded.fields, fts = excluded.fts, ttl_seconds = excluded.ttl_seconds, "
            "history = excluded.history, indexes = excluded.indexes, "
            "vectors = excluded.vectors, temporal = excluded.temporal, "
            "hygiene = excluded.hygiene, time_indexes = excluded.time_indexes, "
            f"updated_at = {engine.now}",
            (
                name,
                json.dumps(new.fields),
                json.dumps(new.fts),
                new.ttl_seconds,
                new.history,
                json.dumps(_index_dicts(new.indexes)),
                None if new.vectors is None else json.dumps(new.vectors),
                new.temporal,
                None if new.hygiene is None else json.dumps(new.hygiene),
                new.time_indexes,
            ),
        )
        if new.vectors != old.vectors:
            engine.vector_index(self, name, new.vectors)
        return new


class _Declaration(NamedTuple):
    """What a call to Store.collection asks for, normalized; None: leave as it is."""

    fields: dict[str, str]
    fts: list[str]
    ttl_seconds: float | None
    history: bool | None
    indexes: tuple[tuple[tuple[str, ...], bool], ...]
    vectors: dict[str, Any] | None
    temporal: bool | None = None
    hygiene: dict[str, Any] | None = None
    time_indexes: bool | None = None


#: Store.collection's declaration when none is given.
_OPEN_AS_IT_IS = _Declaration({}, [], None, None, (), None)


def _declared(old: _Meta, wanted: _Declaration) -> _Meta:
    """The collection as it is after ``wanted`` is added to its declaration ``old``: the
    one place a declaration is compared with what is there. A change that cannot be made
    (a field's type, another vector model) raises; equal to ``old``: nothing to do."""
    name = old.name
    for path, kind in wanted.fields.items():
        if old.fields.get(path, kind) != kind:
            raise SchemaError(
                f"field {path!r} of {name!r} is declared {old.fields[path]}, not {kind}"
            )
    _check_columns_distinct([*old.fields, *old.fts, *wanted.fields, *wanted.fts])
    fields = {**old.fields, **wanted.fields}
    indexes = old.indexes + tuple(i for i in wanted.indexes if i not in old.indexes)
    for spec in indexes[len(old.indexes) :]:
        for field in spec[0]:
            if field.lstrip("-") not in fields and field.lstrip("-") not in META_COLUMNS:
                raise ValidationError(
                    f"index field {field!r} of {name!r} is not a declared field: "
                    "declare it in fields= first"
                )
    temporal = old.temporal or bool(wanted.temporal)
    if old.temporal and wanted.temporal is False:
        raise SchemaError(f"{name!r} is temporal: its records' validity periods cannot be dropped")
    if temporal and any(unique for _, unique in indexes):
        raise SchemaError(
            f"{name!r}: a temporal collection keeps superseded facts beside current ones, "
            "so a unique index would refuse them; drop unique=True"
        )
    clashes = {field_column(f) for f in fields} & {
        *(_HYGIENE_COLUMNS if wanted.hygiene is not None or old.hygiene is not None else ()),
        *(("valid_from", "valid_to", "fact_of") if temporal else ()),
    }
    if clashes:
        raise SchemaError(
            f"{name!r} has fields named {', '.join(sorted(clashes))}, which hygiene or "
            "temporal=True keep for themselves"
        )
    history = old.history if wanted.history is None else wanted.history
    if temporal and wanted.history is False:
        raise SchemaError(f"{name!r} is temporal: it keeps history, which known_at reads")
    return _Meta(
        name,
        fields,
        old.fts + [path for path in wanted.fts if path not in old.fts],
        old.ttl_seconds if wanted.ttl_seconds is None else wanted.ttl_seconds,
        history or temporal,
        indexes,
        _declared_vectors(name, old.vectors, wanted.vectors),
        temporal,
        (
            {"dedup": None, "policy": "skip", **(old.hygiene or {}), **wanted.hygiene}
            if wanted.hygiene is not None
            else old.hygiene
        ),
        old.time_indexes if wanted.time_indexes is None else wanted.time_indexes,
    )


def _declaration_sql(
    old: _Meta, new: _Meta, columns: Mapping[str, str], engine: _Engine
) -> list[str]:
    """The statements taking a collection's table from ``old`` to ``new`` (see _declared),
    given its columns and their types; a column that cannot take a field's type raises."""
    name, statements = new.name, []
    columns = dict(columns)
    added = [path for path in new.fields if path not in old.fields]
    searched = [p for p in new.fts if p not in old.fts] if engine.fts_columns else []
    for path in [*added, *searched]:
        column, kind = field_column(path), new.fields.get(path, "text")
        column_type = engine.column_type(kind)
        if column not in columns and (kind == "text" or path not in old.fts):
            statements.append(engine.add_column_sql(name, path, kind))
            columns[column] = column_type
        elif column not in columns or columns[column] != column_type:
            # Searched as text already (where that needs no column, the same rule).
            raise SchemaError(
                f"{path!r} of {name!r} is already a {columns.get(column, 'TEXT')} column "
                f"(indexed for search as text); it cannot become {kind}"
            )
    if new.fts != old.fts:
        statements += engine.fts_sql(name, new.fts)
    if new.temporal and not old.temporal:
        text = engine.time_type
        for column, default in (("valid_from", NEVER_BEFORE), ("valid_to", NEVER_AFTER)):
            if column not in columns:
                statements.append(
                    f"ALTER TABLE {quote_identifier(name)} ADD COLUMN {column} {text} NOT NULL "
                    f"DEFAULT {_literal(default)}"
                )
        if "fact_of" not in columns:
            statements.append(f"ALTER TABLE {quote_identifier(name)} ADD COLUMN fact_of {text}")
        statements.append(_validity_index_sql(name))
        statements.append(_subject_index_sql(name))
    if new.hygiene is not None and old.hygiene is None:
        for column, kind in engine.hygiene_columns.items():
            if column not in columns:
                statements.append(
                    f"ALTER TABLE {quote_identifier(name)} ADD COLUMN {column} {kind}"
                )
        statements.append(_index_sql(name, "content_hash"))
    if (new.temporal, new.hygiene is None) != (old.temporal, old.hygiene is None):
        added = list(new.fields)  # the fields' indexes take the columns reads test
        statements += [
            f"DROP INDEX IF EXISTS {quote_identifier(_index_name(name, field_column(p)))}"
            for p in new.fields
        ]
    if new.time_indexes != old.time_indexes:
        for column in _TIME_INDEXED:
            statements.append(
                _index_sql(name, column, nulls_first=engine.nulls_first)
                if new.time_indexes
                else f"DROP INDEX IF EXISTS {quote_identifier(_index_name(name, column))}"
            )
    if new.temporal and not old.temporal:
        statements.append(engine.drop_trigger_sql(name, _touch_trigger(name)))
        statements.append(engine.touch_trigger_sql(name, temporal=True))
    if new.history != old.history or new.temporal != old.temporal:
        statements += engine.history_trigger_sql(name, drop=True)
        if new.history:
            statements += engine.history_trigger_sql(name, temporal=new.temporal)
    statements.append(engine.ttl_trigger_sql(name, new.ttl_seconds is not None))
    for spec in new.indexes[len(old.indexes) :]:
        statements.append(_compound_index_sql(name, spec, nulls_first=engine.nulls_first))
        statements.append(engine.analyze_sql(name, _compound_index_name(name, spec)))
    # A field gets an index of its own unless an index over several fields starts
    # with it: that one serves the same lookups, and each index costs every write.
    led = _leading_fields(new.indexes)
    for path in new.fields:
        index = _index_name(name, field_column(path))
        if path in led:
            statements.append(f"DROP INDEX IF EXISTS {quote_identifier(index)}")
        elif path in added:
            statements.append(_field_index_sql(new, path, nulls_first=engine.nulls_first))
    if new.vectors is not None and old.vectors is None:
        statements.append(engine.vector_trigger_sql(name))
    if new.temporal and new.vectors is not None and not (old.temporal and old.vectors):
        statements += engine.vector_history_trigger_sql(name, drop=True)
        statements += engine.vector_history_trigger_sql(name)
    return statements


# --------------------------------------------------------------------------
# Vector memory (sql/0011): embeddings in the file, their index in memory
# --------------------------------------------------------------------------


class Neighbor(NamedTuple):
    """A ``Collection.nearest`` result. ``score`` is higher for nearer records, whatever
    the metric: the cosine similarity, the dot product, or (for "l2") the Euclidean
    distance negated. The raw values keep their own names: ``similarity`` (cosine or
    dot; None for l2) and ``distance`` (l2; None otherwise)."""

    key: str
    record: Any
    score: float
    similarity: float | None
    distance: float | None


class HybridHit(NamedTuple):
    """A ``Collection.hybrid`` result, with what its score is made of: ``scores`` has
    text_rank, bm25, vector_rank, similarity (None where a search missed the
    record), rrf, and recency and importance when asked for, and score."""

    key: str
    record: Any
    score: float
    scores: dict[str, Any]


# Vectors of a collection that is gone, or has no vectors declared (dropped by another
# tool); a graph's ("graph:" and its name) are its nodes'.
_STRAY_VECTORS_SQL = (
    "SELECT {} FROM memstore_vectors WHERE collection NOT IN "
    "(SELECT name FROM _memstore_collections WHERE vectors IS NOT NULL) "
    "AND substr(collection, 1, 6) <> 'graph:' GROUP BY collection"
)

# Vectors of a graph's nodes and edges that are gone (deleted with triggers off).
_GRAPH_VECTOR_ORPHAN = (
    "substr(memstore_vectors.collection, 1, 6) = 'graph:' AND NOT EXISTS (SELECT 1 "
    "FROM memstore_graph_text AS g WHERE g.id = memstore_vectors.record_id "
    "AND 'graph:' || g.graph = memstore_vectors.collection)"
)

# Deleted in this order with a collection: the vectors, then the log of their deletes.
_VECTOR_TABLES = ("memstore_vectors", "memstore_vector_log", "memstore_vector_log_trimmed")


class _VectorIndex:
    """One collection's vectors (of its model) in memory: a float32 matrix, a slot per
    vector, following the file's changes through memstore_vector_log.

    ``sync`` runs inside a read snapshot. A sync inside a caller's transaction
    may see writes a rollback will undo: it does not move ``seq`` and
    remembers the records it changed, which the next sync reads again.
    """

    def __init__(self, name: str, model: str, dim: int) -> None:
        np = _numpy()
        self.np, self.name, self.model, self.dim = np, name, model, dim
        self.matrix = np.empty((0, dim), np.float32)
        self.norms = np.empty(0, np.float32)
        self.largest = 0.0  # the largest norm of a vector here, or more (see search)
        self.ids = np.empty(0, np.int64)  # the record id of each slot; -1: free
        self.size = 0  # slots in use or freed; the matrix has room for more
        self.slot: dict[int, int] = {}  # record id -> its (first) slot
        self.more: dict[int, list[int]] = {}  # record id -> its other parts' slots, if any
        self.free: list[int] = []
        self.multi = False  # whether some record has several parts
        self.seq = -1  # the last change (memstore_vector_log.seq) taken; -1: never loaded
        self.uncommitted: set[int] = set()
        self.reload = False
        self.codes: Any = None  # 1-bit codes (words x slots) for quantized scans
        self.center: Any = None
        self.coded_for = 0
        self._lookup: Any = None  # (sorted record ids, their slots), for filtered queries
        self.position: Any = None  # record id -> first slot (-1: none), when ids are dense
        self.sparse = False  # whether the ids were found too sparse for ``position``
        # The matrix in int8 (see _screen), each row followed by three float32: its
        # scale, its distance from the int8 copy, and its norm, read in one go.
        self.small: Any = None
        self.width = self.dim + -self.dim % 4  # where the three float32 start
        self._buffers: Any = None

    @property
    def nbytes(self) -> int:
        arrays = [self.matrix, self.norms, self.ids, self.codes, self.position, self.small]
        return sum(a.nbytes for a in arrays if a is not None)

    def sync(self, store: Store, tentative: bool) -> None:
        trimmed = store._fetch(
            "SELECT through FROM memstore_vector_log_trimmed WHERE collection = ?", (self.name,)
        )
        if self.seq < 0 or self.reload or self.seq < (trimmed[0][0] if trimmed else 0):
            return self._load(store, tentative)
        changes = store._fetch(
            "SELECT seq, record_id FROM memstore_vector_log WHERE collection = ? AND seq > ? "
            "ORDER BY seq",
            (self.name, self.seq),
        )
        changed = {record_id for _, record_id in changes} | self.uncommitted
        if len(changed) > max(1000, len(self.slot) // 4):
            return self._load(store, tentative)
        if changed:
            engine = store._engine
            rows = store._fetch(
                "SELECT record_id, vector FROM memstore_vectors WHERE collection = ? "
                f"AND model = ? AND dim = ? AND {engine.ids_in('record_id')} "
                "ORDER BY record_id, part",
                (self.name, self.model, self.dim, engine.ids(sorted(changed))),
            )
            self._replace(changed, rows)
        if tentative:
            self.uncommitted = changed
        else:
            self.uncommitted = set()
            self.seq = changes[-1][0] if changes else self.seq

    def _load(self, store: Store, tentative: bool) -> None:
        np = self.np
        (seq,) = store._fetch(
            "SELECT coalesce(max(seq), 0) FROM memstore_vector_log WHERE collection = ?",
            (self.name,),
        )[0]
        where = "WHERE collection = ? AND model = ? AND dim = ?"
        params = (self.name, self.model, self.dim)
        (count,) = store._fetch(f"SELECT count(*) FROM memstore_vectors {where}", params)[0]
        self.matrix = np.empty((count + count // 16 + 64, self.dim), np.float32)
        self.ids = np.full(len(self.matrix), -1, np.int64)
        self.size, self.slot, self.more, self.free = 0, {}, {}, []
        self._lookup = self.codes = self.position = self.small = None
        self.sparse = False
        sql = f"SELECT record_id, vector FROM memstore_vectors {where} ORDER BY record_id, part"
        engine = store._engine
        with store._lock:  # the caller's snapshot holds it already; rows in chunks, not one by one
            try:
                cursor = engine.cursor(store.connection, sql, params)
                try:
                    while chunk := list(islice(cursor, 16_384)):
                        self._append([row[0] for row in chunk], [row[1] for row in chunk])
                finally:
                    cursor.close()
            except engine.errors as err:
                raise store._error(err) from err
        self.norms = np.zeros(len(self.matrix), np.float32)
        with np.errstate(over="ignore"):  # a norm past float32's range: inf, and wide
            self.norms[: self.size] = _row_norms(np, self.matrix[: self.size])
        self.largest = float(self.norms[: self.size].max()) if self.size else 0.0
        self.seq, self.uncommitted, self.reload = seq, set(), tentative

    def _append(self, record_ids: list[int], blobs: list[bytes]) -> None:
        """Add rows (in record order) after the last slot: the load's fast path."""
        start, end = self.size, self.size + len(record_ids)
        if end > len(self.matrix):  # not in a snapshot; but be safe
            self._grow(end)
        matrix = self.np.frombuffer(b"".join(blobs), "<f4").reshape(len(blobs), self.dim)
        self.matrix[start:end] = matrix
        self.ids[start:end] = record_ids
        first = dict(zip(record_ids, range(start, end), strict=True))
        if len(first) == len(record_ids) and record_ids[0] not in self.slot:
            self.slot.update(first)  # one part each: the common case, at C speed
        else:
            for slot, record_id in enumerate(record_ids, start):
                self._take(record_id, slot)
        self.size = end

    def _take(self, record_id: int, slot: int) -> None:
        if record_id in self.slot:
            self.more.setdefault(record_id, []).append(slot)
            self.multi = True
        else:
            self.slot[record_id] = slot

    def slots_of(self, record_id: int) -> list[int]:
        first = self.slot.get(record_id)
        return [] if first is None else [first, *self.more.get(record_id, ())]

    def _grow(self, needed: int) -> None:
        np = self.np
        capacity = max(needed, len(self.matrix) * 3 // 2 + 16)
        arrays = [("matrix", 0.0), ("norms", 0.0), ("ids", -1)]
        if self.small is not None:
            arrays += [("small", 0)]
        for name, fill in arrays:
            old = getattr(self, name)
            new = np.full((capacity, *old.shape[1:]), fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self.codes = None  # rebuilt at the next quantized scan

    def _replace(self, changed: set[int], rows: list[Any]) -> None:
        """Records ``changed`` now have the vectors in ``rows`` (none if absent)."""
        np = self.np
        for record_id in changed:
            for slot in self.slots_of(record_id):
                self.ids[slot] = -1
                self.free.append(slot)
            self.slot.pop(record_id, None)
            self.more.pop(record_id, None)
            if self.position is not None and record_id < len(self.position):
                self.position[record_id] = -1
        for record_id, blob in rows:
            if self.free:
                slot = self.free.pop()
            else:
                if self.size == len(self.matrix):
                    self._grow(self.size + 1)
                slot, self.size = self.size, self.size + 1
            vector = np.frombuffer(blob, "<f4").astype(np.float64)
            self.matrix[slot] = vector
            norm = math.sqrt(float(vector @ vector))
            self.largest = max(self.largest, norm)  # never lowered: wide is only slower
            with np.errstate(over="ignore"):
                self.norms[slot] = norm
            self.ids[slot] = record_id
            self._take(record_id, slot)
            if self.codes is not None:
                self.codes[:, slot] = self._encode_bits(self.matrix[slot : slot + 1])[:, 0]
            if self.small is not None:
                self._quantize(slot, slot + 1)
            if self.position is not None and not self._place(record_id, slot):
                self.position, self.sparse = None, True
        self._lookup = None

    def _place(self, record_id: int, slot: int) -> bool:
        """Note a record's first slot in ``position``; False if ids grew too sparse for it."""
        if record_id >= len(self.position):
            if record_id >= 4 * len(self.slot) + 1_000_000:
                return False
            np = self.np
            grown = np.full(max(record_id + 1, len(self.position) * 3 // 2), -1, np.int64)
            grown[: len(self.position)] = self.position
            self.position = grown
        if self.position[record_id] < 0:
            self.position[record_id] = slot
        return True

    # -- ranking --

    def search(
        self,
        q: Any,
        metric: str,
        k: int,
        *,
        among: Any = None,
        exclude: list[int] | None = None,
        approximate: bool = False,
    ) -> list[tuple[int, float]]:
        """The k best (record id, score), best first: among these records (an int64
        array), or all but ``exclude``; ``approximate``: the quantized search may
        answer (see _way)."""
        np = self.np
        scores = None
        slots = None if among is None else self._slots_of(among)
        way = self._way(q, metric, k, slots, approximate)
        if way == "wide":
            return self._wide(q, metric, k, slots, exclude)
        if way == "quantized":
            slots, scores = self._quantized(q, metric, k)
        elif way == "screened":
            slots = self._screen(q, metric, k, slots)
        if scores is None:
            scores = self._scores(q, metric, slots)
        ids = self.ids[: self.size] if slots is None else self.ids[slots]
        if self.free:  # slots that were freed and not taken again (-1 in ids)
            scores[ids < 0] = -np.inf
        if exclude:
            dead = np.isin(ids, np.asarray(exclude, np.int64))
            scores[dead] = -np.inf
        scores, ids = self._exact(q, metric, k, scores, slots, ids)
        return self._best(scores, ids, k, metric)

    def _way(self, q: Any, metric: str, k: int, slots: Any, approximate: bool) -> str:
        """How a query is answered, decided here alone:

        - "wide": every score in float64, when float32 sums of the vectors'
          products could overflow or underflow (a norm past WIDE_ABOVE, or a
          query's below its inverse); slow, but no hit is lost.
        - "screened": a filter's matches, more than SCREEN_ABOVE (and 8 k), are
          screened by their int8 copy, and what the screen cannot rule out is
          ranked exactly: provably the exact answer.
        - "quantized": an unfiltered cosine query over more than
          QUANTIZE_ABOVE vectors, when an approximation is allowed: candidates
          by 1-bit codes, ranked exactly (and every vector compared when the
          codes look unreliable for q); recall measured in BENCHMARKS.md.
        - "exact": every vector (or every match) compared.
        """
        q64 = q.astype(self.np.float64)
        q_norm = math.sqrt(float(q64 @ q64))
        if not (q_norm == 0 or 1 / WIDE_ABOVE < q_norm < WIDE_ABOVE) or self.largest >= WIDE_ABOVE:
            return "wide"
        if slots is not None:
            screen = len(slots) > max(SCREEN_ABOVE, 8 * k) and not self.multi
            return "screened" if screen else "exact"
        if approximate and metric == "cosine" and len(self.slot) > QUANTIZE_ABOVE:
            return "quantized"
        return "exact"

    def _best(self, scores: Any, ids: Any, k: int, metric: str) -> list[tuple[int, float]]:
        return _best_records(self.np, scores, ids, k, metric)

    def _wide(
        self, q: Any, metric: str, k: int, slots: Any, exclude: list[int] | None
    ) -> list[tuple[int, float]]:
        """search() with every score in float64, for vectors too large (or too small) for
        float32 sums: a few rows at a time, so memory stays small."""
        np = self.np
        slots = np.arange(self.size) if slots is None else slots
        ids = self.ids[slots]
        q64 = q.astype(np.float64)
        chunks = [
            _exact_scores(np, self.matrix[slots[i : i + 65_536]].astype(np.float64), q64, metric)
            for i in range(0, len(slots), 65_536)
        ]
        scores = np.concatenate(chunks) if chunks else np.empty(0)
        scores[ids < 0] = -np.inf
        if exclude:
            scores[np.isin(ids, np.asarray(exclude, np.int64))] = -np.inf
        return self._best(scores, ids, k, metric)

    def _exact(
        self, q: Any, metric: str, k: int, scores: Any, slots: Any, ids: Any
    ) -> tuple[Any, Any]:
        """The scores of the slots that may hold the k best records, again in float64
        from the vectors themselves, and those slots' record ids.

        The float32 scores are each within a bound of the exact ones (the
        rounding of sums of dim terms: _rounding); every slot whose score at the
        top of its bound reaches the k-th best at the bottom of one is scored
        again. So the order is exact, and the same whatever rows a query
        compared; and L2 distances near q come from x - q, not from the
        expansion |x|^2 - 2 x.q + |q|^2, which loses them to rounding.
        """
        np = self.np
        q64 = q.astype(np.float64)
        q_norm = math.sqrt(float(q64 @ q64))
        rounding = _rounding(self.dim)
        if metric == "cosine":  # similarities: the bound needs no norms
            low, high = scores - 2 * rounding, scores + 2 * rounding
        else:
            norms = self.norms[: self.size] if slots is None else self.norms[slots]
            if metric == "l2":  # ruled-out slots (-inf) stay infinitely far
                low, high = self._l2_widened(scores, scores, norms, q_norm)
            else:
                slack = 2 * rounding * norms.astype(np.float64) * q_norm
                low, high = scores - slack, scores + slack
        keep = np.flatnonzero((high >= self._kth_record(low, ids, k)) & np.isfinite(scores))
        rows = self.matrix[keep if slots is None else slots[keep]].astype(np.float64)
        return _exact_scores(np, rows, q64, metric), ids[keep]

    def _kth_record(self, values: Any, ids: Any, k: int) -> float:
        """The k-th largest of values, counting a record once (its largest); -inf if
        fewer than k records have a finite one."""
        np = self.np
        if not self.multi:
            if k > len(values):
                return -math.inf
            return float(np.partition(values, len(values) - k)[len(values) - k])
        seen: set[int] = set()
        for position in np.argsort(-values):
            if not math.isfinite(values[position]):
                break
            seen.add(int(ids[position]))
            if len(seen) == k:
                return float(values[position])
        return -math.inf

    def _quantized(self, q: Any, metric: str, k: int) -> tuple[Any, Any]:
        """Candidate slots by 1-bit codes and their scores, or (None, None): compare
        every vector, when the codes look unreliable for q. The codes are trusted
        when the k best candidates are all in the nearest quarter of them by
        Hamming distance; when some are not, the codes barely tell near from far
        for q (a query far from everything stored, where all scores are nearly
        alike), and more of the k best are likely beyond the candidates."""
        np = self.np
        slots, inner = self._candidates(q, max(VECTOR_CANDIDATES, 16 * k))
        scores = self._scores(q, metric, slots)
        if len(slots) <= k:
            return slots, scores
        best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
        return (slots, scores) if inner[best].all() else (None, None)

    def _scores(self, q: Any, metric: str, slots: Any) -> Any:
        """Higher is better: similarity, dot product, or minus the distance."""
        np = self.np
        if slots is None:
            dots = self.matrix[: self.size] @ q
            norms = self.norms[: self.size]
        else:
            dots = np.take(self.matrix, slots, axis=0) @ q
            norms = self.norms[slots]
        return self._ranked(dots, norms, metric, math.sqrt(float(q @ q)))

    def _ranked(self, dots: Any, norms: Any, metric: str, q_norm: float) -> Any:
        """Scores from dot products with q, in their precision: higher is better, and
        rising with the dot product."""
        np = self.np
        if metric == "dot":
            return dots
        norms = norms.astype(dots.dtype, copy=False)
        if metric == "cosine":
            denominator = norms * q_norm
            return np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
        return -np.sqrt(np.maximum(norms**2 - 2 * dots + q_norm**2, 0.0))

    def _screen(self, q: Any, metric: str, k: int, slots: Any) -> Any:
        """Of these slots, every one that may hold one of the k best vectors.

        The int8 copy gives each dot product to within |q| |x - x'| (Cauchy-Schwarz),
        plus r |q| |x| for the rounding of two float32 sums (_rounding); a slot
        whose score at the top of its bound is below the k-th best score at the
        bottom of a bound cannot be in the k best, and every other slot is
        ranked exactly, as without a screen. Worth it for scattered rows, whose
        reading waits on memory: a scan of every row is faster in float32
        (measured: the widening to float32 costs what the smaller reads save).
        """
        np = self.np
        if self.small is None:
            self.small = np.zeros((len(self.matrix), self.width + 12), np.int8)
            for start in range(0, self.size, 65_536):
                self._quantize(start, min(self.size, start + 65_536))
        dots = np.empty(len(slots), np.float32)
        extra = np.empty((len(slots), 3), np.float32)
        self._small_dots(q, slots, dots, extra)
        scale, error, norms = extra.astype(np.float64).T
        approximate = dots * scale
        q_norm = math.sqrt(float(q @ q))
        rounding = _rounding(self.dim)
        bound = q_norm * (error + rounding * norms)
        low = self._ranked(approximate - bound, norms, metric, q_norm)
        high = self._ranked(approximate + bound, norms, metric, q_norm)
        if metric == "l2":  # and the expansion's own rounding (see _exact)
            low, high = self._l2_widened(low, high, norms, q_norm)
        return slots[high >= self._kth_record(low, None, k)]

    def _l2_widened(self, low: Any, high: Any, norms: Any, q_norm: float) -> tuple[Any, Any]:
        """Bounds on minus the L2 distance, widened by the rounding of the expansion
        |x|^2 - 2 x.q + |q|^2 they came from (float32 sums of dim terms: _rounding)."""
        np = self.np
        slack = _rounding(self.dim) * (norms.astype(np.float64) + q_norm) ** 2
        low = -np.sqrt(np.asarray(low, np.float64) ** 2 + slack)
        high = -np.sqrt(np.maximum(np.asarray(high, np.float64) ** 2 - slack, 0.0))
        return low, high

    def _small_dots(self, q: Any, slots: Any, out: Any, extra: Any) -> None:
        """Dot products of q with the int8 rows of these slots (unscaled) into ``out``,
        and the rows' three float32 into ``extra``: rows gathered, widened and
        multiplied 1024 at a time, while in cache, in buffers kept from query to
        query (fresh ones would fault their pages in)."""
        np = self.np
        if self._buffers is None:
            self._buffers = (
                np.empty((1024, self.width + 12), np.int8),
                np.empty((1024, self.dim), np.float32),
            )
        small, wide = self._buffers
        for start in range(0, len(slots), 1024):
            part = slots[start : start + 1024]
            rows = len(part)
            np.take(self.small, part, axis=0, out=small[:rows])
            wide[:rows] = small[:rows, : self.dim]
            extra[start : start + rows] = small[:rows, self.width :].view(np.float32)
            np.matmul(wide[:rows], q, out=out[start : start + rows])

    def _quantize(self, start: int, end: int) -> None:
        """The int8 copy of rows start to end: each row scaled so its largest value is 127."""
        np = self.np
        rows = self.matrix[start:end]
        scale = np.abs(rows).max(axis=1) / 127
        small = np.rint(rows / np.where(scale > 0, scale, 1)[:, None]).astype(np.int8)
        self.small[start:end, : self.dim] = small
        extra = self.small[start:end, self.width :].view(np.float32)
        extra[:, 0] = scale
        extra[:, 1] = _row_norms(np, rows - small * scale[:, None])
        extra[:, 2] = self.norms[start:end]

    def _slots_of(self, record_ids: Any) -> Any:
        """The slots of these records' vectors (records without any are left out)."""
        np = self.np
        if not self.multi and self.position is None and not self.sparse and self.slot:
            highest = int(self.ids[: self.size].max())
            if highest < 4 * len(self.slot) + 1_000_000:  # dense enough for a direct map
                live = np.flatnonzero(self.ids[: self.size] >= 0)
                self.position = np.full(highest + 1, -1, np.int64)
                self.position[self.ids[live]] = live
            else:
                self.sparse = True  # until the next load
        if not self.multi and self.position is not None:
            wanted = record_ids[(record_ids >= 0) & (record_ids < len(self.position))]
            slots = self.position[wanted]
            return slots[slots >= 0]
        if self._lookup is None:
            live = np.flatnonzero(self.ids[: self.size] >= 0)
            order = np.argsort(self.ids[live], kind="stable")
            self._lookup = (self.ids[live][order], live[order])
        sorted_ids, sorted_slots = self._lookup
        if self.multi:
            return sorted_slots[np.isin(sorted_ids, record_ids)]
        positions = np.minimum(np.searchsorted(sorted_ids, record_ids), max(len(sorted_ids) - 1, 0))
        if not len(sorted_ids):
            return positions[:0]
        hit = sorted_ids[positions] == record_ids
        return sorted_slots[positions[hit]]

    def _encode_bits(self, rows: Any) -> Any:
        """1-bit codes of rows: the signs of the unit vectors less their mean (words x rows)."""
        np = self.np
        # x / |x| > center, without dividing: x > center * |x|.
        bits = np.packbits(rows > self.center * _row_norms(np, rows)[:, None], axis=1)
        padded = np.zeros((len(rows), -(-bits.shape[1] // 8) * 8), np.uint8)
        padded[:, : bits.shape[1]] = bits
        return np.ascontiguousarray(padded.view(np.uint64).T)

    def _candidates(self, q: Any, count: int) -> tuple[Any, Any]:
        """The ``count`` or so slots whose codes are nearest q's in Hamming distance, and
        which of them are among the nearest quarter of that count."""
        np = self.np
        if self.codes is None or self.size > 2 * self.coded_for:
            # The mean of the live unit vectors, as one matrix-vector product (no copies).
            norms = self.norms[: self.size]
            weights = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            weights[self.ids[: self.size] < 0] = 0.0
            live = max(1, int(np.count_nonzero(weights)))
            self.center = (weights @ self.matrix[: self.size] / live).astype(np.float32)
            self.codes = np.zeros((-(-self.dim // 64), len(self.matrix)), np.uint64)
            for start in range(0, self.size, 65_536):
                end = min(self.size, start + 65_536)
                self.codes[:, start:end] = self._encode_bits(self.matrix[start:end])
            self.coded_for = self.size
        code = self._encode_bits(q.reshape(1, -1))[:, 0]
        distance = np.bitwise_count(self.codes[0, : self.size] ^ code[0]).astype(np.uint16)
        for word in range(1, len(code)):
            distance += np.bitwise_count(self.codes[word, : self.size] ^ code[word])
        distance[self.ids[: self.size] < 0] = np.iinfo(np.uint16).max
        # The smallest distance with at least ``count`` slots at or below it.
        within = np.cumsum(np.bincount(distance, minlength=self.dim + 1))
        limit = int(np.searchsorted(within, min(count, self.size)))
        inner = int(np.searchsorted(within, min(count, self.size) // 4))
        slots = np.flatnonzero(distance <= limit)
        return slots, distance[slots] <= inner


def recall_score(
    relevance: float,
    *,
    age_seconds: float | None = None,
    half_life_seconds: float | None = None,
    importance: float | None = None,
    access_count: int | None = None,
) -> float:
    """How strongly a memory should come back: its relevance times what ages, matters
    and is reinforced.

    >>> recall_score(0.03, age_seconds=86400, half_life_seconds=86400, importance=0.5)
    0.0075

    ``relevance`` is the search's (``hybrid`` uses the reciprocal-rank fusion
    of its text and vector ranks); times ``0.5 ** (age / half_life)`` (a
    memory loses half its weight every half-life), times ``importance``
    (clamped to 0..1), times ``1 + 0.1 * ln(1 + access_count)`` (each tenfold
    of reads adds about a quarter). Each factor is left out when its input is.
    ``Collection.hybrid`` and the MCP server's recall rank by it.
    """
    parts = _recall_parts(
        age_seconds=age_seconds,
        half_life_seconds=None
        if half_life_seconds is None
        else _finite(half_life_seconds, "half_life_seconds"),
        importance=importance,
        access_count=access_count,
    )
    return _finite(relevance, "relevance") * math.prod(parts.values())


def _recall_parts(
    *,
    age_seconds: float | None,
    half_life_seconds: float | None,
    importance: Any,
    access_count: Any,
) -> dict[str, float]:
    """recall_score's factors, by name (those whose inputs were given)."""
    parts: dict[str, float] = {}
    if half_life_seconds is not None and age_seconds is not None:
        if half_life_seconds <= 0:
            raise ValidationError("half_life_seconds must be more than 0")
        parts["recency"] = 0.5 ** (max(0.0, float(age_seconds)) / half_life_seconds)
    if importance is not None:
        number = importance if isinstance(importance, (int, float)) else 1
        parts["importance"] = min(1.0, max(0.0, float(number))) if math.isfinite(number) else 1.0
    if access_count is not None:
        parts["reinforcement"] = 1 + 0.1 * math.log1p(max(0, int(access_count or 0)))
    return parts


def _rounding(dim: int) -> float:
    """A bound on the rounding of a float32 sum of dim products (or squares), as a share
    of the sum of their magnitudes: dim * 2**-24 at worst, doubled, and never below 1e-4."""
    return max(1e-4, 2 * dim * 2.0**-24)


def _exact_scores(np: Any, rows: Any, q64: Any, metric: str) -> Any:
    """Scores of float64 rows, higher is better: L2 from x - q, not from the expansion
    |x|^2 - 2 x.q + |q|^2 (which loses near distances to rounding)."""
    if metric == "l2":
        return -_row_norms(np, rows - q64)
    exact = np.einsum("ij,j->i", rows, q64)  # row by row alike, unlike BLAS
    if metric == "cosine":
        lengths = _row_norms(np, rows) * math.sqrt(float(q64 @ q64))
        exact = np.divide(exact, lengths, out=np.zeros_like(exact), where=lengths > 0)
    return exact


def _hnsw_prefix(name: str) -> str:
    """The start of the names of collection ``name``'s HNSW indexes (PostgreSQL's names
    are 63 bytes at most: a digest of the name, not the name)."""
    import hashlib  # here and in hygiene alone: `import memstore` stays light

    return "memstore_hnsw_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]


def _hnsw_index(name: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """The name and CREATE INDEX of the HNSW index collection ``name``'s vectors declare
    (pgvector): of its model's vectors alone (a partial index, which a query's literal
    conditions select), named by what it is built with (not ef_search, the queries')."""
    import hashlib

    options, dim = config["hnsw"], int(config["dim"])
    built = [config["model"], dim, config["metric"], options["m"], options["ef_construction"]]
    digest = hashlib.sha256(json.dumps(built).encode("utf-8")).hexdigest()[:8]
    index = f"{_hnsw_prefix(name)}_{digest}"
    return index, (
        f"CREATE INDEX {quote_identifier(index)} ON memstore_vectors USING hnsw "
        f"((embedding::vector({dim})) {_PGVECTOR_OPERATORS[config['metric']][1]}) "
        f"WITH (m = {int(options['m'])}, ef_construction = {int(options['ef_construction'])}) "
        f"WHERE collection = {_literal(name)} AND model = {_literal(config['model'])} "
        f"AND dim = {dim}"
    )


def _rescored(np: Any, rows: Sequence[Any], q: Any, metric: str, k: int) -> list[tuple[int, float]]:
    """The k best records of these (record id, float32 bytes) rows, each part scored
    again in float64 (as _VectorIndex does: the same scores on every engine)."""
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(row[1] for row in rows), "<f4")
    matrix = matrix.reshape(len(rows), -1).astype(np.float64)
    record_ids = np.fromiter((row[0] for row in rows), np.int64, len(rows))
    return _best_records(np, _exact_scores(np, matrix, q, metric), record_ids, k, metric)


def _best_records(np: Any, scores: Any, ids: Any, k: int, metric: str) -> list[tuple[int, float]]:
    """The k best records of these exact scores, a record counted once (its best part);
    ties go by record id; L2 as the distance, the others as the score."""
    found: dict[int, float] = {}
    for position in np.lexsort((ids, -scores)):
        if len(found) == k or not scores[position] > -math.inf:
            break
        found.setdefault(int(ids[position]), float(scores[position]))
    return [(rid, abs(score) if metric == "l2" else score) for rid, score in found.items()]


def _row_norms(np: Any, matrix: Any) -> Any:
    """Each row's Euclidean norm; 30 times faster than numpy.linalg.norm(axis=1) here."""
    return np.sqrt(np.einsum("ij,ij->i", matrix, matrix))


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as err:
        raise DependencyError(
            "vector memory needs numpy: pip install 'agent-memstore[vectors]'"
        ) from err
    return numpy


_VECTOR_OPTIONS = frozenset({"dim", "model", "metric", "fields", "embed", "hnsw"})

#: pgvector's HNSW index takes vectors of this many dimensions at most; its type, of
#: PGVECTOR_MAX_DIM (memstore's index ranks longer ones).
HNSW_MAX_DIM = 2000
PGVECTOR_MAX_DIM = 16_000


def _hnsw_options(spec: object, dim: int) -> dict[str, int] | None:
    """vectors' ``hnsw`` as kept: None (no index), or its options: the index's m and
    ef_construction (pgvector's defaults), and ef_search, the candidates a query
    follows (pgvector's default is 40: its recall is poor for a query far from
    everything, BENCHMARKS.md)."""
    if spec is None or spec is False:
        return None
    options = {"m": 16, "ef_construction": 64, "ef_search": 200}
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(options)
        if unknown:
            raise ValidationError(
                f"unknown hnsw options {sorted(map(str, unknown))}; known: {', '.join(options)}"
            )
        options.update(spec)
    elif spec is not True:
        raise ValidationError(f"hnsw must be True, False or {options}, not {spec!r:.60}")
    m, ef, ef_search = options["m"], options["ef_construction"], options["ef_search"]
    for value in options.values():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(f"hnsw options are whole numbers, not {value!r:.60}")
    if not 2 <= m <= 100 or not 4 <= ef <= 1000 or ef < 2 * m or not 1 <= ef_search <= 1000:
        raise ValidationError(
            "hnsw needs m from 2 to 100, ef_construction from 4 to 1000 and at least 2 m, "
            f"ef_search from 1 to 1000; not {options}"
        )
    if dim > HNSW_MAX_DIM:
        raise ValidationError(
            f"an hnsw index takes vectors of at most {HNSW_MAX_DIM} dimensions (pgvector's "
            f"limit), not {dim}"
        )
    return options


def _normalize_vectors(spec: object) -> tuple[dict[str, Any] | None, Any]:
    """A collection's vectors= as (the declaration to keep, the embed function)."""
    if spec is None:
        return None, None
    if not isinstance(spec, Mapping):
        raise ValidationError(
            f"vectors must be a mapping like {{'dim': 384, 'model': 'all-MiniLM-L6-v2'}}, "
            f"not {spec!r:.60}"
        )
    unknown = set(spec) - _VECTOR_OPTIONS
    if unknown:
        raise ValidationError(
            f"unknown vectors options {sorted(map(str, unknown))}; known: {sorted(_VECTOR_OPTIONS)}"
        )
    dim, model = spec.get("dim"), spec.get("model")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_VECTOR_DIM:
        raise ValidationError(
            f"vectors dim must be a whole number 1 to {MAX_VECTOR_DIM}, not {dim!r}"
        )
    if not isinstance(model, str) or not model.strip() or len(model) > 200 or "\x00" in model:
        raise ValidationError(f"vectors model must name the embedding model, not {model!r:.60}")
    wanted: dict[str, Any] = {"dim": dim, "model": model}
    if spec.get("metric") is not None:
        wanted["metric"] = _check_metric(spec["metric"])
    if "hnsw" in spec:
        wanted["hnsw"] = _hnsw_options(spec["hnsw"], dim)
    if spec.get("fields") is not None:
        fields = _strings(spec["fields"], "vectors fields")
        for path in fields:
            if not _FIELD_PATH.match(path):
                raise ValidationError(f"vectors fields: invalid path {path!r}")
        wanted["fields"] = fields
    embed = spec.get("embed")
    if embed is not None:
        _embedder(embed, "")
    return wanted, embed


def _declared_vectors(
    name: str, old: dict[str, Any] | None, wanted: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The vectors declaration after ``wanted``; a new model or dimension needs re_embed."""
    if wanted is None:
        return old
    if old is not None and (old["model"], old["dim"]) != (wanted["model"], wanted["dim"]):
        raise SchemaError(
            f"{name!r} holds vectors of {old['model']!r} (dim {old['dim']}), not "
            f"{wanted['model']!r} (dim {wanted['dim']}): re_embed(fn, model=..., dim=...) "
            "changes the model"
        )
    declared = {"metric": "cosine", "fields": []} if old is None else dict(old)
    declared.update(wanted)
    if declared.get("hnsw", False) is None:  # hnsw=False: no index any more
        del declared["hnsw"]
    return declared


def _vector_trigger(table: str) -> str:
    return f"{table}__vectors_delete"


def _vector_trigger_sql(table: str) -> str:
    """A trigger deleting a record's vectors with it, whichever tool deletes it."""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {quote_identifier(_vector_trigger(table))} AFTER DELETE "
        f"ON {quote_identifier(table)} BEGIN DELETE FROM memstore_vectors "
        f"WHERE collection = {_literal(table)} AND record_id = old.id; END"
    )


def _check_metric(metric: object) -> str:
    if metric not in VECTOR_METRICS:
        raise QueryError(f"metric must be one of {', '.join(VECTOR_METRICS)}, not {metric!r:.60}")
    return str(metric)


def _check_part(part: object) -> str:
    if not isinstance(part, str) or len(part) > 1024 or "\x00" in part:
        raise ValidationError(f"a vector part is named by a string, not {part!r:.60}")
    return part


def _vector_blob(vector: Any, dim: int, what: str = "vector") -> bytes:
    """A vector as float32 little-endian bytes, after checking it."""
    np = _numpy()
    if isinstance(vector, (str, bytes, Mapping)) or vector is None:
        raise ValidationError(f"a {what} is a list of numbers, not {type(vector).__name__}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(vector, dtype="<f4")
    except (TypeError, ValueError, OverflowError) as err:
        raise ValidationError(f"a {what} is a list of numbers: {err}") from err
    if array.shape != (dim,):
        raise ValidationError(
            f"a {what} of this collection has {dim} numbers, not shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValidationError(f"a {what} must be finite floats (no NaN or infinity in float32)")
    return bytes(array.tobytes())


def _embedder(embed: Any, missing: str) -> tuple[Callable[[list[str]], Any], Callable[[str], Any]]:
    """(embed documents, embed a query) from a function of texts or a LangChain Embeddings."""
    if embed is None:
        raise QueryError(missing)
    if hasattr(embed, "embed_documents") and hasattr(embed, "embed_query"):
        return embed.embed_documents, embed.embed_query
    if not callable(embed):
        raise ValidationError(
            f"embed must be a function of a list of texts, or an Embeddings, not {embed!r:.60}"
        )
    return embed, lambda text: _embedded(embed, [text])[0]


def _embedded(documents: Callable[[list[str]], Any], texts: list[str]) -> list[Any]:
    vectors = list(documents(texts))
    if len(vectors) != len(texts):
        raise ValidationError(f"embed returned {len(vectors)} vectors for {len(texts)} texts")
    return vectors


def _floats_by_part(hex_by_part: str) -> dict[str, list[float]]:
    """Vectors as SQL gives them for export ({part: hex of float32}), as lists of floats."""
    return {
        part: list(struct.unpack(f"<{len(blob) // 8}f", bytes.fromhex(blob)))
        for part, blob in json.loads(hex_by_part).items()
    }


def _record_text(record: Any, paths: Sequence[str]) -> str:
    """The text of a record to embed: the values at ``paths``, one per line."""
    parts = []
    for path in paths:
        value = record
        for segment in path.split("."):
            value = value.get(segment) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            parts.append(value)
        elif value is not None:
            parts.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(part for part in parts if part.strip())


def _age_seconds(now: datetime, stamp: object) -> float:
    """Seconds since an ISO-8601 timestamp; 0 for one another tool wrote unreadably."""
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())


def _trim_vector_log(store: Store, name: str) -> None:
    """Keep the change log of a collection's vectors to about VECTOR_LOG_KEEP entries."""
    if store._vector_writes < VECTOR_LOG_KEEP // 2:
        return
    store._vector_writes = 0
    rows = store._fetch(
        "SELECT seq FROM memstore_vector_log WHERE collection = ? ORDER BY seq DESC "
        "LIMIT 1 OFFSET ?",
        (name, VECTOR_LOG_KEEP),
    )
    if rows:
        store._fetch(
            "DELETE FROM memstore_vector_log WHERE collection = ? AND seq <= ?", (name, rows[0][0])
        )
        store._fetch(
            "INSERT INTO memstore_vector_log_trimmed (collection, through) VALUES (?, ?) "
            "ON CONFLICT (collection) DO UPDATE SET through = excluded.through",
            (name, rows[0][0]),
        )


class _CollectionVectors:
    """Collection's vector memory: its methods live here, beside the index they use, and
    Collection inherits them. See Collection.nearest, hybrid and re_embed."""

    # What these methods use of Collection (it sets and defines them all).
    store: Store
    name: str
    vectors: dict[str, Any] | None
    embed: Callable[[list[str]], Any] | Any | None
    fts: list[str]
    _table: str
    _fts_table: str
    _key_sql: str
    temporal: bool

    if TYPE_CHECKING:

        def _decode(self, body: str) -> Any: ...
        def _target(self, field: str) -> _Target: ...
        def _fresh(self) -> None: ...
        def _apply(self, meta: _Meta, seen: tuple[int, Any] | None = None) -> None: ...
        def _filter(
            self,
            where: Mapping[str, Any] | None,
            *,
            include_expired: bool = False,
            as_of: Any = _MISSING,
        ) -> tuple[str, list[Any]]: ...
        def _filter_probed(
            self, where: Mapping[str, Any] | None, as_of: Any = _MISSING
        ) -> tuple[str, list[Any]]: ...
        def __len__(self) -> int: ...
        def _view(self, as_of: Any, known_at: Any) -> tuple[Any, str | None]: ...
        def _known_parts(
            self, where: Mapping[str, Any] | None, as_of: Any, known_at: str
        ) -> tuple[str, list[Any], list[int]]: ...
        def _known_records(
            self, ids: Iterable[int], extra: str = "NULL", extra_params: Sequence[Any] = ()
        ) -> dict[int, tuple[Any, ...]]: ...
        def _known_matches(
            self,
            text: str,
            known: tuple[str, list[Any], list[int]],
            n: int,
            highlight: tuple[str, str] = ("[", "]"),
            snippet_tokens: int = 12,
        ) -> list[tuple[int, str, str, float, str]]: ...
        def _need_hygiene(self, what: str) -> None: ...
        def _note_accesses(self, keys: Iterable[str]) -> None: ...
        def _index_waiting(self) -> bool: ...

    def vector(self, key: str) -> Any:
        """The record's embedding as a numpy array (a dict of them for a record in parts);
        None when it has none. Needs numpy (``pip install 'agent-memstore[vectors]'``)."""
        np = _numpy()
        config = self._vector_config()
        _check_key(key)
        rows = self.store._fetch(
            f"SELECT v.part, v.vector FROM {self._table} AS t JOIN memstore_vectors AS v "
            "ON v.collection = ? AND v.record_id = t.id AND v.model = ? AND v.dim = ? "
            "WHERE t.key = ? ORDER BY v.part",
            (self.name, config["model"], config["dim"], key),
        )
        vectors = {part: np.frombuffer(blob, "<f4").copy() for part, blob in rows}
        if not vectors:
            return None
        return vectors[""] if list(vectors) == [""] else vectors

    def nearest(
        self,
        query: Any,
        *,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        metric: str | None = None,
        exact: bool | None = None,
        model: str | None = None,
        as_of: Any = None,
        known_at: Any = None,
        track: bool = False,
    ) -> list[Neighbor]:
        """The ``k`` records whose vectors are nearest to ``query``, nearest first.

        >>> memories.nearest(query_vector, k=10, where={"importance": {"$gte": 0.7}})
        [Neighbor(key='m1', record={...}, score=0.93, similarity=0.93, distance=None), ...]

        ``query`` is a vector, or a text when the handle has ``embed``.
        ``where`` is a filter as in ``query()``, applied exactly before
        ranking: k hits come back whenever k matching records have vectors.
        ``metric`` is "cosine" (``score`` is the similarity), "dot" (the dot
        product) or "l2" (``score`` is the distance negated, so that higher is
        nearer for every metric; ``distance`` is the distance itself); the
        collection's own by default. A record in parts scores its best part.
        When ``where`` matches more than SCREEN_ABOVE vectors, an int8 copy
        of them rules out those that provably cannot be among the k best;
        the rest are compared exactly, so the answer is exact. Unfiltered
        cosine queries over more than QUANTIZE_ABOVE vectors rank exactly
        the candidates nearest by 1-bit codes, and compare every vector when
        the codes look unreliable for the query: an approximation (recall
        0.997 on queries far from everything at 300,000 vectors, 1.000 on
        the others: BENCHMARKS.md); ``exact=True`` always compares every
        vector. ``k=0`` gives [], a k past the matches gives them all.
        ``model``, if given, must be the collection's: queries never mix
        models. In a temporal collection, ``as_of`` ranks the facts that held
        then, and ``known_at`` what the store held then, every vector compared
        exactly: a replaced version by the vectors its record had while it
        was current (kept in memstore_version_vectors). On PostgreSQL with
        pgvector the database finds the candidates (through the collection's
        HNSW index, declared with ``vectors={..., "hnsw": True}``, unless
        ``exact=True``) and memstore scores them exactly (README, "PostgreSQL").
        """
        if track:
            self._need_hygiene("track")
        config = self._vector_config()
        metric = _check_metric(config["metric"] if metric is None else metric)
        if model is not None and model != config["model"]:
            raise QueryError(
                f"{self.name!r} holds vectors of {config['model']!r}, not {model!r}: "
                "queries never mix models"
            )
        if exact is not None and not isinstance(exact, bool):
            raise QueryError(f"exact must be True, False or None, not {exact!r}")
        _check_count(k, "k")
        q, (view, known) = self._query_vector(query), self._view(as_of, known_at)
        with self.store._transaction(immediate=False):  # the vectors and the records: one snapshot
            if known is not None:
                held = self._known_parts(where, view, known)
                found = self._nearest_known(q, k, held, metric, exact is not True)
                records = {
                    rid: row[:2] for rid, row in self._known_records(r for r, _ in found).items()
                }
            else:
                found = self._nearest_ids(q, k, where, metric, exact is not True, view)
                records = self._records_by_id([rid for rid, _ in found])
        l2 = metric == "l2"
        if track:
            self._note_accesses(records[rid][0] for rid, _ in found if rid in records)
        return [
            Neighbor(
                records[rid][0],
                self._decode(records[rid][1]),
                -value if l2 else value,
                None if l2 else value,
                value if l2 else None,
            )
            for rid, value in found
            if rid in records
        ]

    def hybrid(
        self,
        text: str,
        *,
        vector: Any = None,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        recency: timedelta | float | str | None = None,
        importance: str | None = None,
        candidates: int | None = None,
        as_of: Any = None,
        known_at: Any = None,
        reinforcement: bool = False,
        track: bool = False,
    ) -> list[HybridHit]:
        """Full-text and vector search together, fused by reciprocal rank, best first.

        >>> memories.hybrid("how does persistence handle state?", vector=query_vector,
        ...                 k=10, recency=timedelta(days=7), importance="importance")

        ``text`` is plain language (its words are searched with OR, not as an
        FTS5 query); ``vector`` is its embedding, or left out when the handle
        has ``embed``. The best ``candidates`` (5 k, at least 50) of each
        search are fused: a record ranked r in a list scores 1 / (60 + r)
        from it (reciprocal-rank fusion), and the sum is multiplied by
        ``0.5 ** (age / recency)`` (age since the record was last updated;
        ``recency`` is the half-life) and by the record's ``importance``
        field (a number from 0 to 1; a record without one counts as 1).
        ``reinforcement=True`` (memory hygiene) multiplies by ``1 + 0.1 *
        ln(1 + access_count)``: memories read often rank higher. The whole is
        ``recall_score``. ``track=True`` counts the hits as reads. Each hit's
        ``scores`` explains its score. In a temporal collection, ``as_of``
        ranks the facts that held then and ``known_at`` what the store held
        then (recency counted from ``known_at``; reinforcement, which counts
        reads until now, is refused with it), as ``search`` and ``nearest`` do.
        """
        config = self._vector_config()
        if reinforcement or track:
            self._need_hygiene("reinforcement and track")
        view, known = self._view(as_of, known_at)
        if known is not None and reinforcement:
            raise QueryError(
                "reinforcement ranks by reads counted until now, which keep no history: "
                "leave it out with known_at"
            )
        if not self.fts:
            raise QueryError(f"collection {self.name!r} has no full-text index (declare fts=[...])")
        words = fts_words(_check_match(text))
        _check_count(k, "k")
        pool = max(50, 5 * k) if candidates is None else candidates
        _check_count(pool, "candidates")
        half_life = None if recency is None else _seconds(recency, "recency")
        weight = None if importance is None else self._target(importance)
        q, metric = self._query_vector(text if vector is None else vector), config["metric"]
        # Recency counts from the time the ranking is for: now, or known_at.
        now = _utcnow() if known is None else datetime.fromisoformat(known)
        self._index_waiting()
        # Both searches and the records: one snapshot.
        with self.store._transaction(immediate=False):
            text_rows: list[Any] = []
            if known is not None:
                held = self._known_parts(where, view, known)
                ranked = self._nearest_known(q, pool, held, _check_metric(metric), True)
                if words:
                    text_rows = [row[::3] for row in self._known_matches(words, held, pool)]
            else:
                ranked = self._nearest_ids(q, pool, where, _check_metric(metric), True, view)
                if words:
                    clause, params = self._filter(where, as_of=view)
                    text_rows = self.store._engine.fts_ranked(
                        cast("Collection", self), clause, params, words, pool
                    )
            explain: dict[int, dict[str, Any]] = {}
            for rank, (rid, bm25) in enumerate(text_rows, 1):
                explain[rid] = {"text_rank": rank, "bm25": bm25}
            for rank, (rid, similarity) in enumerate(ranked, 1):
                explain.setdefault(rid, {}).update(vector_rank=rank, similarity=similarity)
            if known is not None:  # importance from the body itself: versions have no columns
                extra = ["NULL"]
                if importance is not None:
                    value = self.store._engine.json_value("t.body", _json_path(importance))
                    extra = [value.sql, *value.params]
                rows = [
                    (rid, *row, 0)
                    for rid, row in self._known_records(explain, extra[0], extra[1:]).items()
                ]
            else:
                extra = [weight.sql, *weight.params] if weight is not None else ["NULL"]
                accesses = "t.access_count" if reinforcement else "0"
                engine = self.store._engine
                rows = self.store._fetch(
                    f"SELECT t.id, {self._key_sql}, t.body, t.updated_at, {extra[0]}, {accesses} "
                    f"FROM {self._table} AS t WHERE {engine.ids_in('t.id')}",
                    [*extra[1:], engine.ids(list(explain))],
                )
        hits = []
        for rid, key, body, updated_at, value, access_count in rows:
            scores: dict[str, Any] = dict.fromkeys(
                ("text_rank", "bm25", "vector_rank", "similarity")
            )
            scores.update(explain[rid])
            ranks = [scores[r] for r in ("text_rank", "vector_rank") if scores[r] is not None]
            scores["rrf"] = sum(1 / (RRF_K + rank) for rank in ranks)
            parts = _recall_parts(
                age_seconds=_age_seconds(now, updated_at) if half_life is not None else None,
                half_life_seconds=half_life,
                importance=(
                    (value if isinstance(value, (int, float)) and math.isfinite(value) else 1)
                    if weight is not None
                    else None
                ),
                access_count=access_count if reinforcement else None,
            )
            scores.update(parts)
            score = scores["rrf"] * math.prod(parts.values())
            scores["score"] = score
            hits.append(HybridHit(key, self._decode(body), score, scores))
        hits.sort(key=lambda hit: (-hit.score, hit.key))
        if track:
            self._note_accesses(hit.key for hit in hits[:k])
        return hits[:k]

    def re_embed(
        self,
        fn: Callable[[list[str]], Any] | Any | None = None,
        *,
        model: str | None = None,
        dim: int | None = None,
        batch_size: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Embed every record's text again with ``fn`` (the handle's ``embed`` by default),
        a batch at a time; return how many records were embedded.

        >>> memories.re_embed(new_model.encode, model="bge-small-en-v1.5", dim=384,
        ...                   progress=lambda done, total: print(done, "/", total))

        With a new ``model`` (and ``dim``), the new vectors are written beside
        the old ones, which queries keep using until every record has a new
        one; then the collection switches to the new model and the old
        vectors are deleted, in one transaction. ``progress(done, total)``
        is called after each batch. Records without text keep no vector.
        """
        config = self._vector_config()
        documents = _embedder(fn if fn is not None else self.embed, "re_embed needs fn or embed=")[
            0
        ]
        new = dict(config)
        if model is not None or dim is not None:
            new.update(
                _normalize_vectors(
                    {
                        "model": model or config["model"],
                        "dim": config["dim"] if dim is None else dim,
                    }
                )[0]
                or {}
            )
        if new.get("hnsw"):
            _hnsw_options(new["hnsw"], new["dim"])  # the new dimension may be too many
        _check_count(batch_size, "batch_size")
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1")
        paths = self._text_paths(new)
        total = len(self)
        done, last = 0, 0
        while True:
            rows = self.store._fetch(
                f"SELECT id, body FROM {self._table} WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch_size),
            )
            if not rows:
                break
            last = rows[-1][0]
            texts = {rid: _record_text(json.loads(body), paths) for rid, body in rows}
            with self.store._transaction():
                done += self._write_embedded(texts, documents, new)
            if progress is not None:
                progress(min(done, total), total)
        with self.store._transaction():
            missing = self.store._fetch(
                f"SELECT t.id, t.body FROM {self._table} AS t WHERE NOT EXISTS (SELECT 1 FROM "
                "memstore_vectors AS v WHERE v.collection = ? AND v.record_id = t.id "
                "AND v.model = ? AND v.dim = ?)",
                (self.name, new["model"], new["dim"]),
            )
            texts = {rid: _record_text(json.loads(body), paths) for rid, body in missing}
            done += self._write_embedded(texts, documents, new)
            if new != config:
                self.store._fetch(
                    "DELETE FROM memstore_vectors WHERE collection = ? "
                    "AND (model <> ? OR dim <> ?)",
                    (self.name, new["model"], new["dim"]),
                )
                self.store._fetch(
                    "UPDATE _memstore_collections SET vectors = ?, "
                    f"updated_at = {self.store._engine.now} WHERE name = ?",
                    (json.dumps(new), self.name),
                )
                self.store._generation += 1
                self._apply(self.store._require_meta(self.name))
                self.store._engine.vector_index(self.store, self.name, new)
            _trim_vector_log(self.store, self.name)
        return done

    def _vector_config(self) -> dict[str, Any]:
        self._fresh()
        if self.vectors is None:
            raise QueryError(
                f"collection {self.name!r} has no vectors "
                "(declare vectors={'dim': ..., 'model': ...})"
            )
        return self.vectors

    def _text_paths(self, config: Mapping[str, Any]) -> list[str]:
        paths = list(config.get("fields") or self.fts)
        if not paths:
            raise QueryError(
                f"collection {self.name!r} has no text to embed: declare "
                "vectors={..., 'fields': [...]} or fts=[...]"
            )
        return paths

    def _encode_vector(self, vector: Any) -> list[tuple[str, bytes]]:
        """A record's vector (or mapping of parts to vectors) as (part, float32 BLOB) pairs."""
        dim = self._vector_config()["dim"]
        if isinstance(vector, Mapping):  # {} leaves the record without vectors
            return [(_check_part(part), _vector_blob(v, dim)) for part, v in vector.items()]
        return [("", _vector_blob(vector, dim))]

    def _query_vector(self, query: Any) -> Any:
        dim = self._vector_config()["dim"]
        if isinstance(query, str):
            embed_query = _embedder(self.embed, "a text query needs embed= (or give a vector)")[1]
            query = embed_query(query)
        return _numpy().frombuffer(_vector_blob(query, dim, "query"), "<f4")

    def _embed_bodies(self, bodies: Mapping[str, str]) -> dict[str, list[tuple[str, bytes]]]:
        """Embed records' text (JSON bodies by key) with the handle's embed function."""
        assert self.vectors is not None
        paths = self._text_paths(self.vectors)
        texts = {key: _record_text(json.loads(body), paths) for key, body in bodies.items()}
        texts = {key: text for key, text in texts.items() if text}
        if not texts:
            return {}
        vectors = _embedded(_embedder(self.embed, "")[0], list(texts.values()))
        return {key: self._encode_vector(v) for key, v in zip(texts, vectors, strict=True)}

    def _batch_vectors(
        self, keys: list[str], bodies: Mapping[str, str], given: Iterator[Any] | None
    ) -> None:
        """The vectors of a put_many batch: the next ones given, or else embedded."""
        if given is not None:
            vectors = list(islice(given, len(keys)))
            if len(vectors) < len(keys):
                raise ValidationError("fewer vectors than records")
            self._write_vectors(
                {
                    k: self._encode_vector(v)
                    for k, v in zip(keys, vectors, strict=True)
                    if v is not None  # None: the record keeps the vectors it has
                }
            )
        elif self.embed is not None and self.vectors is not None:
            self._write_vectors(self._embed_bodies(bodies))

    def _record_vectors(self, key: str, body: str, parts: list[tuple[str, bytes]] | None) -> None:
        """The vectors of one record just written: ``parts`` (encoded, as given), or else
        embedded by a handle with ``embed``; neither: the record keeps the vectors it has."""
        if parts is not None:
            self._write_vectors({key: parts})
        elif self.embed is not None and self.vectors is not None:
            self._write_vectors(self._embed_bodies({key: body}))

    def _write_vectors(self, parts: Mapping[str, list[tuple[str, bytes]]]) -> None:
        """Replace records' vectors (by key) with these parts; inside a transaction."""
        if not parts:
            return
        engine = self.store._engine
        ids = dict(
            self.store._fetch(
                f"SELECT key, id FROM {self._table} WHERE {engine.ids_in('key')}",
                (engine.ids(list(parts)),),
            )
        )
        self._store_vectors({ids[key]: rows for key, rows in parts.items()}, self.vectors)

    def _write_embedded(
        self,
        texts: Mapping[int, str],
        documents: Callable[[list[str]], Any],
        config: Mapping[str, Any],
    ) -> int:
        texts = {rid: text for rid, text in texts.items() if text}
        if not texts:
            return 0
        vectors = _embedded(documents, list(texts.values()))
        engine = self.store._engine
        existing = {
            row[0]
            for row in self.store._fetch(
                f"SELECT id FROM {self._table} WHERE {engine.ids_in('id')}",
                (engine.ids(list(texts)),),
            )
        }
        self._store_vectors(
            {
                rid: [("", _vector_blob(v, config["dim"]))]
                for rid, v in zip(texts, vectors, strict=True)
                if rid in existing  # deleted meanwhile: nothing to embed
            },
            config,
        )
        return len(existing)

    def _store_vectors(
        self, parts: Mapping[int, list[tuple[str, bytes]]], config: Mapping[str, Any] | None
    ) -> None:
        assert config is not None
        model, dim, engine = config["model"], config["dim"], self.store._engine
        self.store._run_many(
            "DELETE FROM memstore_vectors WHERE collection = ? AND record_id = ? AND model = ? "
            f"AND NOT {engine.ids_in('part')}",
            [
                (self.name, rid, model, engine.ids([p for p, _ in rows]))
                for rid, rows in parts.items()
            ],
        )
        self.store._run_many(
            "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, vector) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection, record_id, model, part) "
            "DO UPDATE SET dim = excluded.dim, vector = excluded.vector, "
            f"embedded_at = {engine.now} WHERE memstore_vectors.dim {engine.differs} "
            f"excluded.dim OR memstore_vectors.vector {engine.differs} excluded.vector",
            [
                (self.name, rid, model, part, dim, blob)
                for rid, rows in parts.items()
                for part, blob in rows
            ],
        )
        self.store._vector_writes += len(parts)
        _trim_vector_log(self.store, self.name)

    def _nearest_ids(
        self,
        q: Any,
        k: int,
        where: Mapping[str, Any] | None,
        metric: str,
        approximate: bool,
        as_of: Any = _MISSING,
    ) -> list[tuple[int, float]]:
        """(record id, score) of the k nearest live records matching ``where`` (and in a
        temporal collection, valid at ``as_of``); in a snapshot."""
        config, now = self._vector_config(), _iso(_utcnow())
        if k == 0:
            return []
        if where or self.temporal:
            clause, params = self._filter_probed(where, as_of)
            among = (f"v.record_id IN (SELECT t.id FROM {self._table} AS t WHERE {clause})", params)
        else:
            among = (
                f"v.record_id NOT IN (SELECT id FROM {self._table} "
                "WHERE expires_at IS NOT NULL AND expires_at <= ?)",
                [now],
            )
        engine = self.store._engine
        # A filter is applied exactly, before ranking: every match compared (no HNSW).
        unfiltered = approximate and not (where or self.temporal)
        found = engine.nearest(self.store, self.name, config, q, metric, k, among, unfiltered)
        if found is not None:
            return found
        index = self.store._vector_index(self.name, config)
        if not index.slot:
            return []
        if where or self.temporal:
            # One string of ids, not a row each; an index alone answers when no record
            # has an expiry to check (_filter_probed).
            ids_sql = self.store._engine.concat_ids("t.id")
            (among,) = self.store._fetch(
                f"SELECT {ids_sql} FROM {self._table} AS t WHERE {clause}", params
            )[0]
            ids = index.np.fromstring(among or "", dtype=index.np.int64, sep=",")
            return index.search(q, metric, k, among=ids, approximate=approximate)
        expired = [
            row[0]
            for row in self.store._fetch(
                f"SELECT id FROM {self._table} WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            )
        ]
        return index.search(q, metric, k, exclude=expired, approximate=approximate)

    def _nearest_known(
        self,
        q: Any,
        k: int,
        known: tuple[str, list[Any], list[int]],
        metric: str,
        approximate: bool,
    ) -> list[tuple[int, float]]:
        """(id, score) of the k nearest of what was known (_known_parts): the rows through
        the collection's index, as ``nearest`` ranks them; the replaced versions by the
        vectors kept with them (memstore_version_vectors), compared exactly."""
        config = self._vector_config()
        clause, params, versions = known
        if k == 0:
            return []
        engine, np = self.store._engine, _numpy()
        current = (f"v.record_id IN (SELECT t.id FROM {self._table} AS t WHERE {clause})", params)
        found = engine.nearest(self.store, self.name, config, q, metric, k, current, False)
        if found is None:
            index = self.store._vector_index(self.name, config)
            (among,) = self.store._fetch(
                f"SELECT {engine.concat_ids('t.id')} FROM {self._table} AS t WHERE {clause}",
                params,
            )[0]
            ids = np.fromstring(among or "", dtype=np.int64, sep=",")
            found = (
                index.search(q, metric, k, among=ids, approximate=approximate) if index.slot else []
            )
        rows = self.store._fetch(
            "SELECT -v.id, x.vector FROM memstore_versions AS v "
            "JOIN memstore_version_vectors AS x ON x.collection = v.collection "
            "AND x.key = v.key AND x.version = v.version AND x.model = ? AND x.dim = ? "
            f"WHERE {engine.ids_in('v.id')}",
            (config["model"], config["dim"], engine.ids([-i for i in versions])),
        )
        if rows:
            matrix = np.frombuffer(b"".join(row[1] for row in rows), "<f4")
            matrix = matrix.reshape(len(rows), config["dim"]).astype(np.float64)
            past = np.fromiter((row[0] for row in rows), np.int64, len(rows))
            scores = _exact_scores(np, matrix, q.astype(np.float64), metric)
            found += _best_records(np, scores, past, k, metric)
            # Nearest first (L2 gives distances), ties by id as index.search orders them.
            found.sort(key=lambda hit: (hit[1] if metric == "l2" else -hit[1], hit[0]))
        return found[:k]

    def _records_by_id(self, ids: list[int]) -> dict[int, tuple[str, str]]:
        engine = self.store._engine
        rows = self.store._fetch(
            f"SELECT t.id, {self._key_sql}, t.body FROM {self._table} AS t "
            f"WHERE {engine.ids_in('t.id')}",
            (engine.ids(ids),),
        )
        return {rid: (key, body) for rid, key, body in rows}

    def _vector_problems(self) -> list[str]:
        assert self.vectors is not None
        model, dim = self.vectors["model"], self.vectors["dim"]
        problems = []
        (orphans,) = self.store._fetch(
            "SELECT count(*) FROM memstore_vectors AS v WHERE v.collection = ? AND NOT EXISTS "
            f"(SELECT 1 FROM {self._table} AS t WHERE t.id = v.record_id)",
            (self.name,),
        )[0]
        if orphans:
            problems.append(f"{self.name}: {orphans} vectors of records that are gone")
        for other, other_dim, count in self.store._fetch(
            "SELECT model, dim, count(*) FROM memstore_vectors WHERE collection = ? "
            "AND (model <> ? OR dim <> ?) GROUP BY model, dim ORDER BY model, dim",
            (self.name, model, dim),
        ):
            problems.append(
                f"{self.name}: {count} vectors of model {other!r} (dim {other_dim}), "
                f"not the collection's {model!r} (dim {dim})"
            )
        return problems

    def _vector_stats(self) -> dict[str, Any]:
        assert self.vectors is not None
        (count,) = self.store._fetch(
            "SELECT count(*) FROM memstore_vectors WHERE collection = ? AND model = ? AND dim = ?",
            (self.name, self.vectors["model"], self.vectors["dim"]),
        )[0]
        index = self.store._vector_indexes.get(self.name)
        return {
            **self.vectors,
            "count": count,
            "memory_bytes": 0 if index is None else index.nbytes,
            "ranked_by": "pgvector" if self.store._engine.pgvector else "memstore",
        }


# --------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------


class Row(NamedTuple):
    """A record with its key and timestamps, as ``Collection.rows()`` yields them."""

    key: str
    record: Any
    created_at: str
    updated_at: str
    expires_at: str | None


class Hit(NamedTuple):
    """A full-text search result. ``score`` is the BM25 relevance, higher is better (as
    in every kind of hit: Neighbor, HybridHit); ``rank`` is FTS5's raw rank, the same
    negated (lower is better)."""

    key: str
    record: Any
    rank: float
    snippet: str
    score: float


class Remembered(NamedTuple):
    """What ``Collection.remember`` did: ``key`` holds the content now; ``action`` is
    "stored", "skipped" (a duplicate of ``duplicate_of``), "merged" or "kept both"."""

    key: str
    stored: bool
    duplicate_of: str | None
    action: str


class Version(NamedTuple):
    """One version of a record: ``archived_at`` and ``operation`` are None for the current one."""

    version: int
    record: Any
    valid_from: str
    archived_at: str | None
    operation: str | None


class _Target(NamedTuple):
    """What a field name in a filter refers to: an SQL expression and its JSON path."""

    sql: str
    params: tuple[Any, ...]
    path: str | None  # None for the meta columns (key, created_at, ...)
    kind: str | None = None  # a declared field's type: its column has that affinity


class Collection(_CollectionVectors):
    """A named set of JSON records in its own table; get one from ``Store.collection``.

    Records are dicts (or pydantic models, for a collection with a model).
    Keys are strings of 1 to 1024 characters.
    """

    def __init__(
        self,
        store: Store,
        meta: _Meta,
        model: type | None = None,
        *,
        embed: Callable[[list[str]], Any] | Any | None = None,
        seen: tuple[int, Any] | None = None,
    ) -> None:
        self.store = store
        self.embed = embed
        self.name = meta.name
        self._known_fields: set[str] = set()  # undeclared fields some record was seen to have
        #: False: no UnknownFieldWarning from this handle (for code whose filters may name
        #: absent fields by design, as LangGraph's do).
        self.warn_unknown_fields = True
        self.model = model
        self._model = _allowing_extra_fields(model) if model is not None else None
        self._table = quote_identifier(self.name)
        self._fts_table = quote_identifier(fts_table(self.name))
        # PostgreSQL reads no JSON holding NUL as text (so no filter could read the record).
        self._nul_refused = not store._engine.holds_nul
        self._insert_sql = (
            f"INSERT INTO {self._table} (key, body, created_at, updated_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        # Never resolve the conflict by REPLACE: that deletes the row without the delete
        # trigger and corrupts the FTS index. An upsert keeps the row, its id and created_at.
        # A put that changes nothing (same record, same expiry) leaves the row alone:
        # updated_at does not move and no version is archived.
        differs = store._engine.differs
        on_conflict = (
            " ON CONFLICT (key) DO UPDATE SET body = excluded.body, "
            "updated_at = excluded.updated_at, expires_at = excluded.expires_at "
            f"WHERE {self._table}.body {differs} excluded.body "
            f"OR {self._table}.expires_at {differs} excluded.expires_at"
        )
        self._upsert_sql = self._insert_sql + on_conflict
        # put_many's batch in one statement, where the engine has one (_Engine.rows_of).
        rows_of = store._engine.rows_of(5)
        self._upsert_many_sql = rows_of and (
            f"INSERT INTO {self._table} (key, body, created_at, updated_at, expires_at) "
            f"{rows_of}{on_conflict}"
        )
        # A temporal collection's put: its validity too; and its store time after the
        # last change's (see _stamp_after), for versions that follow each other.
        self._open_batch_sql = _open_fts_batch_sql(self.name)
        old = self._table
        self._temporal_upsert_sql = (
            f"INSERT INTO {self._table} (key, body, created_at, updated_at, expires_at, "
            "valid_from, valid_to) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            f"body = excluded.body, updated_at = CASE WHEN excluded.updated_at > {old}.updated_at "
            "THEN excluded.updated_at "
            f"ELSE coalesce({store._engine.millisecond_after(f'{old}.updated_at')}, "
            "excluded.updated_at) END, "
            "expires_at = excluded.expires_at, valid_from = excluded.valid_from, "
            f"valid_to = excluded.valid_to WHERE {old}.body {differs} excluded.body "
            f"OR {old}.expires_at {differs} excluded.expires_at "
            f"OR {old}.valid_from {differs} excluded.valid_from "
            f"OR {old}.valid_to {differs} excluded.valid_to"
        )
        self._apply(meta, seen)

    def _apply(self, meta: _Meta, seen: tuple[int, Any] | None = None) -> None:
        """Take a declaration: fields, FTS paths, TTL, history, and the checks they need;
        ``seen``: the store's (generation, data version) when it was read, if known."""
        self._meta = meta
        self._seen = seen or (self.store._generation, self.store._data_version())
        self.fields = dict(meta.fields)
        self.fts = list(meta.fts)
        self.ttl = None if meta.ttl_seconds is None else timedelta(seconds=meta.ttl_seconds)
        self.keeps_history = meta.history
        self.temporal = meta.temporal
        self.hygiene = None if meta.hygiene is None else dict(meta.hygiene)
        # A superseded fact is a row of its own, whose key (for reads) is its subject's.
        self._key_sql = "coalesce(t.fact_of, t.key)" if meta.temporal else "t.key"
        self.indexes = _index_dicts(meta.indexes)
        self.vectors = None if meta.vectors is None else dict(meta.vectors)
        # Declared field types, checked on every write: top-level fields (the
        # common case) with one dict lookup each, nested paths segment by segment.
        self._checks = [
            (path, _EXACT_TYPES[kind], kind)
            for path, kind in self.fields.items()
            if "." not in path
        ]
        self._nested_checks = [
            (path.split("."), _EXACT_TYPES[kind], kind)
            for path, kind in self.fields.items()
            if "." in path
        ]

    def _fresh(self) -> None:
        """Take the declaration again if it may have changed since this handle read it: by
        another handle on this Store, or by another connection (``PRAGMA data_version``).
        Writes call it inside their transaction, where nothing else can change it."""
        if (self.store._generation, self.store._data_version()) != self._seen:
            meta = self.store._require_meta(self.name)
            if meta != self._meta:
                self._apply(meta)
            self._seen = (self.store._generation, self.store._data_version())

    def __repr__(self) -> str:
        return f"<memstore.Collection {self.name!r}>"

    # -- writing -----------------------------------------------------------

    def put(
        self,
        key: str,
        record: Any,
        *,
        ttl: timedelta | float | str | None = None,
        vector: Any = None,
        valid_from: Any = None,
        valid_to: Any = None,
    ) -> str:
        """Store the record under ``key``, replacing any record there; return the key.

        ``created_at`` is kept when a record is replaced. ``ttl`` (a timedelta
        or seconds) overrides the collection's default time to live.

        In a temporal collection, ``valid_from`` and ``valid_to`` (aware
        datetimes or ISO-8601 text) bound when the fact holds in the world;
        left out, a new record holds always and a replaced one keeps its
        period. A put replaces the fact as a correction: what was stored
        before is no longer believed (``known_at`` still reads it). To record
        that a fact changed, use ``supersede``.

        In a collection with vectors, ``vector`` is the record's embedding (a
        list of floats or a numpy array), or a mapping of part names to
        embeddings for a record embedded in parts (``{}``: none); it replaces
        the record's vectors. Without it, a handle with ``embed`` embeds the
        record's text, and one without keeps the vectors the record had.
        """
        return self._put(key, record, ttl, vector, valid_from, valid_to)[0]

    def _put(
        self,
        key: str,
        record: Any,
        ttl: timedelta | float | str | None,
        vector: Any,
        valid_from: Any = None,
        valid_to: Any = None,
    ) -> tuple[str, str | None]:
        """put's work: the key now holding the record, and the key of the record hygiene
        found holding the same content (None: none; remember reports it)."""
        _check_key(key)
        if not self.temporal and (valid_from is not None or valid_to is not None):
            raise ValidationError(
                f"valid_from and valid_to need a temporal collection: declare {self.name!r} "
                "with temporal=True"
            )
        with self.store._transaction():
            self._fresh()
            body = self._encode(record)
            parts = None if vector is None else self._encode_vector(vector)
            now = _utcnow()
            stamp = _iso(now)
            expiry = self._expiry(now, ttl)
            match = digest = None
            if self.hygiene is not None:
                if parts is None and self._dedups_near() and self.embed is not None:
                    parts = self._embed_bodies({key: body}).get(key)  # once: for both
                # One hygienic write of the collection at a time: two records of the same
                # content written at once must find each other.
                self.store._engine.take_turns(self.store, f"hygiene\x1f{self.name}")
                digest = self._content_hash(body)
                match = self._duplicate_of(key, digest, parts)
                if match is not None and self.hygiene["policy"] == "merge":
                    self._merge_into(match, body)
                if match is not None and self.hygiene["policy"] != "keep":
                    return match, match
            self._writing_row()
            if self.temporal:
                period = self._period(key, valid_from, valid_to)
                self.store._fetch(
                    self._temporal_upsert_sql, (key, body, stamp, stamp, expiry, *period)
                )
            else:
                self.store._fetch(self._upsert_sql, (key, body, stamp, stamp, expiry))
            if digest is not None:
                self._after_hygienic_write([(key, digest)])
            self._record_vectors(key, body, parts)
        return key, match

    def _writing_row(self) -> None:
        """Before a write of a row: its full-text indexing waits for a batch (sql/0013).
        The first write of a batch opens it; the FTS_BATCH-th indexes the batch."""
        if self.fts and self.store._engine.batches_fts:
            writes = self.store._fts_writes
            if not writes.get(self.name):
                self.store._fetch(self._open_batch_sql)
            writes[self.name] = writes.get(self.name, 0) + 1
            if writes[self.name] > FTS_BATCH:
                _catch_up_fts(self.store, self.name, self.fts)
                self.store._fetch(self._open_batch_sql)
                writes[self.name] = 1

    def _index_waiting(self) -> bool:
        """Index the rows waiting for the full-text index, before a search or a check; say
        whether none waits any more. A store that cannot write then (a read-only file, or
        another writer holding the lock past the timeout) searches what is indexed."""
        if self.fts and self.store._engine.batches_fts and _fts_waiting(self.store, self.name):
            try:
                _catch_up_fts(self.store, self.name, self.fts)
            except MemstoreError:
                return False
        return True

    # -- memory hygiene (hygiene=...) ------------------------------------------

    def remember(
        self,
        record: Any,
        *,
        key: str | None = None,
        ttl: timedelta | float | str | None = None,
        vector: Any = None,
    ) -> Remembered:
        """Store a record the way hygiene says, and say what happened: ``Remembered(key,
        stored, duplicate_of, action)``.

        >>> notes.remember({"text": "The user prefers trains"})
        Remembered(key='01K...', stored=True, duplicate_of=None, action='stored')

        With ``hygiene={"dedup": "exact"}``, content already stored (the
        same text, case and runs of white space aside; the FTS paths' text,
        or the whole record without them) is not stored twice: policy
        "skip" leaves the record there as it is, "merge" adds the new
        record's fields to it, "keep" stores both. ``duplicate_of`` names
        the record matched.
        """
        self._need_hygiene("remember")
        target = _new_key() if key is None else _check_key(key)
        stored, match = self._put(target, record, ttl, vector)
        if match is None:
            return Remembered(target, True, None, "stored")
        action = {"skip": "skipped", "merge": "merged", "keep": "kept both"}[
            self.hygiene["policy"]  # type: ignore[index]
        ]
        return Remembered(stored, action != "skipped", match, action)

    def pin(self, *keys: str) -> int:
        """Pin records: they never expire by TTL and retention never removes them. Returns
        how many were found."""
        return len(self._mark("pin", keys, "pinned = 1, expires_at = NULL"))

    def unpin(self, *keys: str) -> int:
        """Unpin records (their next write may give them a TTL again)."""
        return len(self._mark("unpin", keys, "pinned = 0"))

    def forget(self, *keys: str) -> int:
        """Forget records softly: hidden from every read, kept for audit until ``purge``.
        ``delete`` removes a record at once. Returns how many were found."""
        return len(self._mark("forget", keys, "forgotten_at = ?", [_iso(_utcnow())], live=True))

    def unforget(self, *keys: str) -> int:
        """Bring softly forgotten records back."""
        return len(self._mark("unforget", keys, "forgotten_at = NULL, merged_into = NULL"))

    def purge(self, *, older_than: timedelta | float | str | None = None) -> int:
        """Delete the records forgotten (more than ``older_than`` ago); return how many."""
        self._need_hygiene("purge")
        cutoff = _iso(_utcnow())
        if older_than is not None:
            cutoff = _iso(_utcnow() - timedelta(seconds=_seconds(older_than, "older_than")))
        with self.store._transaction():
            return self._delete_in_batches(
                "t.forgotten_at IS NOT NULL AND t.forgotten_at <= ?",
                [cutoff],
                BATCH_SIZE,
                forget=self.keeps_history,
            )

    def merge(self, keys: Sequence[str], *, into: str, record: Any = _MISSING) -> list[str]:
        """Merge records into one: ``into`` takes ``record`` (its own when left out) and the
        others are forgotten softly, each remembering it went ``into`` it (provenance:
        ``merged_from``). One transaction; returns the keys merged."""
        self._need_hygiene("merge")
        _check_key(into)
        others = [_check_key(k) for k in _items(keys, "keys") if k != into]
        with self.store._transaction():
            if record is not _MISSING:
                self.put(into, record)
            elif self.get(into, None) is None:
                raise NotFoundError(f"no record {into!r} in {self.name!r}")
            return self._mark(
                "merge",
                others,
                "forgotten_at = ?, merged_into = ?",
                [_iso(_utcnow()), into],
                live=True,
            )

    def count_reads(self, keys: Iterable[str]) -> None:
        """Count reads of these records, as ``track=True`` does, for code that read them its
        own way (written in batches: every ACCESS_FLUSH_EVERY records, or at close)."""
        self._need_hygiene("count_reads")
        self._note_accesses([_check_key(k) for k in _items(keys, "keys")])

    def accesses(self, keys: Iterable[str]) -> dict[str, tuple[int, str | None]]:
        """How often, and when last, each record was read with ``track=True``:
        ``{key: (access_count, last_accessed)}``, reads not yet written included."""
        self._need_hygiene("accesses")
        wanted, engine = [_check_key(k) for k in _items(keys, "keys")], self.store._engine
        rows = self.store._fetch(
            f"SELECT key, access_count, last_accessed FROM {self._table} "
            f"WHERE {engine.ids_in('key')}",
            (engine.ids(wanted),),
        )
        pending = self.store._accesses.get(self.name, {})
        found = {}
        for key, count, last in rows:
            more, latest = pending.get(key, (0, None))
            found[key] = (int(count) + more, max(filter(None, (last, latest)), default=None))
        return found

    def merged_from(self, key: str) -> list[str]:
        """The keys of the records merged into ``key``."""
        self._need_hygiene("merged_from")
        rows = self.store._fetch(
            f"SELECT key FROM {self._table} WHERE merged_into = ? ORDER BY id", (_check_key(key),)
        )
        return [row[0] for row in rows]

    def candidates_for_merge(
        self, *, threshold: float = 0.95, where: Mapping[str, Any] | None = None, limit: int = 100
    ) -> list[list[str]]:
        """Clusters of records that look like one memory told twice, for an agent (its model)
        to merge or not: the same content (exactly, by hygiene's hash), and with vectors,
        cosine similarity of at least ``threshold``. Largest clusters first."""
        self._need_hygiene("candidates_for_merge")
        if not 0 < _finite(threshold, "threshold") <= 1:
            raise ValidationError(f"threshold is a cosine similarity in (0, 1], not {threshold!r}")
        _check_count(limit, "limit")
        parent: dict[str, str] = {}

        def find(key: str) -> str:
            while parent.setdefault(key, key) != key:
                key = parent[key]
            return key

        clause, params = self._filter(where)
        for (keys,) in self.store._fetch(
            f"SELECT {self.store._engine.json_array('t.key')} FROM {self._table} AS t "
            f"WHERE {clause} "
            "AND t.content_hash IS NOT NULL GROUP BY t.content_hash HAVING count(*) > 1",
            params,
        ):
            first, *rest = json.loads(keys)
            for other in rest:
                parent[find(other)] = find(first)
        if self.vectors is not None:
            for key in self.keys(where):
                vector = self.vector(key)
                if vector is None or isinstance(vector, dict):
                    continue
                for near in self.nearest(vector, k=10, where=where, metric="cosine"):
                    if near.key != key and near.score >= threshold:
                        parent[find(near.key)] = find(key)
        clusters: dict[str, list[str]] = {}
        for key in list(parent):
            clusters.setdefault(find(key), []).append(key)
        found = sorted(
            (sorted(c) for c in clusters.values() if len(c) > 1), key=lambda c: (-len(c), c)
        )
        return found[:limit]

    def _need_hygiene(self, what: str) -> None:
        if self.hygiene is None:
            raise QueryError(
                f"{what} needs memory hygiene: declare {self.name!r} with hygiene=True"
            )

    def _mark(
        self,
        what: str,
        keys: Sequence[str],
        change: str,
        params: Sequence[Any] = (),
        *,
        live: bool = False,
    ) -> list[str]:
        """Apply ``change`` (SET's text) to the records ``keys`` (only those not forgotten,
        when ``live``); return the keys found."""
        self._need_hygiene(what)
        wanted, engine = [_check_key(k) for k in keys], self.store._engine
        only = " AND forgotten_at IS NULL" if live else ""
        with self.store._transaction():
            rows = self.store._fetch(
                f"UPDATE {self._table} SET {change} "
                f"WHERE {engine.ids_in('key')}{only} RETURNING key",
                (*params, engine.ids(wanted)),
            )
        return [row[0] for row in rows]

    def _content_hash(self, body: str) -> str:
        """Hygiene's identity of a record's content: its FTS paths' text (or the whole
        record), case and runs of white space aside."""
        import hashlib  # loaded by hygiene alone: `import memstore` stays light

        record = json.loads(body)
        text = _record_text(record, self.fts) if self.fts else json.dumps(record, sort_keys=True)
        return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()

    def _dedups_near(self) -> bool:
        return self.hygiene is not None and self.hygiene.get("dedup") == "near"

    def _duplicate_of(
        self, key: str, digest: str, parts: list[tuple[str, bytes]] | None = None
    ) -> str | None:
        """Another live record holding the same content, when hygiene dedups: the same
        hash (``digest``, from _content_hash), or (dedup "near") a vector at least the
        threshold's cosine similarity."""
        if self.hygiene is None or self.hygiene.get("dedup") is None:
            return None
        rows = self.store._fetch(
            f"SELECT key FROM {self._table} WHERE content_hash = ? AND key <> ? "
            "AND forgotten_at IS NULL AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY id LIMIT 1",
            (digest, key, _iso(_utcnow())),
        )
        if rows:
            return str(rows[0][0])
        if self._dedups_near() and parts:
            vector = _numpy().frombuffer(parts[0][1], "<f4")
            for near in self.nearest(vector, k=2, metric="cosine"):
                if near.key != key and near.score >= self.hygiene["threshold"]:
                    return near.key
        return None

    def _merge_into(self, match: str, body: str) -> None:
        """Hygiene's "merge": add a new record's fields to ``match``, which holds its
        content already."""
        (held,) = self.store._fetch(f"SELECT body FROM {self._table} WHERE key = ?", (match,))
        merged = _dumps({**json.loads(held[0]), **json.loads(body)})
        self.store._fetch(
            f"UPDATE {self._table} SET body = ?, updated_at = ? WHERE key = ?",
            (merged, _iso(_utcnow()), match),
        )
        self._after_hygienic_write([(match, self._content_hash(merged))])

    def _hashed(self, rows: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """(key, body) rows as (key, content hash)."""
        return ((key, self._content_hash(body)) for key, body in rows)

    def _after_hygienic_write(self, hashed: Iterable[tuple[str, str]]) -> None:
        """Keep hygiene's columns right after a write of (key, content hash): the hash, and
        no expiry for pinned records."""
        self.store._run_many(
            f"UPDATE {self._table} SET content_hash = ?, "
            "expires_at = CASE WHEN pinned <> 0 THEN NULL ELSE expires_at END WHERE key = ?",
            [(digest, key) for key, digest in hashed],
        )

    def _note_accesses(self, keys: Iterable[str]) -> None:
        """Count reads (track=True) in memory; written every ACCESS_FLUSH_EVERY or at close."""
        pending = self.store._accesses.setdefault(self.name, {})
        now = _iso(_utcnow())
        for key in keys:
            entry = pending.setdefault(key, [0, now])
            entry[0] += 1
            entry[1] = now
        if sum(len(v) for v in self.store._accesses.values()) >= ACCESS_FLUSH_EVERY:
            _flush_accesses(self.store)

    # -- facts that change over time (temporal collections) ----------------

    def supersede(self, key: str, record: Any, *, at: Any = None, vector: Any = None) -> str:
        """Record that the fact under ``key`` changed: the old fact holds until ``at`` (now
        by default) and ``record`` from then on; both in one transaction. Returns the key.

        >>> prefs.supersede("diet", {"text": "vegetarian"}, at="2026-03-01T00:00:00Z")

        The old fact is kept, closed at ``at`` (``as_of`` reads before ``at``
        find it, with its vectors), unlike ``put``, which corrects a fact
        for all time. ``at`` must fall inside the current fact's period, or
        after its end (a fact that was invalidated holds again from ``at``;
        the old one keeps its own end).
        """
        self._need_temporal("supersede")
        _check_key(key)
        with self.store._transaction():
            self._fresh()
            current = self._current_fact(key)
            start = self._moment(current, at)
            if start >= current["valid_to"]:
                moment, ended = start, current["valid_to"]  # after a gap
            else:
                moment = ended = self._within_period(current, start)
            body = self._encode(record)
            parts = None if vector is None else self._encode_vector(vector)
            closed = f"{key}\x1f{_new_key()}"  # its own row; reads give it its subject's key
            self._writing_row()
            # One instant: the old fact closed, the new one begun, after the last change.
            stamp = _stamp_after(current["updated_at"])
            (fact_id,) = self.store._fetch(
                f"INSERT INTO {self._table} (key, body, created_at, updated_at, expires_at, "
                "valid_from, valid_to, fact_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    closed,
                    current["body"],
                    current["created_at"],
                    stamp,
                    current["expires_at"],
                    current["valid_from"],
                    ended,
                    key,
                ),
            )[0]
            self.store._fetch(
                "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, vector) "
                "SELECT collection, ?, model, part, dim, vector FROM memstore_vectors "
                "WHERE collection = ? AND record_id = ?",
                (fact_id, self.name, current["id"]),
            )
            self.store._fetch(
                f"UPDATE {self._table} SET body = ?, updated_at = ?, valid_from = ?, "
                "valid_to = ? WHERE id = ?",
                (body, stamp, moment, NEVER_AFTER, current["id"]),
            )
            self._record_vectors(key, body, parts)
        return key

    def invalidate(self, key: str, *, at: Any = None) -> str:
        """Record that the fact under ``key`` stops holding at ``at`` (now by default), with
        nothing in its place: reads as of ``at`` or later no longer find it. Returns the key.
        """
        self._need_temporal("invalidate")
        _check_key(key)
        with self.store._transaction():
            self._fresh()
            current = self._current_fact(key)
            moment = self._within_period(current, self._moment(current, at))
            self.store._fetch(
                f"UPDATE {self._table} SET valid_to = ?, updated_at = ? WHERE id = ?",
                (moment, _stamp_after(current["updated_at"]), current["id"]),
            )
        return key

    def timeline(self, key: str) -> list[dict[str, Any]]:
        """Every fact stored about ``key``, in the order they held: ``{"record",
        "valid_from", "valid_to", "stored_at", "updated_at"}`` each (None for an open end;
        ``stored_at`` when the fact was first stored, ``updated_at`` when it last changed)."""
        self._need_temporal("timeline")
        _check_key(key)
        rows = self.store._fetch(
            f"SELECT body, valid_from, valid_to, created_at, updated_at FROM {self._table} AS t "
            f"WHERE {self._key_sql} = ? ORDER BY valid_from, id",
            (key,),
        )
        return [
            {
                "record": self._decode(body),
                "valid_from": None if start == NEVER_BEFORE else start,
                "valid_to": None if end == NEVER_AFTER else end,
                "stored_at": stored,
                "updated_at": updated,
            }
            for body, start, end, stored, updated in rows
        ]

    def _need_temporal(self, what: str) -> None:
        if not self.temporal:
            raise QueryError(
                f"{what} needs a temporal collection: declare {self.name!r} with temporal=True"
            )

    def _current_fact(self, key: str) -> dict[str, Any]:
        """The row holding ``key``'s latest fact (not a superseded one)."""
        # Locked (PostgreSQL) until the block ends: another connection's supersede, put
        # or invalidate of the key waits, then reads the fact this block leaves.
        rows = self.store._fetch(
            "SELECT id, body, created_at, updated_at, expires_at, valid_from, valid_to "
            f"FROM {self._table} WHERE key = ? AND fact_of IS NULL{self.store._engine.lock_rows}",
            (key,),
        )
        if not rows:
            raise NotFoundError(f"no record {key!r} in {self.name!r}")
        names = ("id", "body", "created_at", "updated_at", "expires_at", "valid_from", "valid_to")
        return dict(zip(names, rows[0], strict=True))

    def _moment(self, current: Mapping[str, Any], at: Any) -> str:
        """When a change of the ``current`` fact takes effect: ``at``, or now. A fact that
        began as it was written (by a supersede without ``at``, say) within the last
        instant, the clock not past its start yet (a second change in the same
        millisecond; on PostgreSQL, a client's clock a little behind the writer's), is
        changed once it is: the block waits (CLOCK_WAIT seconds at most), so that now is
        now, and every value held for a while."""
        if at is not None:
            return _moment(at, "at", ValidationError)
        now, began = _utcnow(), current["valid_from"]
        if _iso(now) <= began <= current["updated_at"]:
            with contextlib.suppress(ValueError):  # another tool's unreadable time: as it is
                ahead = (datetime.fromisoformat(began) - now).total_seconds()
                if ahead <= CLOCK_WAIT:
                    time.sleep(ahead + 0.001)
                    now = _utcnow()
        return _iso(now)

    def _within_period(self, current: Mapping[str, Any], moment: str) -> str:
        """``moment`` (of at), checked to fall inside the current fact's period."""
        if not current["valid_from"] < moment < current["valid_to"]:
            raise ValidationError(
                f"at {moment} is not inside the current fact's period "
                f"[{current['valid_from']}, {current['valid_to']}): a fact can change only "
                "while it holds"
            )
        return moment

    def _period(self, key: str, valid_from: Any, valid_to: Any) -> tuple[str, str]:
        """A put's validity: as given, else the record's own, else unbounded; checked, and
        not overlapping the superseded facts about the same key."""
        start, end = _validity(valid_from, valid_to)
        if start is None or end is None:
            rows = self.store._fetch(
                f"SELECT valid_from, valid_to, fact_of FROM {self._table} WHERE key = ?", (key,)
            )
            if rows and rows[0][2] is not None:
                raise ConflictError(f"{key!r} is a superseded fact's row: write its subject")
            start = start or (rows[0][0] if rows else NEVER_BEFORE)
            end = end or (rows[0][1] if rows else NEVER_AFTER)
        if not start < end:
            raise ValidationError(f"valid_to {end} must come after valid_from {start}")
        overlap = self.store._fetch(
            f"SELECT valid_from, valid_to FROM {self._table} "
            "WHERE coalesce(fact_of, key) = ? AND fact_of IS NOT NULL "  # the subject index
            "AND valid_from < ? AND valid_to > ? LIMIT 1",
            (key, end, start),
        )
        if overlap:
            raise ValidationError(
                f"[{start}, {end}) overlaps a superseded fact about {key!r} "
                f"[{overlap[0][0]}, {overlap[0][1]})"
            )
        return start, end

    def add(
        self, record: Any, *, ttl: timedelta | float | str | None = None, vector: Any = None
    ) -> str:
        """Store a record under a new time-sortable key (a ULID) and return the key."""
        return self.put(_new_key(), record, ttl=ttl, vector=vector)

    def put_many(
        self,
        records: Iterable[Any] | Mapping[str, Any],
        *,
        key: str | Callable[[Any], str] | None = None,
        ttl: timedelta | float | str | None = None,
        vectors: Iterable[Any] | None = None,
    ) -> int:
        """Store many records, replacing any under the same keys, in one transaction; say how many.

        >>> events.put_many(records, key="id")           # key from a field
        >>> events.put_many({"a": {...}, "b": {...}})     # a mapping of key -> record
        >>> events.put_many([("a", {...}), ("b", {...})])  # (key, record) pairs
        >>> memories.put_many(records, key="id", vectors=embeddings)  # one per record

        ``records`` (and ``vectors``, in the same order) may be generators:
        they are consumed in batches; a None in ``vectors`` keeps the record's
        vectors as they are. If any record or vector is refused,
        nothing is written. Without ``vectors``, a handle with ``embed``
        embeds the records' text a batch at a time.
        """
        pairs = self._pairs(records, key)
        given = None if vectors is None else iter(_items(vectors, "vectors"))
        with self.store._transaction():
            self._fresh()
            if given is not None:
                self._vector_config()
            now = _utcnow()
            stamp, expires = _iso(now), self._expiry(now, ttl)
            batch = list(islice(pairs, BATCH_SIZE))
            if (
                (self.fts or self.ttl is not None)
                and len(batch) >= BULK_THRESHOLD
                and self.store._engine.bulk_triggers
            ):
                count = self._put_bulk(batch, pairs, stamp, expires, given)
            else:
                count = 0
                while batch:
                    rows = [
                        (_check_key(k), self._encode(r), stamp, stamp, expires) for k, r in batch
                    ]
                    if self._upsert_many_sql:
                        # One row per key, the last record winning (one statement cannot
                        # upsert a row twice), as one put after another would leave it.
                        last = list({row[0]: row for row in rows}.values())
                        params = self.store._engine.rows_params(last, 5)
                        self.store._fetch(self._upsert_many_sql, params)
                    else:
                        self.store._run_many(self._upsert_sql, rows)
                    self._batch_vectors([r[0] for r in rows], {r[0]: r[1] for r in rows}, given)
                    count += len(rows)
                    batch = list(islice(pairs, BATCH_SIZE))
            if given is not None and next(given, _MISSING) is not _MISSING:
                raise ValidationError(f"more vectors than records ({count})")
            if self.hygiene is not None:  # the rows this call wrote: their hashes, pins
                self._after_hygienic_write(
                    self._hashed(
                        self.store._fetch(
                            f"SELECT key, body FROM {self._table} "
                            "WHERE updated_at = ? OR content_hash IS NULL",
                            (stamp,),
                        )
                    )
                )
        if count >= ANALYZE_AFTER and self.store._depth == 0:
            self.store._engine.after_bulk(self.store, self.name)
        return count

    def _put_bulk(
        self,
        batch: list[tuple[Any, Any]],
        pairs: Iterator[tuple[Any, Any]],
        stamp: str,
        expires: str | None,
        given: Iterator[Any] | None,
    ) -> int:
        """put_many for many records into a collection with insert triggers: see _bulk_fts.

        The FTS index (if any) is updated once at the end: new rows by their ids
        (past the largest id before), replaced rows unindexed (with their old
        values) before being replaced, each once, and indexed again at the end;
        then, after a large load, FTS5's segments are merged (_merge_fts).
        """
        count = 0
        with self._bulk_fts() as columns, _larger_cache(self.store, BULK_CACHE_KIB):
            newest = self.store._fetch(f"SELECT coalesce(max(id), 0) FROM {self._table}")[0][0]
            unindexed: set[int] = set()
            while batch:
                # One row per key, the last record winning as with one put after another.
                rows = {
                    _check_key(k): (k, self._encode(r), stamp, stamp, expires) for k, r in batch
                }
                existing = self.store._fetch(
                    f"SELECT id FROM {self._table} WHERE key IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(rows)),),
                )
                found = [row_id for (row_id,) in existing]
                stale = [i for i in found if i <= newest and i not in unindexed]
                if stale and columns:
                    self._fts_unindex(json.dumps(stale), columns)
                    unindexed.update(stale)
                # A plain INSERT is faster than an upsert, when no key exists yet.
                self.store._run_many(self._upsert_sql if found else self._insert_sql, rows.values())
                self._batch_vectors(
                    [k for k, _ in batch], {k: r[1] for k, r in rows.items()}, given
                )
                count += len(batch)
                batch = list(islice(pairs, BATCH_SIZE))
            if columns:
                self._fts_index(newest, json.dumps(sorted(unindexed)), columns)
                if count >= ANALYZE_AFTER:
                    self._merge_fts(count)
        return count

    def _merge_fts(self, rows: int) -> None:
        """Merge the FTS5 segments a large load left, so later writes do not pay for it.

        One statement indexing many rows leaves segments that FTS5 then merges
        bit by bit on every later write: after 300,000 rows, single puts ran at
        2,100 a second instead of 6,800 to 8,500 once merged (BENCHMARKS.md).
        Merging costs about what indexing batch by batch would, and is bounded
        by the size of the load.
        """
        fts, conn = self._fts_table, self.store.connection
        for _ in range(rows // 1000 + 10):  # each round merges up to 500 pages
            before = conn.total_changes()
            self.store._fetch(f"INSERT INTO {fts} ({fts}, rank) VALUES ('merge', -500)")
            if conn.total_changes() - before < 2:  # FTS5's sign that nothing was left to do
                return

    def delete(self, key: str) -> bool:
        """Delete the record under ``key``; return whether there was one. In a temporal
        collection, every fact about ``key`` goes, superseded ones too."""
        _check_key(key)
        with self.store._transaction():
            if self.temporal:
                return bool(
                    self.store._fetch(
                        f"DELETE FROM {self._table} WHERE coalesce(fact_of, key) = ? RETURNING id",
                        (key,),
                    )
                )
            return bool(
                self.store._fetch(f"DELETE FROM {self._table} WHERE key = ? RETURNING id", (key,))
            )

    def delete_where(self, where: Mapping[str, Any]) -> int:
        """Delete every record matching ``where`` in one transaction; return how many.

        ``delete_where({})`` empties the collection.
        """
        clause, params = self._filter(
            where, include_expired=True, as_of=None, include_forgotten=True
        )
        with self.store._transaction():
            count = self._delete_in_batches(clause, params, BATCH_SIZE)
        if not count:
            self._warn_unseen(where)
        return count

    def touch(self, keys: Iterable[str], ttl: timedelta | float | str | None = None) -> int:
        """Give live records a new expiry, ``ttl`` from now; return how many there were.

        >>> memories.touch(["m1", "m2"], ttl="7d")   # read again: keep them a week more

        ``ttl`` defaults to the collection's own (without one, the records no
        longer expire). Expired records are not brought back, and the records
        themselves are left as they are: ``updated_at`` does not move, and no
        version is archived.
        """
        wanted = [_check_key(key) for key in _items(keys, "keys")]
        with self.store._transaction():
            self._fresh()
            now, engine = _utcnow(), self.store._engine
            return len(
                self.store._fetch(
                    f"UPDATE {self._table} SET expires_at = ? WHERE {engine.ids_in('key')} "
                    "AND (expires_at IS NULL OR expires_at > ?) RETURNING id",
                    (self._expiry(now, ttl), engine.ids(wanted), _iso(now)),
                )
            )

    def set_ttl(self, ttl: timedelta | float | str | None) -> None:
        """Set (or with None, remove) the default time to live of new records."""
        seconds = None if ttl is None else _seconds(ttl, "ttl")
        engine = self.store._engine
        with self.store._transaction():
            engine.lock_declarations(self.store)
            self.store._fetch(
                f"UPDATE _memstore_collections SET ttl_seconds = ?, updated_at = {engine.now} "
                "WHERE name = ?",
                (seconds, self.name),
            )
            self.store._fetch(engine.ttl_trigger_sql(self.name, seconds is not None))
            self.store._generation += 1
            self._apply(self.store._require_meta(self.name))

    # -- reading -----------------------------------------------------------

    def get(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        as_of: Any = None,
        known_at: Any = None,
        track: bool = False,
    ) -> Any:
        """The record under ``key``; ``default`` if given, else NotFoundError, when there is none.

        A record past its time to live is treated as absent. In a temporal
        collection, the fact about ``key`` that holds ``as_of`` (now by
        default), as the store knew it ``known_at`` (now by default). With
        memory hygiene, ``track=True`` counts the read (``access_count``,
        ``last_accessed``: written in batches), and a forgotten record is absent.
        """
        _check_key(key)
        if track:
            self._need_hygiene("track")
            record = self.get(
                key, _MISSING if default is _MISSING else None, as_of=as_of, known_at=known_at
            )
            if record is not None:
                self._note_accesses([key])
                return record
            return default
        view, known = self._view(as_of, known_at)  # refused on a collection that is not temporal
        if self.temporal or self.hygiene is not None:  # validity, forgotten
            found: Sequence[Any] | None = None if known else self._get_by_key(key, view)
            if found is None and self.temporal:  # a superseded fact may hold then
                found = self.query(
                    {"key": key}, order_by="-valid_from", limit=1, as_of=as_of, known_at=known_at
                )
            if found:
                return found[0]
        else:
            rows = self.store._fetch(
                f"SELECT body, expires_at FROM {self._table} WHERE key = ?", (key,)
            )
            if rows and (rows[0][1] is None or rows[0][1] > _iso(_utcnow())):
                body = rows[0][0]
                return json.loads(body) if self._model is None else self._decode(body)
        if default is _MISSING:
            raise NotFoundError(f"no record {key!r} in {self.name!r}")
        return default

    def __contains__(self, key: object) -> bool:
        try:
            return self.get(_check_key(key), None) is not None
        except ValidationError:
            return False

    def __len__(self) -> int:
        return self.count()

    def query(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        as_of: Any = None,
        known_at: Any = None,
    ) -> list[Any]:
        """Records matching ``where``, as a list.

        >>> events.query(
        ...     where={"kind": "error", "timestamp": {"$gt": "2026-11-01"}},
        ...     order_by="-timestamp",
        ...     limit=100,
        ... )

        ``where`` maps a field (a dotted JSON path, or one of key, created_at,
        updated_at, expires_at) to a value or to operators: ``$eq $ne $gt
        $gte $lt $lte $in $nin $exists $contains``; ``$and``, ``$or`` (lists
        of filters) and ``$not`` combine filters. ``order_by`` names fields,
        ``-`` first for descending; without it the order is whatever the best
        index gives. Use ``rows()`` to stream large results.

        In a temporal collection, ``as_of`` (a datetime with a time zone, or
        an ISO-8601 string) reads the facts that held then, in world time
        (now by default), and ``known_at`` reads what the store held then:
        both together say what the agent believed on one day about another.
        """
        sql, params = self._select(
            "t.body", where, order_by, limit, offset, *self._view(as_of, known_at)
        )
        decode = self._decode
        found = [decode(body) for (body,) in self.store._fetch(sql, params)]
        self._warn_unseen(where if not found else None, order_by)
        return found

    def rows(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        as_of: Any = None,
        known_at: Any = None,
    ) -> Iterator[Row]:
        """Stream matching records with their keys and timestamps, without loading them all.
        ``as_of`` and ``known_at``: as for ``query``."""
        sql, params = self.rows_sql(
            where, order_by=order_by, limit=limit, offset=offset, as_of=as_of, known_at=known_at
        )
        if limit is not None and limit <= 256:  # one batch: one statement, no server cursor
            return self._watched(self._fetched_rows(sql, params), where, order_by)
        return self._watched(self.store._stream(sql, params, self._row), where, order_by)

    def rows_sql(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        as_of: Any = None,
        known_at: Any = None,
    ) -> tuple[str, list[Any]]:
        """The statement ``rows()`` runs for these arguments, and its parameters, for
        statements of your own: several reads sent together (``Adapter.execute_together``,
        one round trip on PostgreSQL), or a query within a larger one. Its rows are
        ``(key, body, created_at, updated_at, expires_at)``, ``body`` the record's JSON
        text; its parameters are ``?``, as an Adapter's ``execute`` takes them on either
        engine (and apsw's connection, ``store.connection``, on SQLite).

        >>> sql, params = notes.rows_sql({"kind": "todo"}, order_by="-updated_at", limit=5)
        """
        view = self._view(as_of, known_at)
        key = "t.key" if view[1] is not None else self._key_sql
        return self._select(
            f"{key}, t.body, t.created_at, t.updated_at, t.expires_at",
            where,
            order_by,
            limit,
            offset,
            *view,
        )

    def _fetched_rows(self, sql: str, params: Sequence[Any]) -> Iterator[Row]:
        """rows() of a small limit: read when the iteration starts, as a stream would be."""
        yield from [self._row(row) for row in self.store._fetch(sql, params)]

    def _watched(
        self, rows: Iterator[Row], where: Mapping[str, Any] | None, order_by: Any
    ) -> Iterator[Row]:
        found = False
        for row in rows:
            found = True
            yield row
        self._warn_unseen(where if not found else None, order_by)

    def keys(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        as_of: Any = None,
        known_at: Any = None,
    ) -> list[str]:
        """Keys of the matching records (``as_of``, ``known_at``: as for ``query``)."""
        view = self._view(as_of, known_at)
        key = "t.key" if view[1] is not None else self._key_sql
        sql, params = self._select(key, where, order_by, limit, offset, *view)
        found = [row[0] for row in self.store._fetch(sql, params)]
        self._warn_unseen(where if not found else None, order_by)
        return found

    def count(
        self, where: Mapping[str, Any] | None = None, *, as_of: Any = None, known_at: Any = None
    ) -> int:
        """How many records match ``where`` (all live records when None); ``as_of`` and
        ``known_at`` as for ``query``."""
        as_of, known_at = self._view(as_of, known_at)
        with self.store._transaction(immediate=False):  # the probe and the count: one snapshot
            if known_at is not None:
                sql, params = self._select("count(*)", where, None, None, 0, as_of, known_at)
            else:
                clause, params = self._filter_probed(where, as_of)
                sql = f"SELECT count(*) FROM {self._table} AS t WHERE {clause}"
            count = int(self.store._fetch(sql, params)[0][0])
        if not count:
            self._warn_unseen(where)
        return count

    def search(
        self,
        text: str,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int = 20,
        offset: int = 0,
        highlight: tuple[str, str] = ("[", "]"),
        snippet_tokens: int = 12,
        as_of: Any = None,
        known_at: Any = None,
        track: bool = False,
    ) -> list[Hit]:
        """Full-text search over the collection's FTS paths, best matches first.

        >>> events.search("timeout AND retry", where={"agent_id": "a1"}, limit=20)

        ``text`` is an FTS5 query: words, "phrases", AND/OR/NOT, prefix*,
        ``column: word``. A query FTS5 cannot parse raises QueryError.
        In a temporal collection, ``as_of`` searches the facts that held then
        and ``known_at`` what the store held then (as for ``query``): versions
        replaced since are searched too, through an index of their text made
        for the query, and every hit is ranked by bm25 over the statistics of
        the collection's index and that one together (FTS5's own formula), so
        the ranks of current and replaced versions compare.
        """
        if not self.fts:
            raise QueryError(f"collection {self.name!r} has no full-text index (declare fts=[...])")
        if track:
            self._need_hygiene("track")
        _check_match(text)
        _check_count(limit, "limit")
        _check_count(offset, "offset")
        _check_count(snippet_tokens, "snippet_tokens")
        if not (
            isinstance(highlight, (tuple, list))
            and len(highlight) == 2
            and all(isinstance(h, str) for h in highlight)
        ):
            raise QueryError(f"highlight must be two strings, not {highlight!r:.60}")
        view, known = self._view(as_of, known_at)
        self._index_waiting()
        with self.store._transaction(immediate=False):  # the probe and the search: one snapshot
            if known is not None:
                found = self._known_matches(
                    text,
                    self._known_parts(where, view, known),
                    limit + offset,
                    (highlight[0], highlight[1]),
                    snippet_tokens,
                )
                rows = [row[1:] for row in found[offset:]]
            else:
                clause, params = self._filter_probed(where, view)
                options = ((highlight[0], highlight[1]), snippet_tokens, limit, offset)
                rows = self.store._engine.fts_search(self, clause, params, text, options)
        if track:
            self._note_accesses(row[0] for row in rows)
        return [Hit(key, self._decode(body), rank, snip, -rank) for key, body, rank, snip in rows]

    def aggregate(
        self,
        group_by: str | Sequence[str] | None = None,
        *,
        of: str | None = None,
        where: Mapping[str, Any] | None = None,
        percentiles: Sequence[float] = (50, 90, 95, 99),
    ) -> list[dict[str, Any]]:
        """Count records per group, and summarize a numeric field ``of`` them.

        >>> events.aggregate(group_by="kind", of="duration")
        [{"kind": "error", "count": 12, "min": 0.1, "max": 9.5, "sum": 31.0,
          "avg": 2.58, "median": 1.9, "p90": 6.0, "p95": 8.1, "p99": 9.4}, ...]

        Groups come largest first. Percentiles interpolate linearly between
        the nearest values and ignore values that are not numbers.
        """
        groups = _names(group_by, "group_by")
        if not isinstance(percentiles, (list, tuple)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentiles
        ):
            raise QueryError(f"percentiles must be a list of numbers, not {percentiles!r:.60}")
        if any(not 0 <= p <= 100 for p in percentiles):  # NaN fails this too
            raise QueryError("percentiles must be between 0 and 100")
        quantiles = sorted({float(p) for p in percentiles} | {50.0})
        if any(not 0 <= p <= 100 for p in quantiles):
            raise QueryError("percentiles must be between 0 and 100")
        engine = self.store._engine
        select: list[str] = []
        params: list[Any] = []
        readers = []  # per group: how many terms it has, and how its value is read from them
        for group in groups:
            terms, term_params, read = engine.group_terms(self._target(group))
            select += terms
            params += term_params
            readers.append((len(terms), read))
        width = len(select)
        select.append("count(*)")
        if of is not None:
            terms, term_params = engine.summary_terms(
                self._target(of), [q / 100 for q in quantiles]
            )
            select += terms
            params += term_params
        clause, where_params = self._filter(where)
        sql = f"SELECT {', '.join(select)} FROM {self._table} AS t WHERE {clause}"
        if groups:
            positions = ", ".join(str(i + 1) for i in range(width))
            sql += f" GROUP BY {positions} ORDER BY {width + 1} DESC, {positions}"
        results = []
        for row in self.store._fetch(sql, [*params, *where_params]):
            result, at = {}, 0
            for group, (size, read) in zip(groups, readers, strict=True):
                result[group] = read(row[at : at + size])
                at += size
            result["count"] = row[width]
            if of is not None:
                stats = [engine.summary_value(v) for v in row[width + 1 : width + 5]]
                result.update(zip(("min", "max", "sum", "avg"), stats, strict=True))
                spread = row[width + 5]
                values = json.loads(spread) if spread else [None] * len(quantiles)
                result["median"] = values[quantiles.index(50.0)]
                for q, value in zip(quantiles, values, strict=True):
                    result[f"p{q:g}"] = value
            results.append(result)
        return results

    # -- retention ---------------------------------------------------------

    def cleanup(
        self,
        *,
        older_than: timedelta | float | str | None = None,
        by: Literal["created", "updated"] = "created",
        keep_last: int | None = None,
        expired: bool = True,
        batch_size: int = BATCH_SIZE,
    ) -> int:
        """Delete what retention says to; return how many records were removed.

        A record goes if it is past its time to live (unless ``expired=False``),
        or if retention says so: created (``by="updated"``: last updated) more
        than ``older_than`` ago, and not among the ``keep_last`` newest. Either
        works alone; together, "older than X, but always keep the last N". Deletes run in
        transactions of ``batch_size`` rows so other writers wait only briefly.
        In a collection with history, the removed records' versions go too,
        as do versions archived more than ``older_than`` ago.
        """
        _check_by(by)
        _check_batch_size(batch_size)
        now = _utcnow()
        conditions: list[str] = []
        params: list[Any] = []
        if expired:
            conditions.append("(t.expires_at IS NOT NULL AND t.expires_at <= ?)")
            params.append(_iso(now))
        retention: list[str] = []  # all must hold: older than, and not among the newest
        if older_than is not None:
            cutoff = _iso(now - timedelta(seconds=_seconds(older_than, "older_than")))
            retention.append(f"t.{by}_at < ?")
            params.append(cutoff)
            if self.keeps_history:
                with self.store._transaction():
                    self.store._fetch(
                        "DELETE FROM memstore_versions WHERE collection = ? AND archived_at < ?",
                        (self.name, cutoff),
                    )
        if keep_last is not None:
            _check_count(keep_last, "keep_last")
            # Only live records count among the newest kept: an expired one goes anyway.
            boundary = self.store._fetch(
                f"SELECT created_at, id FROM {self._table} "
                "WHERE expires_at IS NULL OR expires_at > ? "
                "ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                (_iso(now), keep_last),
            )
            # The newest record past the ones to keep, and all older; none: keep all.
            retention.append("(t.created_at, t.id) <= (?, ?)" if boundary else "false")
            params += boundary[0] if boundary else []
        if retention:
            conditions.append("(" + " AND ".join(retention) + ")")
        if not conditions:
            return 0
        clause = " OR ".join(conditions)
        if self.hygiene is not None:  # pinned records stay, whatever retention says
            clause = f"t.pinned = 0 AND ({clause})"
        return self._delete_in_batches(clause, params, batch_size, forget=self.keeps_history)

    def stats(self) -> dict[str, Any]:
        """What the collection holds and how it is declared.

        ``{"records", "expired", "oldest", "newest", "fields", "fts",
        "ttl_seconds", "history", "indexes", "vectors"}``: live records, records past their TTL
        waiting for ``cleanup()``, the oldest ``created_at`` and newest
        ``updated_at`` (None when empty), and the declaration; ``vectors`` adds
        how many vectors there are and the memory their index takes here.
        """
        oldest, newest = self.store._fetch(
            f"SELECT min(created_at), max(updated_at) FROM {self._table}"
        )[0]
        return {
            "records": self.count(),
            "expired": self.expired_count(),
            "oldest": oldest,
            "newest": newest,
            "fields": dict(self.fields),
            "fts": list(self.fts),
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "history": self.keeps_history,
            "indexes": [dict(i) for i in self.indexes],
            "vectors": None if self.vectors is None else self._vector_stats(),
        }

    def expired_count(self) -> int:
        """How many records are past their TTL, waiting for ``cleanup()``."""
        rows = self.store._fetch(
            f"SELECT count(*) FROM {self._table} WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (_iso(_utcnow()),),
        )
        return int(rows[0][0])

    def import_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write rows as ``export()`` and ``rows()`` give them, keeping their keys and timestamps.

        >>> notes.import_rows([{"key": "n1", "record": {"text": "hi"},
        ...                     "created_at": "2025-03-01T10:00:00Z"}])
        1

        Each row is a mapping with ``key`` and ``record`` and optionally
        ``created_at``, ``updated_at`` and ``expires_at`` (ISO-8601 with a
        time zone; now when absent), and in a collection with vectors
        ``vectors`` (``{part: [floats]}``, part "" for a whole record). A
        key already stored takes the row's record and timestamps; identical
        rows are left alone, so importing twice changes nothing. All or
        nothing; returns the number of rows.
        """
        changed = " OR ".join(
            f"{self._table}.{column} {self.store._engine.differs} excluded.{column}"
            for column in ("body", "created_at", "updated_at", "expires_at")
        )
        upsert = (
            f"INSERT INTO {self._table} (key, body, created_at, updated_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET body = excluded.body, "
            "created_at = excluded.created_at, updated_at = excluded.updated_at, "
            f"expires_at = excluded.expires_at WHERE {changed}"
        )
        if self.temporal:
            upsert = upsert.replace(
                "(key, body, created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                "(key, body, created_at, updated_at, expires_at, valid_from, valid_to, fact_of) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ).replace(
                "expires_at = excluded.expires_at WHERE",
                "expires_at = excluded.expires_at, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to, fact_of = excluded.fact_of WHERE",
            )
            differs = self.store._engine.differs
            upsert += "".join(
                f" OR {self._table}.{column} {differs} excluded.{column}"
                for column in ("valid_from", "valid_to", "fact_of")
            )
        count = 0
        rows = iter(_items(rows, "rows"))
        with self.store._transaction():
            self._fresh()
            now = _iso(_utcnow())
            while batch := list(islice(rows, BATCH_SIZE)):  # a batch at a time: memory stays flat
                values: list[tuple[Any, ...]] = [self._import_row(row, now) for row in batch]
                if self.temporal:
                    values = [
                        (*value, *self._import_validity(row))
                        for value, row in zip(values, batch, strict=True)
                    ]
                vectors = {
                    row["key"]: self._encode_vector(_mapping(row["vectors"], "vectors"))
                    for row in batch
                    if row.get("vectors") is not None
                }
                self.store._run_many(upsert, values)
                self._write_vectors(vectors)
                if self.ttl is not None:  # rows exported without an expiry keep none
                    engine = self.store._engine
                    self.store._fetch(
                        f"UPDATE {self._table} SET expires_at = NULL WHERE {engine.ids_in('key')}",
                        (engine.ids([v[0] for v in values if v[4] is None]),),
                    )
                count += len(values)
        return count

    def _import_row(self, row: Any, now: str) -> tuple[str, str, str, str, str | None]:
        if not isinstance(row, Mapping) or "key" not in row or "record" not in row:
            raise ValidationError(f"a row needs a key and a record, not {row!r:.200}")
        created = _optional_timestamp(row.get("created_at")) or now
        return (
            _check_key(row["key"]),
            self._encode(row["record"]),
            created,
            _optional_timestamp(row.get("updated_at")) or created,
            _optional_timestamp(row.get("expires_at")),
        )

    def _import_validity(self, row: Mapping[str, Any]) -> tuple[str, str, str | None]:
        start = row.get("valid_from")
        end = row.get("valid_to")
        start = NEVER_BEFORE if start is None else _moment(start, "valid_from", ValidationError)
        end = NEVER_AFTER if end is None else _moment(end, "valid_to", ValidationError)
        if not start < end:
            raise ValidationError(f"valid_to {end} must come after valid_from {start}")
        fact_of = row.get("fact_of")
        return start, end, None if fact_of is None else _check_key(fact_of)

    # -- version history -----------------------------------------------------

    def history(self, key: str) -> list[Version]:
        """Every version of a record, oldest first, the current one (if any) last.

        Needs ``history=True`` on the collection; versions are kept from then on.
        """
        _check_key(key)
        if not self.keeps_history:
            raise QueryError(f"collection {self.name!r} keeps no history (declare history=True)")
        with self.store._transaction(immediate=False):  # the archive and the row agree
            rows = self.store._fetch(
                "SELECT version, body, valid_from, archived_at, operation FROM memstore_versions "
                "WHERE collection = ? AND key = ? ORDER BY version, id",
                (self.name, key),
            )
            last = self.store._fetch(
                "SELECT last FROM memstore_version_counters WHERE collection = ? AND key = ?",
                (self.name, key),
            )
            current = self.store._fetch(
                f"SELECT body, updated_at FROM {self._table} WHERE key = ?", (key,)
            )
        versions = [
            Version(number, self._decode(body), valid_from, archived_at, operation)
            for number, body, valid_from, archived_at, operation in rows
        ]
        if current:
            number = (last[0][0] if last else 0) + 1
            versions.append(Version(number, self._decode(current[0][0]), current[0][1], None, None))
        if not versions:
            raise NotFoundError(f"no record {key!r} in {self.name!r}, now or before")
        return versions

    def revert(self, key: str, version: int) -> Any:
        """Make a past version current again (the revert is itself a new version); return it."""
        with self.store._transaction():
            versions = {v.version: v for v in self.history(key)}
            if not isinstance(version, int) or isinstance(version, bool) or version not in versions:
                raise NotFoundError(
                    f"{key!r} has versions {', '.join(map(str, versions))}, not {version!r}"
                )
            record = versions[version].record
            self.put(key, record)
        return record

    # -- maintenance -------------------------------------------------------

    def check(self) -> list[str]:
        """Problems with this collection's indexes, triggers and FTS index; empty when none."""
        problems = [
            f"{self.name}: missing {kind} {name}" for kind, name, _ in self._missing_objects()
        ]
        # Rows still waiting (the file could not be written) are no fault of the index.
        if (
            self.fts
            and self.store._engine.batches_fts
            and not any(" table " in p for p in problems)
            and self._index_waiting()
        ):
            problems += _fts_problems(self.store, self._fts_table)
        if self.vectors is not None:
            problems += self._vector_problems()
        if self.temporal:
            problems += self._period_problems()
        return problems

    def _period_problems(self) -> list[str]:
        """Validity periods another tool wrote wrong: ending before they start, or facts
        about one key that hold at the same time (reads would pick one)."""
        (backwards,) = self.store._fetch(
            f"SELECT count(*) FROM {self._table} WHERE NOT valid_from < valid_to"
        )[0]
        overlapping = self.store._fetch(
            f"SELECT coalesce(a.fact_of, a.key) FROM {self._table} AS a "
            f"JOIN {self._table} AS b ON coalesce(b.fact_of, b.key) = coalesce(a.fact_of, a.key) "
            "AND b.id > a.id AND b.valid_from < a.valid_to AND a.valid_from < b.valid_to "
            "LIMIT 5"
        )
        problems = []
        if backwards:
            problems.append(
                f"{self.name}: {backwards} records whose valid_to is not after valid_from"
            )
        if overlapping:
            keys = ", ".join(repr(row[0]) for row in overlapping)
            problems.append(f"{self.name}: facts about one key hold at the same time ({keys})")
        return problems

    def rebuild_fts(self) -> None:
        """Rebuild the full-text index from the rows, and its triggers."""
        if not self.fts:
            raise QueryError(f"collection {self.name!r} has no full-text index")
        with self.store._transaction():
            for sql in self.store._engine.fts_sql(self.name, self.fts):
                self.store._fetch(sql)

    def _repair(self) -> list[str]:
        done = []
        with self.store._transaction():
            for kind, name, sql in self._missing_objects():
                if sql:  # indexes and history triggers; FTS triggers come with the rebuild
                    self.store._fetch(sql)
                    done.append(f"{self.name}: recreated {kind} {name}")
            if self.vectors is not None and self._vector_problems():
                # Orphans, and vectors of another model (an unfinished re_embed).
                self.store._fetch(
                    "DELETE FROM memstore_vectors AS v WHERE v.collection = ? AND ((model, dim) "
                    f"!= (?, ?) OR NOT EXISTS (SELECT 1 FROM {self._table} AS t "
                    "WHERE t.id = v.record_id))",
                    (self.name, self.vectors["model"], self.vectors["dim"]),
                )
                done.append(f"{self.name}: deleted vectors of missing records or other models")
            problems = [p for p in self.check() if " vectors " not in p]
            if self.fts and problems:
                self.rebuild_fts()
                done.append(f"{self.name}: rebuilt the full-text index and its triggers")
        return done

    def _missing_objects(self) -> list[tuple[str, str, str]]:
        engine = self.store._engine
        present = engine.schema_names(self.store, self.name)
        nulls = engine.nulls_first
        wanted = [
            ("index", _index_name(self.name, c), _index_sql(self.name, c, nulls_first=nulls))
            for c in _BASE_INDEXED
            if self._meta.time_indexes or c not in _TIME_INDEXED
        ]
        touch = engine.touch_trigger_sql(self.name, self.temporal)
        wanted.append(("trigger", _touch_trigger(self.name), touch))
        if self.ttl is not None:
            ttl = engine.ttl_trigger_sql(self.name, True)
            wanted.append(("trigger", _ttl_trigger(self.name), ttl))
        wanted += [
            (
                "index",
                _compound_index_name(self.name, spec),
                _compound_index_sql(self.name, spec, nulls_first=nulls),
            )
            for spec in self._meta.indexes
        ]
        led = _leading_fields(self._meta.indexes)  # served by an index over several fields
        wanted += [
            (
                "index",
                _index_name(self.name, field_column(p)),
                _field_index_sql(self._meta, p, nulls_first=nulls),
            )
            for p in self.fields
            if p not in led
        ]
        if self.fts and not engine.batches_fts:  # PostgreSQL's: its index (rebuild makes it)
            wanted.append(("index", _index_name(self.name, "fts"), ""))
        elif self.fts:
            wanted.append(("table", fts_table(self.name), ""))
            wanted += [("trigger", _fts_trigger(self.name, e), "") for e in _FTS_EVENTS]
        if self.vectors is not None:
            wanted.append(
                ("trigger", _vector_trigger(self.name), engine.vector_trigger_sql(self.name))
            )
        if self.keeps_history:
            wanted += [
                ("trigger", f"{self.name}__history_{event}", sql)
                for event, sql in zip(
                    ("update", "delete"),
                    engine.history_trigger_sql(self.name, temporal=self.temporal),
                    strict=True,
                )
            ]
        if self.temporal and self.vectors is not None:
            wanted += [
                ("trigger", f"{self.name}__history_vectors_{event}", sql)
                for event, sql in zip(
                    ("update", "delete"),
                    engine.vector_history_trigger_sql(self.name),
                    strict=True,
                )
            ]
        if self.temporal:
            wanted.append(
                ("index", _index_name(self.name, "validity"), _validity_index_sql(self.name))
            )
            wanted.append(
                ("index", _index_name(self.name, "subject"), _subject_index_sql(self.name))
            )
        missing = [item for item in wanted if item[1] not in present]
        if engine.pgvector and self.vectors is not None and self.vectors.get("hnsw"):
            index, sql = _hnsw_index(self.name, self.vectors)  # on memstore_vectors
            if index not in engine.schema_names(self.store, "memstore_vectors"):
                missing.append(("index", index, sql))
        return missing

    # -- private -----------------------------------------------------------

    def _encode(self, record: Any) -> str:
        """Validate a record and return its JSON text."""
        if self._model is not None:
            data = record.model_dump(mode="json") if hasattr(record, "model_dump") else record
            if not isinstance(data, Mapping):
                raise ValidationError(f"a {self._model.__name__} record must be a model or a dict")
            try:
                data = self._model.model_validate(data).model_dump(mode="json")
            except ValueError as err:  # pydantic's ValidationError is a ValueError
                raise ValidationError(
                    f"record is not a valid {self._model.__name__}: {err}"
                ) from err
        elif type(record) is dict or isinstance(record, Mapping):
            data = record
        else:
            raise ValidationError(f"a record must be a dict, not {type(record).__name__}")
        get = data.get
        for path, exact, kind in self._checks:
            value = get(path)
            if value is not None and type(value) not in exact and not _fits(value, kind):
                raise _wrong_type(path, kind, value)
        for segments, exact, kind in self._nested_checks:
            value = data
            for segment in segments:
                value = value.get(segment) if isinstance(value, Mapping) else None
            if value is not None and type(value) not in exact and not _fits(value, kind):
                raise _wrong_type(".".join(segments), kind, value)
        text = _dumps(data)
        if self._nul_refused and "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise ValidationError("a PostgreSQL store cannot hold U+0000 (NUL) in a string")
        return text

    def _decode(self, body: str) -> Any:
        data = json.loads(body)
        if self._model is None:
            return data
        try:
            return self._model.model_validate(data)
        except ValueError as err:
            raise ValidationError(
                f"stored record is not a valid {self._model.__name__}: {err}"
            ) from err

    def _row(self, row: Any) -> Row:
        key, body, created_at, updated_at, expires_at = row
        return Row(key, self._decode(body), created_at, updated_at, expires_at)

    def _pairs(
        self, records: Iterable[Any] | Mapping[str, Any], key: str | Callable[[Any], str] | None
    ) -> Iterator[tuple[Any, Any]]:
        if isinstance(records, Mapping):
            if key is not None:
                raise ValidationError("give key= for a list of records, not for a mapping")
            yield from records.items()
            return
        for item in _items(records, "records"):
            if key is None:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise ValidationError("without key=, records must be (key, record) pairs")
                yield item
            elif callable(key):
                yield key(item), item
            else:
                data = (
                    item
                    if type(item) is dict or not hasattr(item, "model_dump")
                    else item.model_dump(mode="json")
                )
                if not isinstance(data, Mapping) or key not in data:
                    raise ValidationError(
                        f"record has no {key!r} field to use as its key: {item!r}"
                    )
                yield data[key], item

    def _expiry(self, now: datetime, ttl: timedelta | float | str | None) -> str | None:
        seconds = _seconds(ttl, "ttl") if ttl is not None else None
        if seconds is None and self.ttl is not None:
            seconds = self.ttl.total_seconds()
        return None if seconds is None else _iso(now + timedelta(seconds=seconds))

    @contextmanager
    def _bulk_fts(self) -> Iterator[list[str]]:
        """Keep the FTS index up to date from here, not by the triggers, for a bulk insert.

        With any trigger on the table, even one whose WHEN clause skips it,
        bulk inserts run two to three times slower (see BENCHMARKS.md). So a
        put_many of many records drops, once per call, the insert triggers
        (FTS, and the default TTL's, which memstore's own writes never need),
        updates the index with a few statements per batch and creates the
        triggers again, all in one savepoint: other connections only ever see
        the triggers in place, and an error restores them. Yields the FTS
        columns ([] without FTS).
        """
        with self.store._transaction():
            meta = self.store._require_meta(self.name)  # another process may have added FTS paths
            columns = [field_column(path) for path in meta.fts]
            if columns and _fts_waiting(self.store, self.name):  # the rows up to now: indexed
                _catch_up_fts(self.store, self.name, meta.fts)
            for sql in [
                *_drop_fts_sql(self.name, keep_table=True),
                _drop_ttl_trigger_sql(self.name),
            ]:
                self.store._fetch(sql)
            yield columns
            if columns:  # the rows the load indexed: covered
                self.store._fetch(_fts_progress_sql(self.name))
                for sql in _fts_trigger_sql(self.name, columns).values():
                    self.store._fetch(sql)
            if meta.ttl_seconds is not None:
                self.store._fetch(_ttl_trigger_sql(self.name))

    def _fts_index(self, newest: int, replaced: str, columns: list[str]) -> None:
        """Index the new rows (ids past ``newest``) and the ``replaced`` ones (a JSON list)."""
        insert = (
            f"INSERT INTO {self._fts_table} (rowid, {{0}}) SELECT id, {{0}} FROM {self._table} "
        )
        insert = insert.format(", ".join(quote_identifier(c) for c in columns))
        # Two statements: with an OR, SQLite scans the whole table instead of a rowid range.
        self.store._fetch(insert + "WHERE id > ?", (newest,))
        if replaced != "[]":
            self.store._fetch(insert + "WHERE id IN (SELECT value FROM json_each(?))", (replaced,))

    def _fts_unindex(self, ids_json: str, columns: list[str]) -> None:
        """Remove rows from the index with the values it indexed: external content needs them."""
        cols = ", ".join(quote_identifier(c) for c in columns)
        self.store._fetch(
            f"INSERT INTO {self._fts_table} ({self._fts_table}, rowid, {cols}) "
            f"SELECT 'delete', id, {cols} FROM {self._table} "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids_json,),
        )

    def _delete_in_batches(
        self, clause: str, params: Sequence[Any], batch_size: int, *, forget: bool = False
    ) -> int:
        """Delete matching rows, ``batch_size`` per transaction; return how many.

        ``forget`` also deletes the rows' versions (retention, not a user's delete).
        """
        total = 0
        select = f"SELECT t.id, t.key FROM {self._table} AS t WHERE {clause} LIMIT ?"
        while True:
            with self.store._transaction():
                found = self.store._fetch(select, [*params, batch_size])
                ids = [row[0] for row in found]
                engine = self.store._engine
                if ids:  # the FTS delete trigger is as fast as doing it here, and
                    # leaves the schema alone (dropping it would make every other
                    # connection prepare its statements again)
                    self.store._fetch(
                        f"DELETE FROM {self._table} WHERE {engine.ids_in('id')}",
                        (engine.ids(ids),),
                    )
                if ids and forget:
                    keys = engine.ids([row[1] for row in found])
                    for table in ("memstore_versions", "memstore_version_counters"):
                        self.store._fetch(
                            f"DELETE FROM {table} WHERE collection = ? AND {engine.ids_in('key')}",
                            (self.name, keys),
                        )
            total += len(ids)
            if len(ids) < batch_size:
                return total

    def _warn_unseen(self, where: Mapping[str, Any] | None, order_by: Any = None) -> None:
        """Warn (UnknownFieldWarning) about fields of a filter or an order that no record has.

        A filter that matched nothing, or an order, on a field no record of a
        non-empty collection has is most likely a typo: it would silently give
        nothing, or an arbitrary order. Not an error, because a field may be
        legitimately absent so far (an optional one no record has yet). Called
        for filters only when they matched nothing, so a query that finds
        records pays nothing; a field seen once is remembered by the handle.
        """
        if not self.warn_unknown_fields:
            return
        fields: list[str] = []

        def recording(field: str) -> _Target:
            fields.append(field)
            return self._target(field)

        if where:
            _compile_filter(where, recording, self.store._engine.operators)
        for order in _names(order_by, "order_by"):
            fields.append(order[1:] if order.startswith("-") else order)
        unseen = [f for f in dict.fromkeys(fields) if not self._has_field(f)]
        if unseen:
            declared = ", ".join(self.fields) or "none"
            warnings.warn(
                UnknownFieldWarning(
                    f"no record of {self.name!r} has {', '.join(map(repr, unseen))} "
                    f"(a typo?); declared fields: {declared}"
                ),
                stacklevel=3,
            )

    def _has_field(self, field: str) -> bool:
        """Whether a field is declared, a meta column, or in some record (or there are none)."""
        if field in META_COLUMNS or field in self.fields or field in self._known_fields:
            return True
        if self.temporal and field in _VALIDITY_COLUMNS:
            return True
        exists, params = self.store._engine.path_exists(_json_path(field))
        has, empty = self.store._fetch(
            f"SELECT EXISTS (SELECT 1 FROM {self._table} AS t WHERE {exists}), "
            f"NOT EXISTS (SELECT 1 FROM {self._table})",
            params,
        )[0]
        if has:
            self._known_fields.add(field)
        return bool(has or empty)

    def _view(self, as_of: Any, known_at: Any) -> tuple[Any, str | None]:
        """A read's time view, checked: (as_of for _filter, known_at as a timestamp or None)."""
        if (as_of is not None or known_at is not None) and not self.temporal:
            raise QueryError(
                f"as_of and known_at need a temporal collection: declare {self.name!r} "
                "with temporal=True"
            )
        known = None if known_at is None else _moment(known_at, "known_at")
        return (_MISSING if as_of is None else as_of), known

    def _known_source(self, known_at: str, rows: bool = True) -> tuple[str, list[Any]]:
        """What the store held at ``known_at``, as rows of (id, key, body, created_at,
        updated_at, expires_at, valid_from, valid_to): the rows whose current version was
        known then (unless ``rows`` is False), and the versions that were current then
        and have been replaced since, their ids negated (see _known_records)."""
        sql = (
            "SELECT -v.id AS id, coalesce(v.fact_of, v.key) AS key, v.body AS body, "
            "v.valid_from AS created_at, v.valid_from AS updated_at, NULL AS expires_at, "
            f"coalesce(v.fact_from, {_literal(NEVER_BEFORE)}) AS valid_from, "
            f"coalesce(v.fact_to, {_literal(NEVER_AFTER)}) AS valid_to "
            "FROM memstore_versions AS v WHERE v.collection = ? AND v.valid_from <= ? "
            "AND v.archived_at > ?"
        )
        params = [self.name, known_at, known_at]
        if rows:
            sql = (
                "SELECT t.id AS id, coalesce(t.fact_of, t.key) AS key, t.body AS body, "
                "t.created_at AS created_at, t.updated_at AS updated_at, "
                "t.expires_at AS expires_at, t.valid_from AS valid_from, "
                f"t.valid_to AS valid_to FROM {self._table} AS t "
                f"WHERE t.updated_at <= ? UNION ALL {sql}"
            )
            params = [known_at, *params]
        return sql, params

    def _get_by_key(self, key: str, as_of: Any) -> tuple[Any] | None:
        """(the record,) when the key's own row is live, not forgotten and (in a temporal
        collection) holds ``as_of``: one lookup by key. Else None: in a temporal collection
        a superseded fact may hold then (a query by subject decides)."""
        validity = "valid_from, valid_to" if self.temporal else "'', '~'"
        forgotten = "forgotten_at" if self.hygiene is not None else "NULL"
        rows = self.store._fetch(
            f"SELECT body, expires_at, {validity}, {forgotten} FROM {self._table} WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        now = _iso(_utcnow())
        moment = now if as_of is _MISSING else _moment(as_of, "as_of")
        body, expires, start, end, forgotten_at = rows[0]
        if (expires is None or expires > now) and start <= moment < end and forgotten_at is None:
            return (self._decode(body),)
        return None

    def _known_parts(
        self, where: Mapping[str, Any] | None, as_of: Any, known_at: str
    ) -> tuple[str, list[Any], list[int]]:
        """What the store held at ``known_at`` matching ``where`` and valid ``as_of`` (then,
        by default), in two parts, for reads that rank: a condition on the collection's
        own rows (``t``: those unchanged since, which its indexes serve), and the ids,
        negated, of the versions replaced since (few, when known_at is recent)."""
        moment = known_at if as_of is _MISSING else _moment(as_of, "as_of")
        operators = self.store._engine.operators
        clause, params = _compile_filter(where or {}, self._target, operators)
        rows = (
            "t.updated_at <= ? AND t.valid_from <= ? AND t.valid_to > ? "
            f"AND (t.expires_at IS NULL OR t.expires_at > ?) AND {clause}"
        )
        source, source_params = self._known_source(known_at, rows=False)
        past, past_params = _compile_filter(where or {}, self._known_target, operators)
        versions = self.store._fetch(
            f"SELECT t.id FROM ({source}) AS t WHERE t.valid_from <= ? AND t.valid_to > ? "
            f"AND {past}",
            [*source_params, moment, moment, *past_params],
        )
        return rows, [known_at, moment, moment, known_at, *params], [r[0] for r in versions]

    def _known_records(
        self, ids: Iterable[int], extra: str = "NULL", extra_params: Sequence[Any] = ()
    ) -> dict[int, tuple[Any, ...]]:
        """By id from _known_ids: (key, body, updated_at, ``extra``), ``extra`` an SQL
        expression over ``t.body``; a replaced version was last updated when it began."""
        ids, engine = list(ids), self.store._engine
        rows = self.store._fetch(
            f"SELECT t.id, {self._key_sql}, t.body, t.updated_at, {extra} FROM {self._table} AS t "
            f"WHERE {engine.ids_in('t.id')} "
            f"UNION ALL SELECT -t.id, coalesce(t.fact_of, t.key), t.body, t.valid_from, {extra} "
            f"FROM memstore_versions AS t WHERE {engine.ids_in('t.id')}",
            [
                *extra_params,
                engine.ids([i for i in ids if i > 0]),
                *extra_params,
                engine.ids([-i for i in ids if i < 0]),
            ],
        )
        return {row[0]: tuple(row[1:]) for row in rows}

    def _known_matches(
        self,
        text: str,
        known: tuple[str, list[Any], list[int]],
        n: int,
        highlight: tuple[str, str] = ("[", "]"),
        snippet_tokens: int = 12,
    ) -> list[tuple[int, str, str, float, str]]:
        """(id, key, body, rank, snippet) of the ``n`` best full-text matches among what was
        known (_known_parts), best first, as the store's engine finds them."""
        found: list[tuple[int, str, str, float, str]] = self.store._engine.known_matches(
            self, text, known, n, (highlight, snippet_tokens)
        )
        return found

    def _fts5_known_matches(
        self,
        text: str,
        known: tuple[str, list[Any], list[int]],
        n: int,
        highlight: tuple[str, str] = ("[", "]"),
        snippet_tokens: int = 12,
    ) -> list[tuple[int, str, str, float, str]]:
        """_known_matches on SQLite: rows through the collection's index; replaced versions
        through an index of their text made for the query in the connection's temporary
        schema (never in the file), both ranked alike (see search)."""
        fts, key, (clause, params, ids) = self._fts_table, self._key_sql, known
        past = [-i for i in ids]
        snippet = "snippet({}, -1, ?, ?, '…', ?)"
        current = [text, *params, n, 0]
        if not past:
            return _search(
                self.store,
                _match_sql(
                    fts,
                    self._table,
                    "t",
                    f"t.id, {key}, t.body, {fts}.rank, {snippet.format(fts)}",
                    clause,
                ),
                [*highlight, snippet_tokens, *current],
                text,
            )
        # Replaced versions are indexed for the query; both indexes are ranked by bm25 over
        # the statistics of the two together, so that their ranks compare.
        temp = quote_identifier("_memstore_known_text")
        columns = ", ".join(quote_identifier(field_column(p)) for p in self.fts)
        values = ", ".join(f"json_extract(v.body, {_literal('$.' + p)})" for p in self.fts)
        self.store._fetch(f"DROP TABLE IF EXISTS temp.{temp}")
        self.store._fetch(
            f"CREATE VIRTUAL TABLE temp.{temp} USING fts5({columns}, "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        try:
            self.store._fetch(
                f"INSERT INTO temp.{temp} (rowid, {columns}) SELECT v.id, {values} "
                "FROM memstore_versions AS v WHERE v.id IN (SELECT value FROM json_each(?))",
                (json.dumps(past),),
            )
            statistics = _fts_statistics(self.store, [fts, f"temp.{temp}"], text)
            ranked = f"t.id, {key}, t.body, _memstore_bm25({fts}, ?) AS score, {snippet}"
            rows = _search(
                self.store,
                _match_sql(
                    fts,
                    self._table,
                    "t",
                    ranked.format(fts),
                    clause,
                    order="score, t.id",  # ties as the merge below orders them
                ),
                [statistics, *highlight, snippet_tokens, *current],
                text,
            )
            ranked = (
                f"-t.id, coalesce(t.fact_of, t.key), t.body, _memstore_bm25({temp}, ?) AS score, "
                + snippet.format(temp)
            )
            rows += _search(
                self.store,
                _match_sql(
                    f"temp.{temp}", "memstore_versions", "t", ranked, order="score, t.id DESC"
                ),
                [statistics, *highlight, snippet_tokens, text, n, 0],
                text,
            )
        finally:
            self.store._fetch(f"DROP TABLE IF EXISTS temp.{temp}")
        rows.sort(key=lambda row: (row[3], row[0]))
        return rows[:n]

    def _known_target(self, field: str) -> _Target:
        """_target for reads of what was known: every field from the JSON body."""
        _check_field(field)
        if field in META_COLUMNS or field in _VALIDITY_COLUMNS:
            return _Target(f"t.{field}", (), None)
        return self.store._engine.json_target(_json_path(field))

    def _target(self, field: str) -> _Target:
        _check_field(field)
        if field in META_COLUMNS or (self.temporal and field in _VALIDITY_COLUMNS):
            if field == "key" and self.temporal:
                return _Target(self._key_sql, (), None)
            return _Target(f"t.{field}", (), None)
        path = _json_path(field)
        if field in self.fields:
            column = f"t.{quote_identifier(field_column(field))}"
            return _Target(column, (), path, self.fields[field])
        return self.store._engine.json_target(path)

    def _filter(
        self,
        where: Mapping[str, Any] | None,
        *,
        include_expired: bool = False,
        as_of: Any = _MISSING,
        include_forgotten: bool = False,
    ) -> tuple[str, list[Any]]:
        """The SQL condition for ``where``, plus "not expired" unless told otherwise, plus
        in a temporal collection "valid at ``as_of``" (now by default; None: at any time),
        plus with hygiene "not forgotten" (unless ``include_forgotten``)."""
        clause, params = _compile_filter(where or {}, self._target, self.store._engine.operators)
        if self.hygiene is not None and not include_forgotten:  # forgotten: hidden from reads
            clause = f"t.forgotten_at IS NULL AND {clause}"
        if self.temporal and as_of is not None:
            moment = _iso(_utcnow()) if as_of is _MISSING else _moment(as_of, "as_of")
            clause = f"t.valid_from <= ? AND t.valid_to > ? AND {clause}"
            params = [moment, moment, *params]
        elif as_of is not _MISSING and as_of is not None:
            raise QueryError(
                f"as_of needs a temporal collection: declare {self.name!r} with temporal=True"
            )
        if include_expired:
            return clause, params
        return f"(t.expires_at IS NULL OR t.expires_at > ?) AND {clause}", [
            _iso(_utcnow()),
            *params,
        ]

    def _filter_probed(
        self, where: Mapping[str, Any] | None, as_of: Any = _MISSING
    ) -> tuple[str, list[Any]]:
        """_filter for a statement that visits many rows: when no record has an expiry (one
        probe of the partial index), the "not expired" test is left out instead of being
        evaluated per row. Run it in the statement's transaction, for one snapshot."""
        if not self.store._engine.probes_expiry:
            return self._filter(where, as_of=as_of)
        expiring = self.store._fetch(
            f"SELECT 1 FROM {self._table} WHERE expires_at IS NOT NULL LIMIT 1"
        )
        return self._filter(where, include_expired=not expiring, as_of=as_of)

    def _select(
        self,
        columns: str,
        where: Mapping[str, Any] | None,
        order_by: str | Sequence[str] | None,
        limit: int | None,
        offset: int,
        as_of: Any = _MISSING,
        known_at: str | None = None,
    ) -> tuple[str, list[Any]]:
        if known_at is None:
            clause, params = self._filter(where, as_of=as_of)
            sql = f"SELECT {columns} FROM {self._table} AS t WHERE {clause}"
            target = self._target
        else:  # what the store held at known_at: its rows then, and the versions since replaced
            moment = known_at if as_of is _MISSING else _moment(as_of, "as_of")
            source, params = self._known_source(known_at)
            operators = self.store._engine.operators
            clause, extra = _compile_filter(where or {}, self._known_target, operators)
            sql = (
                f"SELECT {columns} FROM ({source}) AS t WHERE t.valid_from <= ? "
                f"AND t.valid_to > ? AND (t.expires_at IS NULL OR t.expires_at > ?) AND {clause}"
            )
            params += [moment, moment, known_at, *extra]
            target = self._known_target
        orders = _names(order_by, "order_by")
        engine = self.store._engine
        terms = []
        for order in orders:
            descending = isinstance(order, str) and order.startswith("-")
            term, extra = engine.order(target(order[1:] if descending else order), descending)
            terms.append(term)
            params += extra
        if terms:  # without order_by, any order: the planner is free to use the best index
            # Ties go in insertion order, reversed along with a descending first term.
            first = orders[0]
            terms.append("t.id DESC" if isinstance(first, str) and first[:1] == "-" else "t.id")
            sql += " ORDER BY " + ", ".join(terms)
        if limit is not None or offset:
            if limit is not None:
                _check_count(limit, "limit")
            _check_count(offset, "offset")
            sql += " LIMIT ? OFFSET ?"
            params += [engine.no_limit if limit is None else limit, offset]
        return sql, params


# --------------------------------------------------------------------------
# Full-text search: one query shape, one runner, for every FTS5 index memstore
# keeps (collections, event logs, messages)
# --------------------------------------------------------------------------


def _match_sql(
    fts: str,
    table: str,
    alias: str,
    columns: str,
    clause: str = "1",
    order: str | None = None,
    joins: str = "",
) -> str:
    """The one shape of memstore's full-text queries: the FTS5 index joined to its rows
    (and to what ``joins`` adds), ``clause`` applied, best first (by ``order``, FTS5's
    rank by default). Binds, in order: the select list's parameters (in ``columns``),
    the MATCH text, the clause's, then LIMIT and OFFSET."""
    name = fts.rpartition(".")[2]  # a MATCH names the table, not its schema
    return (
        f"SELECT {columns} FROM {fts} JOIN {table} AS {alias} ON {alias}.id = {fts}.rowid "
        f"{joins} WHERE {name} MATCH ? AND {clause} "
        f"ORDER BY {order or name + '.rank'} LIMIT ? OFFSET ?"
    )


def _fts_statistics(store: Store, indexes: Sequence[str], text: str) -> str:
    """What bm25 weighs words by, summed over several FTS5 indexes of the same columns as
    if they were one (for _memstore_bm25): JSON of their rows, tokens, and rows holding
    each phrase of ``text``."""
    rows = tokens = 0
    hits: list[int] = []
    for fts in indexes:
        name = fts.rpartition(".")[2]
        found = _search(
            store,
            f"SELECT _memstore_fts_stats({name}) FROM {fts} WHERE {name} MATCH ? LIMIT 1",
            [text],
            text,
        ) or store._fetch(f"SELECT _memstore_fts_stats({name}) FROM {fts} LIMIT 1")
        if found:
            each = json.loads(found[0][0])
            rows, tokens = rows + each["rows"], tokens + each["tokens"]
            hits = [a + b for a, b in zip_longest(hits, each["hits"], fillvalue=0)]
    return json.dumps({"rows": rows, "tokens": tokens, "hits": hits})


def _fts_stats_function(api: apsw.FTS5ExtensionApi, *args: Any) -> str:
    """_memstore_fts_stats(fts): the index's row and token counts, and how many rows hold
    each phrase of the query (as FTS5's bm25 counts them), as JSON."""
    if api.aux_data is None:
        hits = []
        for phrase in range(api.phrase_count):
            rowids: list[int] = []
            api.query_phrase(phrase, lambda found, into: into.append(found.rowid), rowids)
            hits.append(len(rowids))
        api.aux_data = json.dumps(
            {"rows": api.row_count, "tokens": api.column_total_size(-1), "hits": hits}
        )
    return str(api.aux_data)


def _bm25_function(api: apsw.FTS5ExtensionApi, statistics: Any = None, *args: Any) -> float:
    """_memstore_bm25(fts, statistics): FTS5's bm25 (k1 1.2, b 0.75, every column weighing
    1), with the statistics of _fts_statistics instead of the index's own."""
    if api.aux_data is None:
        given = json.loads(statistics)
        rows = max(1, given["rows"])
        idf = [max(1e-6, math.log((rows - hit + 0.5) / (hit + 0.5))) for hit in given["hits"]]
        api.aux_data = (given["tokens"] / rows or 1.0, idf)
    average, idf = api.aux_data
    length, score = api.column_size(-1), 0.0
    for phrase, weight in enumerate(idf[: api.phrase_count]):
        count = sum(len(offsets) for offsets in api.phrase_locations(phrase))
        score += weight * count * 2.2 / (count + 1.2 * (0.25 + 0.75 * length / average))
    return -score


#: FTS5's operator words: left out of a query built from plain words.
_FTS_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})


def fts_words(text: str, *, every: bool = False) -> str:
    """Plain language as a safe FTS5 query: its words, each quoted, any of them (or
    with ``every=True``, all of them); "" when it has none.

    >>> fts_words('ramen AND "noodles')
    '"ramen" OR "noodles"'

    FTS5's operators (AND, OR, NOT, NEAR) are left out, and so is every
    other character that is not part of a word, so the result always
    parses: what to search with when a query typed by a person does not
    (``Collection.search`` raises QueryError on FTS5 syntax). At most 64
    words are kept; a text over MAX_SEARCH_LENGTH characters is a QueryError.
    """
    if not isinstance(text, str):
        raise QueryError(f"the search text must be a string, not {type(text).__name__}")
    if len(text) > MAX_SEARCH_LENGTH:
        raise QueryError(f"a search is {MAX_SEARCH_LENGTH} characters at most, not {len(text):,}")
    words = [w for w in re.findall(r"\w+", text) if w not in _FTS_OPERATORS][:64]
    return (" " if every else " OR ").join(f'"{word}"' for word in words)


def _search(store: Store, sql: str, params: Sequence[Any], text: str) -> list[Any]:
    """Run a full-text search for at most ``store.query_timeout`` seconds; FTS5's syntax
    errors, and a query that runs out of time, become QueryError."""
    deadline = time.monotonic() + store.query_timeout
    with store._lock:
        conn = store.connection
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 20_000)
        try:
            return store._fetch(sql, params)
        except MemstoreError as err:
            cause = err.__cause__
            if isinstance(cause, apsw.InterruptError):
                raise QueryError(
                    f"the search for {text!r:.80} took longer than {store.query_timeout:g} s; "
                    "use fewer terms (or Store(query_timeout=...))"
                ) from cause
            # The rest of the statement is memstore's own, so an SQL error is the query's.
            if isinstance(cause, apsw.SQLError):
                raise QueryError(f"cannot search for {text!r:.80}: {cause}") from cause
            raise
        finally:
            conn.set_progress_handler(None)


#: The memory layers' FTS5 indexes, by the table they index (SQLite).
_LAYER_FTS_OF = {
    "memstore_events": "memstore_events_fts",
    "memstore_messages": "memstore_messages_fts",
    "memstore_graph_text": "memstore_graph_fts",
}
_LAYER_FTS = tuple(_LAYER_FTS_OF.values())


def _fts_problems(store: Store, fts: str) -> list[str]:
    """An external-content FTS5 index checked against its rows: [] when in step."""
    if fts == "memstore_messages_fts" and not store._fetch(
        "SELECT 1 FROM memstore_fts_progress WHERE fts = ?", (fts,)
    ):
        return [f"{fts}: memstore_fts_progress has lost its row, so no new message is indexed"]
    try:
        store._fetch(f"INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)")
    except BusyError:  # the check is a write to FTS5: another writer holds the file
        return [f"{fts}: not checked, another writer held the file; check again later"]
    except MemstoreError as err:
        return [f"{fts}: full-text index out of step with the rows ({err})"]
    return []


def _check_match(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise QueryError("the search text must be a non-empty string")
    if len(text) > MAX_SEARCH_LENGTH:
        raise QueryError(f"a search is {MAX_SEARCH_LENGTH} characters at most, not {len(text):,}")
    return text


# --------------------------------------------------------------------------
# Agent memory, part 1: event logs and conversations (sql/0002, sql/0003)
# --------------------------------------------------------------------------


class Event(NamedTuple):
    """One event of an EventLog, as ``read()`` returns it."""

    seq: int
    id: str
    kind: str
    at: str
    payload: Any
    recorded_at: str


_EVENT_COLUMNS = "seq, event_id, kind, at, payload, recorded_at"
_EVENT_FIELDS = frozenset({"id", "kind", "payload", "at"})


def _event(row: Any) -> Event:
    seq, event_id, kind, at, payload, recorded_at = row
    return Event(seq, event_id, kind, at, json.loads(payload), recorded_at)


class EventLog:
    """An append-only, ordered log of events; get one from ``Store.event_log``.

    >>> log = store.event_log("agent-1")
    >>> seq = log.append({"id": "e1", "kind": "tool_call", "payload": {"tool": "search"}})
    >>> state = log.replay(lambda state, event: state + 1, 0)

    Each event gets a sequence number: gap-free and strictly increasing per
    log, in commit order. Events are immutable; only retention removes them.
    """

    def __init__(self, store: Store, name: str) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_KEY_LENGTH:
            raise ValidationError(f"a log name must be a non-empty string, not {name!r}")
        self.store = store
        self.name = name

    def __repr__(self) -> str:
        return f"<memstore.EventLog {self.name!r}>"

    def append(self, event: Mapping[str, Any]) -> int:
        """Append an event and return its sequence number.

        ``event`` has a ``kind`` (a string) and may have an ``id`` (a string;
        a ULID is made if absent), a ``payload`` (any JSON value) and an
        ``at`` (ISO-8601 text or an aware datetime; now if absent).
        Appending an id that is already in the log with the same content
        returns its sequence number (so a retry after a crash is safe); with
        different content it raises ConflictError.
        """
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append several events in one transaction; return their sequence numbers."""
        checked = [_check_event(event) for event in _items(events, "events")]
        seqs = []
        with self.store._transaction():
            for event_id, kind, at, payload, at_given in checked:
                seqs.append(self._append(event_id, kind, at, payload, at_given))
        return seqs

    def _append(self, event_id: str, kind: str, at: str, payload: str, at_given: bool) -> int:
        fetch = self.store._fetch
        # The next number first: its row, locked until commit, makes every other appender
        # to this log wait (PostgreSQL has no file lock), so the id lookup below is exact.
        seq = fetch(
            "INSERT INTO memstore_logs (name, last_seq) VALUES (?, 1) ON CONFLICT (name) "
            "DO UPDATE SET last_seq = memstore_logs.last_seq + 1 RETURNING last_seq",
            (self.name,),
        )[0][0]
        existing = fetch(
            "SELECT seq, kind, at, payload FROM memstore_events WHERE log = ? AND event_id = ?",
            (self.name, event_id),
        )
        if existing:
            fetch(  # the number goes back: nobody else could take one meanwhile
                "UPDATE memstore_logs SET last_seq = last_seq - 1 WHERE name = ?", (self.name,)
            )
            old_seq, old_kind, old_at, old_payload = existing[0]
            same = (
                old_kind == kind
                and json.loads(old_payload) == json.loads(payload)
                and (not at_given or old_at == at)
            )
            if same:
                return int(old_seq)
            raise ConflictError(
                f"event {event_id!r} is already in log {self.name!r} (seq {old_seq}) "
                "with different content; events are immutable"
            )
        fetch(
            "INSERT INTO memstore_events (log, seq, event_id, kind, at, payload, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.name, seq, event_id, kind, at, payload, _iso(_utcnow())),
        )
        return int(seq)

    def last_seq(self) -> int:
        """The sequence number of the last event appended (0 for a new log)."""
        rows = self.store._fetch("SELECT last_seq FROM memstore_logs WHERE name = ?", (self.name,))
        return int(rows[0][0]) if rows else 0

    def get(self, event_id: str) -> Event:
        """The event with this id; NotFoundError if there is none."""
        rows = self.store._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM memstore_events WHERE log = ? AND event_id = ?",
            (self.name, event_id),
        )
        if not rows:
            raise NotFoundError(f"no event {event_id!r} in log {self.name!r}")
        return _event(rows[0])

    def read(
        self,
        since: int = 0,
        *,
        until: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events after sequence number ``since`` (up to ``until``), oldest first."""
        return list(self.stream(since, until=until, kinds=kinds, limit=limit))

    def stream(
        self,
        since: int = 0,
        *,
        until: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Like ``read()``, yielding events as they are read, for long logs."""
        _check_count(since, "since")
        sql = f"SELECT {_EVENT_COLUMNS} FROM memstore_events WHERE log = ? AND seq > ?"
        params: list[Any] = [self.name, since]
        if until is not None:
            _check_count(until, "until")
            sql += " AND seq <= ?"
            params.append(until)
        if kinds is not None:
            sql += f" AND {self.store._engine.ids_in('kind')}"
            params.append(self.store._engine.ids(_strings(kinds, "kinds")))
        sql += " ORDER BY seq"
        if limit is not None:
            _check_count(limit, "limit")
            sql += " LIMIT ?"
            params.append(limit)
        return self.store._stream(sql, params, _event)

    def tail(self, n: int = 10) -> list[Event]:
        """The last ``n`` events, oldest first."""
        _check_count(n, "n")
        rows = self.store._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM memstore_events WHERE log = ? ORDER BY seq DESC LIMIT ?",
            (self.name, n),
        )
        return [_event(row) for row in reversed(rows)]

    def __len__(self) -> int:
        rows = self.store._fetch("SELECT count(*) FROM memstore_events WHERE log = ?", (self.name,))
        return int(rows[0][0])

    def replay(
        self,
        reducer: Callable[[Any, Event], Any],
        initial: Any = None,
        *,
        until: int | None = None,
        use_snapshots: bool = True,
    ) -> Any:
        """Fold the events (up to ``until``) into a state: ``state = reducer(state, event)``.

        Starts from the latest snapshot at or before ``until`` when there is
        one (its state is JSON, as ``snapshot()`` stored it), else from
        ``initial``. Raises MemstoreError if retention removed events the
        replay needs.
        """
        if until is not None:
            _check_count(until, "until")
        last = self.last_seq()
        until = last if until is None else min(until, last)
        start, state = 0, initial
        if use_snapshots:
            snapshot = self.store._fetch(
                "SELECT seq, state FROM memstore_event_snapshots WHERE log = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT 1",
                (self.name, until),
            )
            if snapshot:
                start, state = snapshot[0][0], json.loads(snapshot[0][1])
        expected = start + 1
        for event in self.stream(start, until=until):
            if event.seq != expected:
                break
            state = reducer(state, event)
            expected += 1
        if expected != until + 1:
            raise MemstoreError(
                f"events from seq {expected} of log {self.name!r} were removed by retention; "
                "replay from a snapshot taken after them"
            )
        return state

    def snapshot(self, state: Any, seq: int | None = None) -> int:
        """Store a state (JSON) as of ``seq`` (default: the last event), so replays start there."""
        last = self.last_seq()
        seq = last if seq is None else seq
        _check_count(seq, "seq")
        if seq > last:
            raise ValidationError(f"seq {seq} is past the end of log {self.name!r} ({last})")
        body = _dumps(state)
        with self.store._transaction():
            self.store._fetch(
                "INSERT INTO memstore_event_snapshots (log, seq, state) VALUES (?, ?, ?) "
                "ON CONFLICT (log, seq) DO UPDATE SET state = excluded.state, "
                f"created_at = {self.store._engine.now}",
                (self.name, seq, body),
            )
        return seq

    def search(
        self, text: str, *, kinds: Sequence[str] | None = None, limit: int = 20
    ) -> list[Hit]:
        """Full-text search over the events' kinds and payloads; each Hit's record is an Event."""
        _check_count(limit, "limit")
        engine = self.store._engine
        clause, params = "t.log = ?", [self.name]
        if kinds is not None:
            clause += f" AND {engine.ids_in('t.kind')}"
            params.append(engine.ids(_strings(kinds, "kinds")))
        columns = f"t.event_id, {', '.join('t.' + c for c in _EVENT_COLUMNS.split(', '))}"
        text = _check_match(text)
        rows = engine.layer_search(
            self.store, "memstore_events", columns, (clause, params), text, limit
        )
        return [Hit(row[0], _event(row[1:7]), row[7], row[8], -row[7]) for row in rows]

    def cleanup(
        self,
        *,
        older_than: timedelta | float | str | None = None,
        keep_last: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> int:
        """Remove events older than ``older_than`` (by their ``at``) and not among the
        ``keep_last`` newest (either alone works too); return how many. Sequence
        numbers are never reused.
        Take a snapshot first if you will want to replay past the removed events.
        """
        conditions: list[str] = []
        params: list[Any] = []
        if older_than is not None:
            cutoff = _utcnow() - timedelta(seconds=_seconds(older_than, "older_than"))
            conditions.append("at < ?")
            params.append(_iso(cutoff))
        if keep_last is not None:
            _check_count(keep_last, "keep_last")
            conditions.append("seq <= ?")
            params.append(self.last_seq() - keep_last)
        if not conditions:
            return 0
        where = f"log = ? AND ({' AND '.join(conditions)})"
        return _delete_batches(
            self.store, "memstore_events", where, [self.name, *params], batch_size
        )


def _check_event(event: Mapping[str, Any]) -> tuple[str, str, str, str, bool]:
    if not isinstance(event, Mapping):
        raise ValidationError(f"an event must be a dict, not {type(event).__name__}")
    unknown = set(event) - _EVENT_FIELDS
    if unknown:
        raise ValidationError(
            f"unknown event fields {sorted(map(repr, unknown))}; use id, kind, payload, at"
        )
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"an event needs a kind (a non-empty string), not {kind!r}")
    event_id = _check_key(event["id"]) if "id" in event else _new_key()
    at = event.get("at")
    at_given = at is not None
    return event_id, kind, _timestamp(at), _dumps(event.get("payload")), at_given


class Thread(NamedTuple):
    """A conversation thread (or a branch of one)."""

    id: str
    title: str | None
    user_id: str | None
    agent_id: str | None
    tags: list[str]
    metadata: dict[str, Any]
    created_at: str
    last_message_at: str | None
    message_count: int
    parent_id: str | None
    branch_point: int | None
    status: str
    status_reason: str | None
    merged_into: str | None
    status_at: str | None


class Message(NamedTuple):
    """A message with its token usage. ``content`` is text, or JSON data if it was given so."""

    thread_id: str
    position: int
    role: str
    content: Any
    name: str | None
    tool_calls: Any
    metadata: dict[str, Any]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    model: str | None
    cost: float
    created_at: str
    merged_from: int | None


_THREAD_COLUMNS = (
    "id, title, user_id, agent_id, tags, metadata, created_at, last_message_at, message_count, "
    "parent_id, branch_point, status, status_reason, merged_into, status_at"
)


def _message_columns(alias: str) -> str:
    """A message's columns, as _message reads them, of ``memstore_messages AS alias``."""
    return ", ".join(
        f"{alias}.{column}"
        for column in [
            "thread_id",
            "position",
            "role",
            "content",
            "content_type",
            "name",
            "tool_calls",
            "metadata",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "model",
            "cost",
            "created_at",
            "merged_from",
        ]
    )


_MESSAGE_COLUMNS = _message_columns("m")
#: Where an append goes: the thread's status, the last position of its history (its own
#: last message, or its branch point) and up to which message id the search index is
#: complete (sql/0008). The insert is then a plain one: an INSERT ... SELECT reading its
#: own table, or one with RETURNING, fills a temporary table for every row it writes.
_LAST_POSITION_SQL = (
    "SELECT t.status, max(coalesce(t.branch_point, 0), coalesce("
    "(SELECT max(position) FROM memstore_messages WHERE thread_id = t.id), 0)), "
    "(SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts') "
    "FROM memstore_threads AS t WHERE t.id = ?"
)
_Engine.last_position_sql = _LAST_POSITION_SQL
_INSERT_MESSAGE_SQL = (
    "INSERT INTO memstore_messages (thread_id, position, role, content, content_type, name, "
    "tool_calls, metadata, input_tokens, output_tokens, total_tokens, model, cost, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ROLES = ("system", "user", "assistant", "tool")
_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "prompt_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "completion_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "model": "model",
    "cost": "cost",
}
_THREAD_ORDER = ("created_at", "last_message_at", "message_count", "title", "id")

#: The ranges of messages making up a thread's history, as (thread id, first
#: position, last position) rows: its own messages and, for a branch, each
#: ancestor's up to the branch point. One parameter, the thread id; stock
#: SQLite 3.40 (the Datasette plugin runs it too) and PostgreSQL alike.
HISTORY_RANGES_SQL = """WITH RECURSIVE chain(id, parent_id, point, last) AS (
    SELECT id, parent_id, branch_point, 4611686018427387904 FROM memstore_threads WHERE id = ?
    UNION ALL
    SELECT t.id, t.parent_id, t.branch_point,
           CASE WHEN chain.point < chain.last THEN chain.point ELSE chain.last END
    FROM memstore_threads AS t JOIN chain ON t.id = chain.parent_id
)
SELECT id, coalesce(point, 0) + 1, last FROM chain"""


def history_clause(ranges: Sequence[Sequence[Any]], alias: str = "m") -> tuple[str, list[Any]]:
    """The WHERE clause (on ``memstore_messages AS m``, or another ``alias``) for
    HISTORY_RANGES_SQL's rows."""
    one = f"({alias}.thread_id = ? AND {alias}.position BETWEEN ? AND ?)"
    clause = " OR ".join(one for _ in ranges)
    return f"({clause})", [value for r in ranges for value in r]


def _thread(row: Any) -> Thread:
    values = list(row)
    values[4], values[5] = json.loads(values[4]), json.loads(values[5])
    return Thread(*values)


def _message(row: Any) -> Message:
    thread_id, position, role, content, content_type, name, tool_calls, metadata, *rest = row
    if content_type == "json":
        content = json.loads(content)
    return Message(
        thread_id,
        position,
        role,
        content,
        name,
        None if tool_calls is None else json.loads(tool_calls),
        {} if metadata == "{}" else json.loads(metadata),  # most messages have none
        *rest,
    )


class Conversations:
    """Chat threads, their messages and token usage, with branches; from ``Store.conversations``.

    >>> conv = store.conversations()
    >>> conv.create_thread("t1", user_id="u1", title="Trip planning")
    >>> conv.add_message("t1", "user", "Find me a train to Lyon")
    >>> conv.add_message("t1", "assistant", "The 9:04 ...",
    ...                  usage={"input_tokens": 812, "output_tokens": 96, "cost": 0.004})
    >>> conv.last_messages("t1", 20)
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- threads -----------------------------------------------------------

    def create_thread(
        self,
        thread_id: str | None = None,
        *,
        title: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a thread and return its id (a new ULID unless given)."""
        thread_id = _new_key() if thread_id is None else _check_key(thread_id)
        for label, value in (("title", title), ("user_id", user_id), ("agent_id", agent_id)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{label} must be a string, not {value!r}")
        params = (
            thread_id,
            title,
            user_id,
            agent_id,
            _dumps(_tags(tags)),
            _dumps(_mapping(metadata, "metadata")),
            _iso(_utcnow()),
        )
        with self.store._transaction():
            if self.store._fetch("SELECT 1 FROM memstore_threads WHERE id = ?", (thread_id,)):
                raise ConflictError(f"thread {thread_id!r} already exists")
            self.store._fetch(
                "INSERT INTO memstore_threads "
                "(id, title, user_id, agent_id, tags, metadata, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        return thread_id

    def thread(self, thread_id: str) -> Thread:
        """The thread; NotFoundError if there is none."""
        rows = self.store._fetch(
            f"SELECT {_THREAD_COLUMNS} FROM memstore_threads WHERE id = ?", (thread_id,)
        )
        if not rows:
            raise NotFoundError(f"no thread {thread_id!r}")
        return _thread(rows[0])

    def threads(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        min_messages: int | None = None,
        status: str | None = None,
        order_by: str = "-last_message_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Thread]:
        """Threads matching every filter given; ``tags`` means all of them.

        ``order_by`` is one of created_at, last_message_at, message_count,
        title, id, with ``-`` first for descending.
        """
        conditions: list[str] = ["TRUE"]
        params: list[Any] = []
        for column, value in (("user_id", user_id), ("agent_id", agent_id), ("status", status)):
            if value is not None:
                if not isinstance(value, str):
                    raise ValidationError(f"{column} must be a string, not {value!r}")
                conditions.append(f"{column} = ?")
                params.append(value)
        if tags:
            conditions.append(self.store._engine.holds_all("tags"))
            params.append(_dumps(_tags(tags)))
        if created_after is not None:
            conditions.append("created_at > ?")
            params.append(_timestamp(created_after))
        if min_messages is not None:
            _check_count(min_messages, "min_messages")
            conditions.append("message_count >= ?")
            params.append(min_messages)
        column = order_by.lstrip("-") if isinstance(order_by, str) else None
        if column not in _THREAD_ORDER:
            raise QueryError(f"order_by must be one of {_THREAD_ORDER}, '-' first for descending")
        # NULLs (a thread with no message yet) first, then the rest: SQLite's order, which
        # spelled out costs it nothing.
        direction = " DESC NULLS LAST" if order_by.startswith("-") else " NULLS FIRST"
        _check_count(offset, "offset")
        sql = (
            f"SELECT {_THREAD_COLUMNS} FROM memstore_threads WHERE {' AND '.join(conditions)} "
            f"ORDER BY {column}{direction}, id{direction} LIMIT ? OFFSET ?"
        )
        if limit is not None:
            _check_count(limit, "limit")
        params += [self.store._engine.no_limit if limit is None else limit, offset]
        return [_thread(row) for row in self.store._fetch(sql, params)]

    def delete_thread(self, thread_id: str, *, branches: bool = False) -> int:
        """Delete a thread with its messages and usage; return how many threads went.

        A thread with branches (which share its messages) is refused with
        ConflictError unless ``branches=True``, which deletes them too.
        """
        with self.store._transaction():
            self.thread(thread_id)
            family = self._descendants(thread_id)
            if family and not branches:
                raise ConflictError(
                    f"thread {thread_id!r} has branches {family}; delete with branches=True"
                )
            for doomed in [*reversed(family), thread_id]:
                self.store._fetch("DELETE FROM memstore_threads WHERE id = ?", (doomed,))
            self.store._added_messages = True  # their messages' leaving the index waits
        return len(family) + 1

    # -- messages ----------------------------------------------------------

    def add_message(
        self,
        thread_id: str,
        role: str,
        content: Any,
        *,
        name: str | None = None,
        tool_calls: Any = None,
        metadata: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> int:
        """Add a message, updating its thread in the same transaction; return its position.

        ``content`` is text or JSON data (or None). ``usage`` takes
        input_tokens, output_tokens, total_tokens (input + output by
        default), model and cost; prompt_tokens and completion_tokens are
        accepted as OpenAI names them.
        """
        row = _message_row(role, content, name, tool_calls, metadata, usage)
        return self._append(thread_id, [row])[0]

    def add_messages(
        self, thread_id: str, messages: Iterable[Mapping[str, Any]], *, create: bool = False
    ) -> list[int]:
        """Add several messages at once, all or none; return their positions.

        >>> conv.add_messages("t1", [
        ...     {"role": "user", "content": "Find me a train to Lyon"},
        ...     {"role": "assistant", "content": "The 9:04 ...", "usage": {"input_tokens": 812}},
        ... ])
        [1, 2]

        Each message is a dict of ``add_message``'s arguments: ``role`` and
        ``content``, and optionally ``name``, ``tool_calls``, ``metadata``,
        ``usage``. Cheaper than one ``add_message`` per message: one
        transaction and one prepared statement for them all. ``create=True``
        starts the thread first if there is none (a chat session's first turn).
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
            raise ValidationError(f"messages must be a list of dicts, not {messages!r}")
        rows = []
        for message in messages:
            if not isinstance(message, Mapping):
                raise ValidationError(f"a message is a dict, not {type(message).__name__}")
            unknown = set(message) - _MESSAGE_KEYS
            if unknown or "role" not in message:
                raise ValidationError(
                    f"a message takes {sorted(_MESSAGE_KEYS)} with a role; "
                    f"got {sorted(map(repr, message))}"
                )
            rows.append(
                _message_row(
                    message["role"],
                    message.get("content"),
                    message.get("name"),
                    message.get("tool_calls"),
                    message.get("metadata"),
                    message.get("usage"),
                )
            )
        return self._append(thread_id, rows, create) if rows else []

    def _append(
        self, thread_id: str, rows: list[tuple[Any, ...]], create: bool = False
    ) -> list[int]:
        """Insert checked message rows at the end of an active thread's history."""
        now = _iso(_utcnow())
        with self.store._transaction():
            try:
                first, indexed_to = self._next_position(thread_id)
            except NotFoundError:
                if not create:
                    raise
                self.create_thread(thread_id)
                first, indexed_to = self._next_position(thread_id)
            positions = range(first, first + len(rows))
            self.store._run_many(
                _INSERT_MESSAGE_SQL,
                [(thread_id, at, *row, now) for at, row in zip(positions, rows, strict=True)],
            )
            if (
                indexed_to is not None  # SQLite's: messages wait for its index in batches
                and self.store.connection.last_insert_rowid() - indexed_to >= INDEX_MESSAGES_EVERY
            ):
                _index_pending_messages(self.store)
        self.store._added_messages = True
        # The thread's count and last message time: the trigger memstore_messages__count_insert.
        return list(positions)

    def messages(
        self,
        thread_id: str,
        *,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """A thread's history in order, a branch's shared messages included.

        ``before``/``after`` bound the positions. With ``limit``, the last
        ``limit`` messages (the first, when ``after`` is given).
        """
        clause, params = self._history_clause(thread_id)
        for bound, op in ((before, "<"), (after, ">")):
            if bound is not None:
                _check_count(bound, "position")
                clause += f" AND m.position {op} ?"
                params.append(bound)
        newest_first = limit is not None and after is None
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM memstore_messages AS m WHERE {clause} "
            f"ORDER BY m.position{' DESC' if newest_first else ''}"
        )
        if limit is not None:
            _check_count(limit, "limit")
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.store._fetch(sql, params)
        return [_message(row) for row in (reversed(rows) if newest_first else rows)]

    def last_messages(self, thread_id: str, n: int) -> list[Message]:
        """The last ``n`` messages of a thread, oldest first: the context window."""
        return self.messages(thread_id, limit=n)

    def trim(self, thread_id: str, *, keep_last: int) -> int:
        """Delete all but the last ``keep_last`` of a thread's own messages; return how many.

        Branches sharing trimmed messages lose them from their history too.
        """
        _check_count(keep_last, "keep_last")
        with self.store._transaction():
            self._hold_thread(thread_id)
            self.thread(thread_id)
            doomed = self.store._fetch(
                "DELETE FROM memstore_messages WHERE thread_id = ? AND position <= "
                "(SELECT max(position) FROM memstore_messages WHERE thread_id = ?) - ? "
                "RETURNING id",
                (thread_id, thread_id, keep_last),
            )
            self.store._added_messages = True  # their leaving the index waits (sql/0013)
            for family_member in [thread_id, *self._descendants(thread_id)]:
                self._recount(family_member)
        return len(doomed)

    def pop_message(self, thread_id: str) -> Message | None:
        """Delete and return the thread's last own message; None when it has none.

        Undo for the last message (a branch's shared history is its parent's,
        and stays). Branches sharing the message lose it from their history too.
        """
        with self.store._transaction():
            self._hold_thread(thread_id)
            # Plain statements: as one DELETE ... RETURNING with a subquery on its own table
            # and an UPDATE ... RETURNING, a pop cost half again as many instructions.
            rows = self.store._fetch(
                f"SELECT {_MESSAGE_COLUMNS}, m.id FROM memstore_messages AS m "
                "WHERE m.thread_id = ? ORDER BY m.position DESC LIMIT 1",
                (thread_id,),
            )
            if not rows:
                self.thread(thread_id)  # NotFoundError if there is no such thread
                return None
            self.store._fetch("DELETE FROM memstore_messages WHERE id = ?", (rows[0][-1],))
            self.store._added_messages = True  # its leaving the index waits (sql/0013)
            # Branches that shared it now branch off before it: a message added later at
            # the same position is the parent's alone. The thread's own count is the delete
            # trigger's (sql/0007); a branch's counts its shared history too, so the branches
            # that shared it, and theirs, are counted again.
            before = rows[0][1] - 1
            sharing = self.store._fetch(
                "SELECT id FROM memstore_threads WHERE parent_id = ? AND branch_point > ?",
                (thread_id, before),
            )
            for (child,) in sharing:
                self.store._fetch(
                    "UPDATE memstore_threads SET branch_point = ? WHERE id = ?", (before, child)
                )
                for family_member in [child, *self._descendants(child)]:
                    self._recount(family_member)
        return _message(rows[0][:-1])

    def add_usage(
        self, thread_id: str, usage: Mapping[str, Any], *, position: int | None = None
    ) -> Message:
        """Add token usage to a message already stored; return the message.

        >>> conv.add_usage("t1", {"input_tokens": 812, "output_tokens": 96, "cost": 0.004})

        For usage that arrives after the answer (a streamed reply, a framework
        that reports it later). The message is the one at ``position`` in the
        thread's own messages, or else its last assistant message; its counts
        and cost grow by these, and ``model``, if given, replaces its model. A
        merge's copy carries no usage (it stays with the original), so it
        takes none: ConflictError.
        """
        tokens_in, tokens_out, total, model, cost = _check_usage(usage)
        if position is not None:
            _check_count(position, "position")
        with self.store._transaction():
            self.thread(thread_id)
            which = "position = ?" if position is not None else "role = 'assistant'"
            rows = self.store._fetch(
                f"SELECT id, merged_from FROM memstore_messages WHERE thread_id = ? AND {which} "
                "ORDER BY position DESC LIMIT 1",
                (thread_id, *([] if position is None else [position])),
            )
            if not rows:
                raise NotFoundError(
                    f"no message at position {position} in thread {thread_id!r}"
                    if position is not None
                    else f"thread {thread_id!r} has no assistant message to record usage on"
                )
            if rows[0][1] is not None:
                raise ConflictError("a merge's copy carries no usage: add it to the original")
            updated = self.store._fetch(
                "UPDATE memstore_messages SET input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, total_tokens = total_tokens + ?, "
                "cost = cost + ?, model = coalesce(?, model) WHERE id = ? "
                f"RETURNING {_MESSAGE_COLUMNS.replace('m.', '')}",
                (tokens_in, tokens_out, total, cost, model, rows[0][0]),
            )
        return _message(updated[0])

    def usage(self, thread_id: str | None = None) -> dict[str, Any]:
        """Token usage and cost: of one thread's own messages, or of the whole store.

        Returns messages, input_tokens, output_tokens, total_tokens, cost and
        ``by_model``: the same per model, messages with no model under ``None``
        (so that the models' entries add up to the totals). Messages a merge copied
        carry no usage (it stays with the branch's originals), so totals never count twice.
        """
        where, params = ("WHERE thread_id = ?", [thread_id]) if thread_id is not None else ("", [])
        if thread_id is not None:
            self.thread(thread_id)
        total = self.store._engine.total
        rows = self.store._fetch(
            f"SELECT model, count(*), {total}(input_tokens), {total}(output_tokens), "
            f"{total}(total_tokens), {total}(cost) FROM memstore_messages {where} "
            "GROUP BY model ORDER BY model NULLS FIRST",
            params,
        )
        keys = ("messages", "input_tokens", "output_tokens", "total_tokens", "cost")
        totals: dict[str, Any] = dict.fromkeys(keys, 0)
        by_model: dict[str | None, dict[str, Any]] = {}
        for model, *values in rows:
            entry = {
                k: (float(v) if k == "cost" else int(v)) for k, v in zip(keys, values, strict=True)
            }
            for k in keys:
                totals[k] += entry[k]
            by_model[model] = entry
        totals["by_model"] = by_model
        return totals

    def search(self, text: str, *, thread_id: str | None = None, limit: int = 20) -> list[Hit]:
        """Ranked full-text search over message content; each Hit's key is the thread id
        and its record the Message. With ``thread_id``, over that thread's history."""
        _check_count(limit, "limit")
        text = _check_match(text)
        where = ("TRUE", []) if thread_id is None else self._history_clause(thread_id, "t")
        _catch_up_messages(self.store)
        rows = self.store._engine.layer_search(
            self.store, "memstore_messages", _message_columns("t"), where, text, limit
        )
        return [Hit(row[0], _message(row[:15]), row[15], row[16], -row[15]) for row in rows]

    def cleanup(self, *, older_than: timedelta | float | str) -> int:
        """Delete threads with no message (or creation) newer than ``older_than``; return how many.

        A thread is kept while any of its branches is newer.
        """
        cutoff = _iso(_utcnow() - timedelta(seconds=_seconds(older_than, "older_than")))
        with self.store._transaction():
            old = {
                row[0]
                for row in self.store._fetch(
                    "SELECT id FROM memstore_threads "
                    "WHERE coalesce(last_message_at, created_at) < ?",
                    (cutoff,),
                )
            }
            doomed = [t for t in old if set(self._descendants(t)) <= old]
            for thread_id in sorted(doomed, key=lambda t: -len(self._ancestors(t))):
                self.store._fetch("DELETE FROM memstore_threads WHERE id = ?", (thread_id,))
            if doomed:
                self.store._added_messages = True  # their messages' leaving the index waits
        return len(doomed)

    # -- branches ----------------------------------------------------------

    def branch(
        self,
        thread_id: str,
        *,
        at: int | None = None,
        branch_id: str | None = None,
        title: str | None = None,
    ) -> str:
        """Start a branch sharing the thread's messages up to position ``at`` (default: all).

        Reading the branch returns that shared history and then its own
        messages; the parent is not copied.
        """
        with self.store._transaction():
            parent = self.thread(thread_id)
            _, last, _ = self._last_position(thread_id)
            at = last if at is None else at
            _check_count(at, "at")
            if at > last:
                raise ValidationError(f"thread {thread_id!r} has no message at position {at}")
            new_id = self.create_thread(
                branch_id,
                title=parent.title if title is None else title,
                user_id=parent.user_id,
                agent_id=parent.agent_id,
                tags=parent.tags,
                metadata=parent.metadata,
            )
            self.store._fetch(
                "UPDATE memstore_threads SET parent_id = ?, branch_point = ? WHERE id = ?",
                (thread_id, at, new_id),
            )
            self._recount(new_id)
        return new_id

    def merge(self, branch_id: str, *, into: str | None = None) -> list[int]:
        """Append a branch's own messages to ``into`` (default: its parent), in order.

        Records the merge and marks the branch merged; returns the new
        positions in ``into``. The copies point at the originals
        (``merged_from``) and carry no usage of their own.
        """
        with self.store._transaction():
            self._hold_thread(branch_id)  # one merge of it at a time, no append meanwhile
            branch = self.thread(branch_id)
            target = into if into is not None else branch.parent_id
            if target is None:
                raise ValidationError(f"thread {branch_id!r} is not a branch; say into=")
            if target == branch_id or target in self._descendants(branch_id):
                raise ValidationError(f"cannot merge {branch_id!r} into itself or its own branch")
            self._require_active(branch)
            own = self.store._fetch(
                "SELECT id, role, content, content_type, name, tool_calls, metadata, model, "
                "created_at FROM memstore_messages WHERE thread_id = ? ORDER BY position",
                (branch_id,),
            )
            positions = []
            for message_id, *values in own:
                position, _ = self._next_position(target)
                self.store._fetch(
                    "INSERT INTO memstore_messages (thread_id, position, role, content, "
                    "content_type, name, tool_calls, metadata, model, created_at, merged_from) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (target, position, *values, message_id),
                )
                positions.append(position)
            self.store._added_messages = True
            now = _iso(_utcnow())
            if positions:  # counted by memstore_messages__count_insert; the time is now
                self.store._fetch(
                    "UPDATE memstore_threads SET last_message_at = ? WHERE id = ?", (now, target)
                )
            self.store._fetch(
                "INSERT INTO memstore_merges (branch_id, into_id, first_position, last_position, "
                "message_count, merged_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    branch_id,
                    target,
                    positions[0] if positions else None,
                    positions[-1] if positions else None,
                    len(positions),
                    now,
                ),
            )
            self._set_status(branch_id, "merged", None, target)
        return positions

    def abandon(self, branch_id: str, *, reason: str | None = None) -> None:
        """Mark a branch abandoned: kept and readable, closed to new messages."""
        with self.store._transaction():
            self._require_active(self.thread(branch_id))
            self._set_status(branch_id, "abandoned", reason, None)

    def tree(self, thread_id: str) -> dict[str, Any]:
        """The branch tree holding a thread, from its root: each node is a dict with
        id, title, parent_id, branch_point, status, merged_into, message_count,
        merges (what was merged into it) and children."""
        root = ([thread_id, *self._ancestors(thread_id)])[-1]
        self.thread(thread_id)
        threads = {t.id: t for t in self._family(root)}
        merges: dict[str, list[dict[str, Any]]] = {}
        for branch, into, first, last, count, at in self.store._fetch(
            "SELECT branch_id, into_id, first_position, last_position, message_count, merged_at "
            "FROM memstore_merges ORDER BY id"
        ):
            merges.setdefault(into, []).append(
                {
                    "branch_id": branch,
                    "first_position": first,
                    "last_position": last,
                    "message_count": count,
                    "merged_at": at,
                }
            )

        def node(t: Thread) -> dict[str, Any]:
            children = [c for c in threads.values() if c.parent_id == t.id]
            return {
                "id": t.id,
                "title": t.title,
                "parent_id": t.parent_id,
                "branch_point": t.branch_point,
                "status": t.status,
                "status_reason": t.status_reason,
                "merged_into": t.merged_into,
                "message_count": t.message_count,
                "merges": merges.get(t.id, []),
                "children": [node(c) for c in sorted(children, key=lambda c: c.created_at)],
            }

        return node(threads[root])

    # -- private -----------------------------------------------------------

    def _hold_thread(self, thread_id: str) -> None:
        """On PostgreSQL, lock a thread's row until the block ends, as an append does
        (_memstore_last_position): a pop, trim or merge of it then waits for, and is
        waited for by, every other change of its messages. SQLite's writers take turns."""
        lock = self.store._engine.lock_rows
        if lock:
            self.store._fetch(f"SELECT 1 FROM memstore_threads WHERE id = ?{lock}", (thread_id,))

    def _require_active(self, thread: Thread) -> None:
        if thread.status != "active":
            raise ConflictError(f"thread {thread.id!r} is {thread.status}")

    def _set_status(
        self, thread_id: str, status: str, reason: str | None, into: str | None
    ) -> None:
        self.store._fetch(
            "UPDATE memstore_threads SET status = ?, status_reason = ?, merged_into = ?, "
            "status_at = ? WHERE id = ?",
            (status, reason, into, _iso(_utcnow()), thread_id),
        )

    def _last_position(self, thread_id: str) -> tuple[str, int, int | None]:
        """A thread's status, the last position of its history (its own last message, or
        its branch point), and the message id up to which the search index is complete."""
        rows = self.store._fetch(self.store._engine.last_position_sql, (thread_id,))
        if not rows:
            raise NotFoundError(f"no thread {thread_id!r}")
        return rows[0][0], int(rows[0][1]), rows[0][2]

    def _next_position(self, thread_id: str) -> tuple[int, int | None]:
        """Where the next message of an active thread goes, and the search index's mark."""
        status, last, indexed_to = self._last_position(thread_id)
        if status != "active":
            raise ConflictError(f"thread {thread_id!r} is {status}")
        return last + 1, indexed_to

    def _ancestors(self, thread_id: str) -> list[str]:
        found: list[str] = []
        current = thread_id
        while True:
            rows = self.store._fetch(
                "SELECT parent_id FROM memstore_threads WHERE id = ?", (current,)
            )
            if not rows or rows[0][0] is None:
                return found
            current = rows[0][0]
            found.append(current)

    def _descendants(self, thread_id: str) -> list[str]:
        rows = self.store._fetch(
            "WITH RECURSIVE family(id) AS (SELECT id FROM memstore_threads WHERE parent_id = ? "
            "UNION SELECT t.id FROM memstore_threads AS t JOIN family ON t.parent_id = family.id) "
            "SELECT id FROM family",
            (thread_id,),
        )
        return [row[0] for row in rows]

    def _family(self, root: str) -> list[Thread]:
        engine = self.store._engine
        rows = self.store._fetch(
            f"SELECT {_THREAD_COLUMNS} FROM memstore_threads WHERE {engine.ids_in('id')}",
            (engine.ids([root, *self._descendants(root)]),),
        )
        return [_thread(row) for row in rows]

    def _history_clause(self, thread_id: str, alias: str = "m") -> tuple[str, list[Any]]:
        ranges = self.store._fetch(HISTORY_RANGES_SQL, (thread_id,))
        if not ranges:
            raise NotFoundError(f"no thread {thread_id!r}")
        return history_clause(ranges, alias)

    def _recount(self, thread_id: str) -> None:
        _recount_thread(self.store._fetch, thread_id)

    def check(self) -> list[str]:
        """Threads whose message count or last message time disagree with their messages."""
        return [
            f"thread {thread_id}: message count {count} and last message {last} "
            f"disagree with its {real} messages (repair recounts)"
            for thread_id, count, last, real in self._drifted()
        ]

    def _drifted(self) -> list[tuple[str, int, str | None, int]]:
        found = []
        for thread_id, count, last in self.store._fetch(
            "SELECT id, message_count, last_message_at FROM memstore_threads ORDER BY id"
        ):
            truth = _thread_truth(self.store._fetch, thread_id)
            real, newest = truth if truth is not None else (count, None)
            if real != count or (newest is not None and (last is None or last < newest)):
                found.append((thread_id, count, last, real))
        return found


#: Runs a statement and returns its rows: Store._fetch, or a raw connection's (_fetcher).
_Fetch = Callable[[str, Sequence[Any]], list[Any]]


def _fetcher(conn: apsw.Connection) -> _Fetch:
    return lambda sql, params: conn.execute(sql, params).fetchall()


def _thread_truth(fetch: _Fetch, thread_id: Any) -> tuple[int, str | None] | None:
    """What a thread's messages say: how many its history holds (shared ones included),
    and when its newest own message came; None when there is no such thread."""
    ranges = fetch(HISTORY_RANGES_SQL, (thread_id,))
    if not ranges:
        return None
    clause, params = history_clause(ranges)
    count, newest = fetch(
        "SELECT count(*), (SELECT max(created_at) FROM memstore_messages WHERE thread_id = ?) "
        f"FROM memstore_messages AS m WHERE {clause}",
        [thread_id, *params],
    )[0]
    assert isinstance(count, int) and (newest is None or isinstance(newest, str))
    return count, newest


def _recount_thread(fetch: _Fetch, thread_id: Any) -> None:
    """Set a thread's message count from its messages, and its last message time to its
    newest message's when that is later."""
    truth = _thread_truth(fetch, thread_id)
    if truth is None:
        return
    count, newest = truth
    fetch(
        "UPDATE memstore_threads SET message_count = ?, last_message_at = CASE "
        "WHEN ? > coalesce(last_message_at, '') THEN ? ELSE last_message_at END WHERE id = ?",
        (count, newest, newest, thread_id),
    )


_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "metadata", "usage"})


def _message_row(
    role: Any,
    content: Any,
    name: Any,
    tool_calls: Any,
    metadata: Mapping[str, Any] | None,
    usage: Mapping[str, Any] | None,
) -> tuple[Any, ...]:
    """A message's columns for _INSERT_MESSAGE_SQL (from role to cost), checked."""
    if role not in ROLES:
        raise ValidationError(f"role must be one of {ROLES}, not {role!r}")
    if content is None or isinstance(content, str):
        text, content_type = content, "text"
    else:
        text, content_type = _dumps(content), "json"
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"name must be a string, not {name!r}")
    calls = None if tool_calls is None else _dumps(tool_calls)
    meta = "{}" if metadata is None else _dumps(_mapping(metadata, "metadata"))
    tokens_in, tokens_out, tokens_total, model, cost = _check_usage(usage)
    return (
        role,
        text,
        content_type,
        name,
        calls,
        meta,
        tokens_in,
        tokens_out,
        tokens_total,
        model,
        cost,
    )


def _check_usage(usage: Mapping[str, Any] | None) -> tuple[int, int, int, str | None, float]:
    if usage is None:
        return 0, 0, 0, None, 0.0
    if not isinstance(usage, Mapping):
        raise ValidationError(f"usage must be a dict, not {type(usage).__name__}")
    unknown = set(usage) - set(_USAGE_FIELDS)
    if unknown:
        raise ValidationError(
            f"unknown usage fields {', '.join(sorted(map(repr, unknown)))}; "
            f"use {', '.join(sorted(_USAGE_FIELDS))}"
        )
    values = {_USAGE_FIELDS[k]: v for k, v in usage.items() if v is not None}
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        _check_count(values.get(field, 0), field)
    tokens_in, tokens_out = values.get("input_tokens", 0), values.get("output_tokens", 0)
    total = values.get("total_tokens", tokens_in + tokens_out)
    _check_count(total, "total_tokens")
    cost = values.get("cost", 0.0)
    if _finite(cost, "cost") < 0:
        raise ValidationError(f"cost must be a number >= 0, not {cost!r}")
    model = values.get("model")
    if model is not None and not isinstance(model, str):
        raise ValidationError(f"model must be a string, not {model!r}")
    return tokens_in, tokens_out, total, model, float(cost)


@contextmanager
def _larger_cache(store: Store, kib: int) -> Iterator[None]:
    """A page cache of at least ``kib`` KiB for the block; the previous size after it."""
    before = int(store._fetch("PRAGMA cache_size")[0][0])
    pages = int(store._fetch("PRAGMA page_size")[0][0])
    if (-before if before < 0 else before * pages // 1024) >= kib:
        yield
        return
    store._fetch(f"PRAGMA cache_size = {-int(kib)}")
    try:
        yield
    finally:
        store._fetch(f"PRAGMA cache_size = {before}")


def _index_pending_messages(store: Store) -> None:
    """Index the messages added since the last time, in one transaction (sql/0008)."""
    with store._transaction():
        for sql in INDEX_PENDING_MESSAGES_SQL:
            store._fetch(sql)


def _catch_up_messages(store: Store) -> None:
    """Index waiting messages, if any: before a search, a check, or closing."""
    if store._engine.batches_fts and store._fetch(PENDING_MESSAGES_SQL) != [(0,)]:
        _index_pending_messages(store)


#: A collection's new rows wait for its full-text index in batches (sql/0013): a handle
#: indexes them every FTS_BATCH writes, and searches, checks and close() first.
FTS_BATCH = 100


def _fts_waiting_sql(table: str) -> str:
    """1 when rows of a collection wait for its full-text index (O(1): max(id))."""
    return (
        f"SELECT (SELECT coalesce(max(id), 0) FROM {quote_identifier(table)}) > indexed_to "
        f"FROM memstore_fts_progress WHERE fts = {_literal(fts_table(table))}"
    )


def _fts_catch_up_sql(table: str, paths: Sequence[str]) -> str:
    """Index the rows of a collection past its mark, in one statement."""
    fts = quote_identifier(fts_table(table))
    columns = ", ".join(quote_identifier(field_column(p)) for p in paths)
    return (
        f"INSERT INTO {fts} (rowid, {columns}) SELECT id, {columns} "
        f"FROM {quote_identifier(table)} WHERE id > (SELECT indexed_to "
        f"FROM memstore_fts_progress WHERE fts = {_literal(fts_table(table))})"
    )


def _fts_waiting(store: Store, table: str) -> bool:
    rows = store._fetch(_fts_waiting_sql(table))
    return bool(rows and rows[0][0])


def _catch_up_fts(store: Store, table: str, paths: Sequence[str]) -> None:
    """Index the rows of a collection past its mark and close the batch (sql/0013)."""
    with store._transaction():
        store._fetch(_fts_catch_up_sql(table, paths))
        store._fetch(_fts_progress_sql(table))
    store._fts_writes.pop(table, None)


def index_pending(conn: Any) -> int:
    """Index what memstore left waiting for full-text search, messages and collection
    rows (it indexes them in batches), on any connection to the file: apsw's, or Python's
    sqlite3 (the Datasette explorer's), inside the caller's write transaction. A tool
    that searches memstore's FTS tables with its own SQL calls it first. Returns how
    many indexes were brought up to date."""
    done = 0
    for name, paths in conn.execute(
        "SELECT c.name, c.fts FROM _memstore_collections AS c JOIN memstore_fts_progress AS p "
        "ON p.fts = c.name || '_fts' WHERE c.fts <> '[]'"
    ).fetchall():
        waiting = conn.execute(_fts_waiting_sql(name)).fetchall()
        if waiting and waiting[0][0]:
            conn.execute(_fts_catch_up_sql(name, json.loads(paths)))
            conn.execute(_fts_progress_sql(name))
            done += 1
    if conn.execute(PENDING_MESSAGES_SQL).fetchall() != [(0,)]:
        for sql in INDEX_PENDING_MESSAGES_SQL:
            conn.execute(sql)
        done += 1
    return done


def _delete_batches(
    store: Store, table: str, where: str, params: Sequence[Any], size: int, *, key: str = "id"
) -> int:
    """Delete rows of a layer table matching ``where``, ``size`` per transaction."""
    _check_batch_size(size)
    total = 0
    while True:
        with store._transaction():
            row = store._engine.row_ref
            deleted = store._fetch(
                f"DELETE FROM {table} WHERE {row} IN "
                f"(SELECT {row} FROM {table} WHERE {where} LIMIT ?) RETURNING {key}",
                [*params, size],
            )
        total += len(deleted)
        if len(deleted) < size:
            return total


# --------------------------------------------------------------------------
# Agent memory, part 2: checkpoints, graphs, caches (sql/0004 to sql/0006)
# --------------------------------------------------------------------------

#: States at least this large (in bytes of JSON) are stored zlib-compressed:
#: 5.7 times smaller for 2.5 ms on a 120 KiB state (BENCHMARKS.md).
COMPRESS_ABOVE = 64 * 1024


class Checkpoint(NamedTuple):
    """A saved state of a thread; ``size`` is its JSON's length in bytes."""

    id: str
    thread_id: str
    branch: str
    parent_id: str | None
    state: Any
    metadata: dict[str, Any]
    tags: list[str]
    created_at: str
    size: int
    compressed: bool


_CHECKPOINT_COLUMNS = (
    "c.id, c.thread_id, c.branch, c.parent_id, c.state, c.state_zlib, c.metadata, c.tags, "
    "c.created_at, c.size"
)


def _checkpoint(row: Any) -> Checkpoint:
    cid, thread_id, branch, parent, state, packed, metadata, tags, created_at, size = row
    text = state if packed is None else _zlib().decompress(packed).decode("utf-8")
    return Checkpoint(
        cid,
        thread_id,
        branch,
        parent,
        json.loads(text),
        json.loads(metadata),
        json.loads(tags),
        created_at,
        size,
        packed is not None,
    )


class Checkpoints:
    """Saved states of agent threads, with history, branches and diffs; from ``Store.checkpoints``.

    >>> cp = store.checkpoints()
    >>> first = cp.save("t1", {"step": 1, "plan": ["search"]})
    >>> second = cp.save("t1", {"step": 2, "plan": ["search", "answer"]})
    >>> cp.diff(first, second)["changed"]
    {'step': {'old': 1, 'new': 2}}
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(
        self,
        thread_id: str,
        state: Any,
        *,
        branch: str = "main",
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        parent: str | None = None,
        checkpoint_id: str | None = None,
    ) -> str:
        """Save a state (JSON) and return the checkpoint's id (a ULID unless given).

        The parent defaults to the branch's latest checkpoint, or for the
        first save on a branch, the checkpoint it was started from.
        """
        _check_key(thread_id)
        _check_key(branch)
        new_id = _new_key() if checkpoint_id is None else _check_key(checkpoint_id)
        if parent is not None and parent == new_id:
            raise ValidationError(f"checkpoint {new_id!r} cannot be its own parent")
        text = _dumps(state)
        encoded = _utf8(text)
        size = len(encoded)
        compress = size >= COMPRESS_ABOVE and self.store._engine.compresses_states
        packed = _zlib().compress(encoded, 6) if compress else None
        values = (_dumps(_mapping(metadata, "metadata")), _dumps(_tags(tags)))
        with self.store._transaction():
            if self.store._fetch("SELECT 1 FROM memstore_checkpoints WHERE id = ?", (new_id,)):
                raise ConflictError(f"checkpoint {new_id!r} already exists")
            stamp = _iso(_utcnow())
            if parent is None:  # the branch's head: saves to one branch take turns
                self.store._engine.take_turns(self.store, f"checkpoints\x1f{thread_id}\x1f{branch}")
                head = self.latest(thread_id, branch=branch)
                if head is None:
                    parent = self._branch_start(thread_id, branch)
                else:
                    parent = head.id
                    # Newer than its parent as latest() orders them (time, then id): an id
                    # made before the parent's (another connection's, in the same ms), or a
                    # clock behind the parent's, moves the time a millisecond past it.
                    if (stamp, new_id) <= (head.created_at, head.id):
                        stamp = _stamp_after(head.created_at)
            elif self.get(parent).thread_id != thread_id:
                raise ValidationError(f"parent {parent!r} belongs to another thread")
            self.store._fetch(
                "INSERT INTO memstore_checkpoints (id, thread_id, branch, parent_id, state, "
                "state_zlib, size, metadata, tags, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    thread_id,
                    branch,
                    parent,
                    None if packed else text,
                    packed,
                    size,
                    *values,
                    stamp,
                ),
            )
        return new_id

    def get(self, checkpoint_id: str) -> Checkpoint:
        """The checkpoint; NotFoundError if there is none."""
        rows = self.store._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM memstore_checkpoints AS c WHERE c.id = ?",
            (checkpoint_id,),
        )
        if not rows:
            raise NotFoundError(f"no checkpoint {checkpoint_id!r}")
        return _checkpoint(rows[0])

    def restore(self, checkpoint_id: str) -> Any:
        """The state saved in a checkpoint."""
        return self.get(checkpoint_id).state

    def latest(self, thread_id: str, *, branch: str = "main") -> Checkpoint | None:
        """The newest checkpoint of a thread's branch, or None."""
        rows = self.store._fetch(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM memstore_checkpoints AS c "
            "WHERE c.thread_id = ? AND c.branch = ? ORDER BY c.created_at DESC, c.id DESC LIMIT 1",
            (thread_id, branch),
        )
        return _checkpoint(rows[0]) if rows else None

    def branch(self, from_id: str, *, name: str) -> str:
        """Start a branch whose first parent is checkpoint ``from_id``; return its name.

        Save to it with ``save(thread_id, state, branch=name)``.
        """
        _check_key(name)
        with self.store._transaction():
            origin = self.get(from_id)
            if self.store._fetch(
                "SELECT 1 FROM memstore_checkpoint_branches WHERE thread_id = ? AND name = ? "
                "UNION SELECT 1 FROM memstore_checkpoints WHERE thread_id = ? AND branch = ?",
                (origin.thread_id, name, origin.thread_id, name),
            ):
                raise ConflictError(f"thread {origin.thread_id!r} already has a branch {name!r}")
            self.store._fetch(
                "INSERT INTO memstore_checkpoint_branches (thread_id, name, from_id) "
                "VALUES (?, ?, ?)",
                (origin.thread_id, name, from_id),
            )
        return name

    def branches(self, thread_id: str) -> list[dict[str, Any]]:
        """A thread's branches: name, the checkpoint it started from, its latest checkpoint."""
        rows = self.store._fetch(
            "SELECT b.name, b.from_id, b.created_at FROM memstore_checkpoint_branches AS b "
            "WHERE b.thread_id = ? ORDER BY b.created_at",
            (thread_id,),
        )
        named: list[tuple[str, str | None, str | None]] = [("main", None, None)]
        named += [(name, from_id, created_at) for name, from_id, created_at in rows]
        result = []
        for name, from_id, created_at in named:
            head = self.latest(thread_id, branch=name)
            if head is not None or name != "main":
                result.append(
                    {
                        "name": name,
                        "from_id": from_id,
                        "created_at": created_at,
                        "latest_id": head.id if head else None,
                    }
                )
        return result

    def history(
        self,
        thread_id: str,
        *,
        branch: str = "main",
        before: str | datetime | None = None,
        limit: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[Checkpoint]:
        """A branch's checkpoints newest first, walking back through parents (so a
        branch's history continues into the checkpoints it grew from).

        ``before`` is a checkpoint id (exclusive) or a time; ``tags`` keeps
        checkpoints having all of them.
        """
        filters, params = self._filters(before, tags)
        if limit is not None:
            _check_count(limit, "limit")
        with self.store._transaction(immediate=False):  # the head and its walk: one snapshot
            head = self._branch_head(thread_id, branch)
            if head is None:
                return []
            # Parent links made by hand can form a cycle: the walk is bounded by the
            # number of checkpoints there can be, and each checkpoint is listed once.
            engine = self.store._engine
            steps = self.store._fetch(f"SELECT {engine.row_bound} FROM memstore_checkpoints")
            bound = steps[0][0] if filters != "true" or limit is None else min(steps[0][0], limit)
            rows = self.store._fetch(
                "WITH RECURSIVE walk(id, depth) AS "
                "(SELECT id, 0 FROM memstore_checkpoints WHERE id = ? UNION ALL "
                "SELECT c.parent_id, walk.depth + 1 FROM memstore_checkpoints AS c "
                "JOIN walk ON c.id = walk.id WHERE c.parent_id IS NOT NULL AND walk.depth < ?), "
                "first(id, depth) AS (SELECT id, min(depth) FROM walk GROUP BY id) "
                f"SELECT {_CHECKPOINT_COLUMNS} FROM first JOIN memstore_checkpoints AS c "
                f"ON c.id = first.id WHERE {filters} ORDER BY first.depth LIMIT ?",
                [head, bound, *params, engine.no_limit if limit is None else limit],
            )
        return [_checkpoint(row) for row in rows]

    def find(
        self,
        thread_id: str,
        *,
        tags: Sequence[str] | None = None,
        before: str | datetime | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[Checkpoint]:
        """A thread's checkpoints on any branch, newest first, filtered by tags, time and
        ``where`` on the state or metadata: ``{"state.plan.0": "search", "metadata.user": "u1"}``
        with the operators of ``Collection.query``. Filters and ``limit`` run in SQL: only
        the checkpoints returned have their states read."""
        engine = self.store._engine
        clause, params = _compile_filter(
            where or {}, functools.partial(_checkpoint_target, engine), engine.operators
        )
        filters, extra = self._filters(before, tags)
        if limit is not None:
            _check_count(limit, "limit")
        sql = (
            f"SELECT {_CHECKPOINT_COLUMNS} FROM memstore_checkpoints AS c "
            f"WHERE c.thread_id = ? AND {clause} AND {filters} "
            "ORDER BY c.created_at DESC, c.id DESC LIMIT ?"
        )
        limited = engine.no_limit if limit is None else limit
        rows = self.store._fetch(sql, [thread_id, *params, *extra, limited])
        return [_checkpoint(row) for row in rows]

    def _filters(
        self, before: str | datetime | None, tags: Sequence[str] | None
    ) -> tuple[str, list[Any]]:
        """SQL conditions on ``c`` for ``before`` (a checkpoint id, exclusive, or a time)
        and ``tags`` (all of them)."""
        parts, params = ["true"], []
        if tags is not None:
            parts.append(self.store._engine.holds_all("c.tags"))
            params.append(json.dumps(_tags(tags)))
        if before is not None:
            mark = (
                self.store._fetch(
                    "SELECT created_at, id FROM memstore_checkpoints WHERE id = ?", (before,)
                )
                if isinstance(before, str)
                else []
            )
            if mark:
                parts.append("(c.created_at, c.id) < (?, ?)")
                params += mark[0]
            else:
                parts.append("c.created_at < ?")
                params.append(_timestamp(before))
        return " AND ".join(parts[1:]) or "true", params

    def diff(self, a: str, b: str | None = None) -> dict[str, Any]:
        """What changed between two checkpoints' states, or with ``b`` omitted, between
        checkpoint ``a``'s parent (an empty state for a first one) and ``a``.

        Returns ``{"added": {path: new}, "removed": {path: old},
        "changed": {path: {"old": ..., "new": ...}}}`` with paths like
        ``plan[1].tool``.
        """
        if b is None:
            newer = self.get(a)
            older_state = {} if newer.parent_id is None else self.restore(newer.parent_id)
            return state_diff(older_state, newer.state)
        return state_diff(self.restore(a), self.restore(b))

    def cleanup(
        self,
        thread_id: str,
        *,
        keep_last: int | None = None,
        older_than: timedelta | float | str | None = None,
        keep_tagged: bool = True,
        force: bool = False,
    ) -> int:
        """Delete a thread's checkpoints older than ``older_than`` and beyond the
        ``keep_last`` newest (either alone works too); return how many.

        Tagged checkpoints are kept unless ``keep_tagged=False``. A checkpoint
        that another branch starts from is kept while that branch has
        checkpoints, unless ``force=True``. States are stored whole, so no
        checkpoint needs its parent to be restored: the oldest one kept
        simply starts its history (its parent link is cleared).
        """
        if keep_last is not None:
            _check_count(keep_last, "keep_last")
        cutoff = None
        if older_than is not None:
            cutoff = _iso(_utcnow() - timedelta(seconds=_seconds(older_than, "older_than")))
        if keep_last is None and cutoff is None:
            return 0
        # Decided and done in one write transaction: another process's checkpoint (a new
        # branch's first, say) cannot come between what is read and what is deleted.
        with self.store._transaction():
            # What retention decides on, without reading (or inflating) any state.
            everything = [
                _Lineage(cid, branch, parent, json.loads(tags), created_at)
                for cid, branch, parent, tags, created_at in self.store._fetch(
                    "SELECT id, branch, parent_id, tags, created_at FROM memstore_checkpoints "
                    "WHERE thread_id = ? ORDER BY created_at DESC, id DESC",
                    (thread_id,),
                )
            ]
            candidates = everything[keep_last:] if keep_last is not None else everything
            doomed = {
                c.id: c
                for c in candidates
                if (cutoff is None or c.created_at < cutoff) and not (keep_tagged and c.tags)
            }
            if not force:
                # Keep the checkpoints a branch grows from while the branch lives on.
                children = [c for c in everything if c.id not in doomed]
                for child in children:
                    parent = doomed.get(child.parent_id or "")
                    if parent is not None and parent.branch != child.branch:
                        del doomed[parent.id]
            engine = self.store._engine
            ids = engine.ids(sorted(doomed))
            self.store._fetch(
                "UPDATE memstore_checkpoints SET parent_id = NULL "
                f"WHERE {engine.ids_in('parent_id')}",
                (ids,),
            )
            self.store._fetch(
                f"DELETE FROM memstore_checkpoints WHERE {engine.ids_in('id')}", (ids,)
            )
        return len(doomed)

    def check(self) -> list[str]:
        """Checkpoints whose parent is missing (left by tools writing with foreign keys off),
        and parent links that go round in a cycle (made by hand)."""
        parents = dict(self.store._fetch("SELECT id, parent_id FROM memstore_checkpoints"))
        problems = [
            f"checkpoint {cid} has a missing parent {parent}"
            for cid, parent in sorted(parents.items())
            if parent is not None and parent not in parents
        ]
        settled: set[str] = set()  # checkpoints known to lead to a root, or to a cycle found
        for start in sorted(parents):
            path: list[str] = []
            node: str | None = start
            while node is not None and node in parents and node not in settled:
                if node in path:
                    cycle = path[path.index(node) :]
                    problems.append(f"checkpoints {' -> '.join([*cycle, node])} form a cycle")
                    break
                path.append(node)
                node = parents[node]
            settled.update(path)
        return problems

    def _branch_head(self, thread_id: str, branch: str) -> str | None:
        head = self.latest(thread_id, branch=branch)
        return head.id if head is not None else self._branch_start(thread_id, branch)

    def _branch_start(self, thread_id: str, branch: str) -> str | None:
        """The checkpoint a branch that has none of its own was started from, if any."""
        rows = self.store._fetch(
            "SELECT from_id FROM memstore_checkpoint_branches WHERE thread_id = ? AND name = ?",
            (thread_id, branch),
        )
        return rows[0][0] if rows else None


class _Lineage(NamedTuple):
    """A checkpoint without its state: what retention decides on."""

    id: str
    branch: str
    parent_id: str | None
    tags: list[str]
    created_at: str


def _checkpoint_target(engine: _Engine, field: str) -> _Target:
    """Filter fields of ``Checkpoints.find``: state.<path> or metadata.<path>."""
    if not isinstance(field, str):
        raise QueryError(f"filter checkpoints on state.<path> or metadata.<path>, not {field!r}")
    root, _, rest = field.partition(".")
    if root in ("metadata", "state"):
        path = _json_path(rest) if rest else "$"
        return engine.json_value("c.metadata" if root == "metadata" else engine.state_sql, path)
    raise QueryError(f"filter checkpoints on state.<path> or metadata.<path>, not {field!r}")


def state_diff(old: Any, new: Any) -> dict[str, Any]:
    """A structured diff of two JSON values: added, removed and changed paths.

    >>> state_diff({"a": 1, "b": [1, 2]}, {"a": 2, "b": [1], "c": True})
    {'added': {'c': True}, 'removed': {'b[1]': 2}, 'changed': {'a': {'old': 1, 'new': 2}}}
    """
    result: dict[str, Any] = {"added": {}, "removed": {}, "changed": {}}

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() | b.keys():
                child = f"{path}.{key}" if path else str(key)
                if key not in b:
                    result["removed"][child] = a[key]
                elif key not in a:
                    result["added"][child] = b[key]
                else:
                    walk(a[key], b[key], child)
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                child = f"{path}[{i}]"
                if i >= len(b):
                    result["removed"][child] = a[i]
                elif i >= len(a):
                    result["added"][child] = b[i]
                else:
                    walk(a[i], b[i], child)
        elif a != b or type(a) is not type(b):
            result["changed"][path or "$"] = {"old": a, "new": b}

    walk(old, new, "")
    for part in result.values():
        ordered = dict(sorted(part.items()))
        part.clear()
        part.update(ordered)
    return result


class Node(NamedTuple):
    """A graph node; ``depth`` is set by ``Graph.neighbors``."""

    id: str
    kind: str
    props: dict[str, Any]
    created_at: str
    updated_at: str
    depth: int | None = None


class Edge(NamedTuple):
    """A directed, typed, weighted graph edge, holding in world time from ``valid_from`` to
    ``valid_to`` (None: no bound)."""

    source: str
    target: str
    relation: str
    props: dict[str, Any]
    weight: float
    created_at: str
    updated_at: str
    valid_from: str | None = None
    valid_to: str | None = None


GRAPH_FORMAT = "memstore.graph"
GRAPH_FORMAT_VERSION = 1
_DIRECTIONS = ("out", "in", "both")


def _node(row: Any, depth: int | None = None) -> Node:
    return Node(row[0], row[1], json.loads(row[2]), row[3], row[4], depth)


def _edge(row: Any) -> Edge:
    start, end = row[7], row[8]
    return Edge(
        row[0],
        row[1],
        row[2],
        json.loads(row[3]),
        row[4],
        row[5],
        row[6],
        None if start == NEVER_BEFORE else start,
        None if end == NEVER_AFTER else end,
    )


def _within_budget(
    items: Iterable[dict[str, Any]], budget: int, used: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """The items, in order, up to the first that does not fit in ``budget`` tokens (4
    characters a token, as JSON) with ``used`` spent already: (items, tokens used then,
    whether one was left out)."""
    kept: list[dict[str, Any]] = []
    for item in items:
        size = math.ceil(len(json.dumps(item, ensure_ascii=False)) / 4)
        if used + size > budget:
            return kept, used, True
        kept.append(item)
        used += size
    return kept, used, False


def _validity(valid_from: Any, valid_to: Any) -> tuple[str | None, str | None]:
    """A period given for a fact or an edge: parsed (None where left out), and in order."""
    start = None if valid_from is None else _moment(valid_from, "valid_from", ValidationError)
    end = None if valid_to is None else _moment(valid_to, "valid_to", ValidationError)
    if start is not None and end is not None and not start < end:
        raise ValidationError(f"valid_to {end} must come after valid_from {start}")
    return start, end


def _edges_valid_at(as_of: Any, alias: str = "") -> tuple[str, list[Any]]:
    """The condition "the edge holds at as_of" (now by default), and its parameters."""
    moment = _moment_or_now(as_of, "as_of")
    return f"{alias}valid_from <= ? AND {alias}valid_to > ?", [moment, moment]


def _cleanup_graph_history(
    store: Store, older_than: timedelta | float | str, graph: str | None = None
) -> int:
    """Delete the versions of nodes and edges replaced more than ``older_than`` ago (of
    one graph, or of all); return how many went."""
    cutoff = _iso(_utcnow() - timedelta(seconds=_seconds(older_than, "older_than")))
    removed = 0
    with store._transaction():
        for table in ("memstore_node_versions", "memstore_edge_versions"):
            removed += len(
                store._fetch(
                    f"DELETE FROM {table} WHERE (graph = ? OR CAST(? AS TEXT) IS NULL) "
                    "AND known_to < ? "
                    "RETURNING id",
                    (graph, graph, cutoff),
                )
            )
    return removed


# A graph's node or edge by its row g of memstore_graph_text: the columns of both (one
# side NULL), and the joins that give them; _graph_item reads them.
_GRAPH_ITEM_COLUMNS = (
    "n.id, n.kind, n.props, n.created_at, n.updated_at, e.source, e.target, e.relation, "
    "e.props, e.weight, e.created_at, e.updated_at, e.valid_from, e.valid_to"
)


def _graph_item_joins(g: str) -> str:
    """The joins giving _GRAPH_ITEM_COLUMNS for the row ``g`` of memstore_graph_text."""
    return (
        f"LEFT JOIN memstore_nodes AS n ON {g}.item = 'node' AND n.graph = {g}.graph "
        f"AND n.id = {g}.ref LEFT JOIN memstore_edges AS e ON {g}.item = 'edge' "
        f"AND e.graph = {g}.graph AND e.source = {g}.ref AND e.relation = {g}.relation "
        f"AND e.target = {g}.target"
    )


def _graph_item(row: Sequence[Any]) -> tuple[str, Node | Edge]:
    """(key, record) of a row of _GRAPH_ITEM_COLUMNS: a node's id and the Node, or an
    edge's "source relation target" and the Edge."""
    if row[0] is not None:
        return row[0], _node(row[:5])
    edge = _edge(row[5:])
    return f"{edge.source} {edge.relation} {edge.target}", edge


def _graph_view(name: str, known_at: Any) -> tuple[str, str, list[Any]]:
    """The graph's nodes and edges as the store held them at ``known_at`` (now when None):
    two table expressions with the columns of memstore_nodes and memstore_edges, and
    their parameters (the nodes', then the edges')."""
    if known_at is None:
        return "memstore_nodes", "memstore_edges", []
    known = _moment(known_at, "known_at")
    nodes = (
        "(SELECT graph, id, kind, props, created_at, updated_at FROM memstore_nodes "
        "WHERE graph = ? AND updated_at <= ? UNION ALL SELECT graph, node, kind, props, "
        "created_at, known_from FROM memstore_node_versions WHERE graph = ? "
        "AND known_from <= ? AND known_to > ?)"
    )
    edges = (
        "(SELECT graph, source, target, relation, props, weight, created_at, updated_at, "
        "valid_from, valid_to FROM memstore_edges WHERE graph = ? AND updated_at <= ? "
        "UNION ALL SELECT graph, source, target, relation, props, weight, created_at, "
        "known_from, valid_from, valid_to FROM memstore_edge_versions WHERE graph = ? "
        "AND known_from <= ? AND known_to > ?)"
    )
    return nodes, edges, [name, known, name, known, known] * 2


class Graph:
    """A small graph of facts with profiles; from ``Store.graph``.

    >>> g = store.graph("facts")
    >>> g.add_node("ada", "person", {"born": 1815})
    >>> g.add_node("engine", "machine")
    >>> g.add_edge("ada", "engine", "wrote_about", weight=0.9)
    >>> g.neighbors("ada", depth=2)
    """

    def __init__(
        self, store: Store, name: str, *, vectors: Mapping[str, Any] | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a graph name must be a non-empty string, not {name!r}")
        self.store = store
        self.name = name
        if vectors is not None and "fields" in vectors:
            raise ValidationError("a graph embeds its nodes' words: vectors takes no fields")
        if vectors is not None and "hnsw" in vectors:
            raise ValidationError(
                "a graph's vectors take no hnsw: an index is a collection's declaration"
            )
        declared, self.embed = _normalize_vectors(vectors)
        self.vectors = None if declared is None else {"metric": "cosine", **declared}
        # Node vectors live in memstore_vectors under this name (no collection has a
        # colon in its name), keyed by the node's row in memstore_graph_text.
        self._vector_name = f"graph:{name}"
        self._model_checked = False

    def __repr__(self) -> str:
        return f"<memstore.Graph {self.name!r}>"

    def add_node(
        self,
        node_id: str,
        kind: str,
        props: Mapping[str, Any] | None = None,
        *,
        vector: Any = None,
    ) -> str:
        """Insert or update a node (its kind and props replaced); return its id.

        With ``vectors`` declared, ``vector`` is the node's embedding; left out,
        a handle with ``embed`` embeds the node's words (its id, kind and the
        text of its props), and one without keeps the vector the node has.
        """
        _check_key(node_id)
        _check_key(kind)
        body, now = _dumps(_mapping(props, "props")), _iso(_utcnow())
        if vector is not None:  # checked before anything is written
            _vector_blob(vector, self._vector_config()["dim"])
        with self.store._transaction():
            self.store._fetch(
                "INSERT INTO memstore_nodes (graph, id, kind, props, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (graph, id) DO UPDATE SET "
                "kind = excluded.kind, props = excluded.props, updated_at = excluded.updated_at",
                (self.name, node_id, kind, body, now, now),
            )
            self._item_vector(("node", node_id, "", ""), vector)
        return node_id

    def _vector_config(self) -> dict[str, Any]:
        if self.vectors is None:
            raise QueryError(
                f"graph {self.name!r} has no vectors here: store.graph(name, "
                "vectors={'dim': ..., 'model': ...})"
            )
        return self.vectors

    def _item_vector(self, item: tuple[str, str, str, str], vector: Any) -> None:
        """Give a node or edge just written (item, ref, relation, target, as its row in
        memstore_graph_text names it) its vector: the one given, or embedded from its
        words by the handle's embed; neither, it keeps the one it has."""
        if vector is None and (self.embed is None or self.vectors is None):
            return
        row, words = self.store._fetch(
            "SELECT id, words FROM memstore_graph_text WHERE graph = ? AND item = ? "
            "AND ref = ? AND relation = ? AND target = ?",
            (self.name, *item),
        )[0]
        if vector is None:
            vector = _embedded(_embedder(self.embed, "")[0], [words])[0]
        self._write_vector(row, _vector_blob(vector, self._vector_config()["dim"]))

    def _write_vector(self, row: int, blob: bytes) -> None:
        """An item's vector (by its memstore_graph_text row); one model per graph."""
        config = self._vector_config()
        if not self._model_checked:
            other = self.store._fetch(
                "SELECT model, dim FROM memstore_vectors WHERE collection = ? "
                "AND (model <> ? OR dim <> ?) LIMIT 1",
                (self._vector_name, config["model"], config["dim"]),
            )
            if other:
                raise ValidationError(
                    f"graph {self.name!r} holds vectors of {other[0][0]!r} (dim {other[0][1]}), "
                    f"not {config['model']!r} (dim {config['dim']}): one model per graph"
                )
            self._model_checked = True
        engine = self.store._engine
        self.store._fetch(
            "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, vector) "
            "VALUES (?, ?, ?, '', ?, ?) ON CONFLICT (collection, record_id, model, part) "
            "DO UPDATE SET dim = excluded.dim, vector = excluded.vector, "
            f"embedded_at = {engine.now} "
            f"WHERE memstore_vectors.vector {engine.differs} excluded.vector",
            (self._vector_name, row, config["model"], config["dim"], blob),
        )
        self.store._vector_writes += 1
        _trim_vector_log(self.store, self._vector_name)

    def vector(self, node_id: str) -> Any:
        """The node's embedding as a numpy array; None when it has none."""
        config = self._vector_config()
        rows = self.store._fetch(
            "SELECT v.vector FROM memstore_graph_text AS g JOIN memstore_vectors AS v "
            "ON v.collection = ? AND v.record_id = g.id AND v.model = ? AND v.dim = ? "
            "WHERE g.graph = ? AND g.item = 'node' AND g.ref = ?",
            (self._vector_name, config["model"], config["dim"], self.name, node_id),
        )
        return _numpy().frombuffer(rows[0][0], "<f4").copy() if rows else None

    def nearest(
        self,
        query: Any,
        *,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        as_of: Any = None,
        metric: str | None = None,
        exact: bool | None = None,
    ) -> list[Neighbor]:
        """The ``k`` nodes and edges whose vectors are nearest to ``query`` (a vector, or a
        text when the handle has ``embed``), nearest first: Neighbors whose record is a
        Node or an Edge (key: the node's id, or "source relation target"), as ``search``
        gives Hits. ``kinds`` keeps nodes of those kinds (and no edges); edges that do not
        hold ``as_of`` (now by default) are left out; ``metric`` and ``exact`` as for
        ``Collection.nearest`` (the same index, kept in memory)."""
        config = self._vector_config()
        metric = _check_metric(config["metric"] if metric is None else metric)
        if exact is not None and not isinstance(exact, bool):
            raise QueryError(f"exact must be True, False or None, not {exact!r}")
        _check_count(k, "k")
        valid, moments = _edges_valid_at(as_of, "e.")
        if isinstance(query, str):
            query = _embedder(self.embed, "a text query needs embed= (or give a vector)")[1](query)
        q = _numpy().frombuffer(_vector_blob(query, config["dim"], "query"), "<f4")
        engine, approximate = self.store._engine, exact is not True
        nodes = (  # the items of nodes of these kinds
            "SELECT g.id FROM memstore_graph_text AS g "
            "JOIN memstore_nodes AS n ON n.graph = g.graph AND n.id = g.ref "
            f"WHERE g.graph = ? AND g.item = 'node' AND {engine.ids_in('n.kind')}"
        )
        gone = (  # the items of edges that do not hold then: usually few
            "SELECT g.id FROM memstore_graph_text AS g JOIN memstore_edges AS e "
            "ON e.graph = g.graph AND e.source = g.ref AND e.relation = g.relation "
            "AND e.target = g.target WHERE g.graph = ? AND g.item = 'edge' "
            f"AND NOT ({valid})"
        )
        if kinds is not None:
            node_params = (self.name, engine.ids(_strings(kinds, "kinds")))
            among = (f"v.record_id IN ({nodes})", node_params)
        else:
            among = (f"v.record_id NOT IN ({gone})", (self.name, *moments))
        with self.store._transaction(immediate=False):  # the vectors and the items: one snapshot
            if k == 0:
                return []
            found = engine.nearest(  # graphs have no HNSW index: exact
                self.store, self._vector_name, config, q, metric, k, among, False
            )
            if found is None:
                index = self.store._vector_index(self._vector_name, config)
                if not index.slot:
                    return []
                if kinds is not None:
                    rows = self.store._fetch(nodes, node_params)
                    ids = index.np.fromiter((r[0] for r in rows), index.np.int64, len(rows))
                    found = index.search(q, metric, k, among=ids, approximate=approximate)
                else:
                    excluded = [r[0] for r in self.store._fetch(gone, (self.name, *moments))]
                    found = index.search(q, metric, k, exclude=excluded, approximate=approximate)
            items = {
                row[0]: _graph_item(row[1:])
                for row in self.store._fetch(
                    f"SELECT g.id, {_GRAPH_ITEM_COLUMNS} FROM memstore_graph_text AS g "
                    f"{_graph_item_joins('g')} WHERE g.graph = ? "
                    f"AND {self.store._engine.ids_in('g.id')}",
                    (self.name, self.store._engine.ids([rid for rid, _ in found])),
                )
                if row[1] is not None or row[6] is not None
            }
        l2 = metric == "l2"
        return [
            Neighbor(
                *items[rid],
                -value if l2 else value,
                None if l2 else value,
                value if l2 else None,
            )
            for rid, value in found
            if rid in items
        ]

    def node(self, node_id: str, *, known_at: Any = None) -> Node:
        """The node (as the store held it ``known_at``, now by default); NotFoundError if
        there is none."""
        nodes, _, view = _graph_view(self.name, known_at)
        rows = self.store._fetch(
            f"SELECT id, kind, props, created_at, updated_at FROM {nodes} AS n "
            "WHERE graph = ? AND id = ?",
            (*view[:5], self.name, node_id),
        )
        if not rows:
            when = "" if known_at is None else f" known at {_moment(known_at, 'known_at')}"
            raise NotFoundError(f"no node {node_id!r} in graph {self.name!r}{when}")
        return _node(rows[0])

    def add_edge(
        self,
        source: str,
        target: str,
        relation: str,
        props: Mapping[str, Any] | None = None,
        weight: float = 1.0,
        *,
        valid_from: Any = None,
        valid_to: Any = None,
        vector: Any = None,
    ) -> None:
        """Insert or update the edge ``source -relation-> target``; both nodes must exist.

        ``valid_from`` and ``valid_to`` (aware datetimes or ISO-8601 text) bound
        when the relation holds in the world; left out, a new edge always holds
        and an existing one keeps its period. ``vector``: as for ``add_node``
        (an edge's words are its relation and the text of its props).
        """
        for value in (source, target, relation):
            _check_key(value)
        if source == target:
            raise ValidationError(f"an edge cannot join {source!r} to itself")
        weight = _finite(weight, "weight")
        start, end = _validity(valid_from, valid_to)
        body, now = _dumps(_mapping(props, "props")), _iso(_utcnow())
        if vector is not None:  # checked before anything is written
            _vector_blob(vector, self._vector_config()["dim"])
        with self.store._transaction():
            for endpoint in (source, target):
                self.node(endpoint)
            old = self.store._fetch(
                "SELECT valid_from, valid_to FROM memstore_edges WHERE graph = ? AND source = ? "
                "AND target = ? AND relation = ?",
                (self.name, source, target, relation),
            )
            start = start or (old[0][0] if old else NEVER_BEFORE)
            end = end or (old[0][1] if old else NEVER_AFTER)
            if not start < end:
                raise ValidationError(f"valid_to {end} must come after valid_from {start}")
            self.store._fetch(
                "INSERT INTO memstore_edges (graph, source, target, relation, props, weight, "
                "created_at, updated_at, valid_from, valid_to) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (graph, source, relation, target) DO UPDATE SET "
                "props = excluded.props, weight = excluded.weight, "
                "updated_at = excluded.updated_at, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to",
                (self.name, source, target, relation, body, float(weight), now, now, start, end),
            )
            self._item_vector(("edge", source, relation, target), vector)

    def invalidate_edge(self, source: str, target: str, relation: str, *, at: Any = None) -> bool:
        """Record that ``source -relation-> target`` stops holding at ``at`` (now by default);
        the edge is kept for reads as of earlier times. Returns whether there was one."""
        given = None if at is None else _moment(at, "at", ValidationError)
        with self.store._transaction():
            rows = self.store._fetch(  # locked (PostgreSQL): one invalidation at a time
                "SELECT valid_from, valid_to FROM memstore_edges WHERE graph = ? AND source = ? "
                f"AND target = ? AND relation = ?{self.store._engine.lock_rows}",
                (self.name, source, target, relation),
            )
            if not rows:
                return False
            # Now is once the edge is this block's: after any change made before.
            moment = given if given is not None else _iso(_utcnow())
            if not rows[0][0] < moment < rows[0][1]:
                raise ValidationError(
                    f"at {moment} is not inside the edge's period [{rows[0][0]}, {rows[0][1]})"
                )
            self.store._fetch(
                "UPDATE memstore_edges SET valid_to = ?, updated_at = ? WHERE graph = ? "
                "AND source = ? AND target = ? AND relation = ?",
                (moment, _iso(_utcnow()), self.name, source, target, relation),
            )
            return True

    def nodes(self, *, kind: str | None = None, limit: int | None = None) -> list[Node]:
        """Nodes, of one kind if given, by id."""
        sql = "SELECT id, kind, props, created_at, updated_at FROM memstore_nodes WHERE graph = ?"
        params: list[Any] = [self.name]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if limit is not None:
            _check_count(limit, "limit")
        sql += " ORDER BY id LIMIT ?"
        params.append(self.store._engine.no_limit if limit is None else limit)
        return [_node(row) for row in self.store._fetch(sql, params)]

    def edges(
        self,
        *,
        source: str | None = None,
        target: str | None = None,
        relation: str | None = None,
        as_of: Any = None,
        every: bool = False,
        known_at: Any = None,
    ) -> list[Edge]:
        """Edges matching every endpoint and relation given, that hold ``as_of`` (now by
        default; ``every=True``: whenever they hold), as the store held them ``known_at``
        (now by default; as_of defaults to it)."""
        _, edges, view = _graph_view(self.name, known_at)
        valid, params = ("TRUE", []) if every else _edges_valid_at(as_of or known_at)
        sql = (
            "SELECT source, target, relation, props, weight, created_at, updated_at, "
            f"valid_from, valid_to FROM {edges} AS e WHERE graph = ? AND {valid}"
        )
        params = [*view[5:], self.name, *params]
        for column, value in (("source", source), ("target", target), ("relation", relation)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY source, relation, target"
        return [_edge(row) for row in self.store._fetch(sql, params)]

    def neighbors(
        self,
        node_id: str,
        *,
        direction: str = "out",
        relation: str | None = None,
        depth: int = 1,
        as_of: Any = None,
        known_at: Any = None,
    ) -> list[Node]:
        """Nodes reachable from ``node_id`` in at most ``depth`` steps, nearest first.

        ``direction`` is "out" (follow edges), "in" (against them) or "both".
        Cycles are fine: each node is listed once, at its shortest distance.
        Only edges that hold ``as_of`` (now by default) are followed.
        ``known_at`` walks the graph as the store held it then (nodes and
        edges changed or deleted since, as they were; ``as_of`` defaults to
        it): "what did the agent believe on March 3rd about March 1st".
        """
        valid, moments = _edges_valid_at(as_of or known_at, "e.")
        nodes, edges, view = _graph_view(self.name, known_at)
        if direction not in _DIRECTIONS:
            raise ValidationError(f"direction must be one of {_DIRECTIONS}, not {direction!r}")
        _check_count(depth, "depth")
        self.node(node_id, known_at=known_at)
        # One recursive step for every direction (PostgreSQL takes no more): an edge from
        # the node reached leads to its other end. (The graph in each term of "both": each
        # then reads one index, whether or not the planner has statistics.)
        reached, other = {
            "out": ("e.graph = ? AND e.source = walk.id", "e.target"),
            "in": ("e.graph = ? AND e.target = walk.id", "e.source"),
            "both": (
                "((e.graph = ? AND e.source = walk.id) OR (e.graph = ? AND e.target = walk.id))",
                "CASE WHEN e.source = walk.id THEN e.target ELSE e.source END",
            ),
        }[direction]
        rel = " AND e.relation = ?" if relation is not None else ""
        prefix = ""
        if known_at is not None:  # named once, read by each step of the walk
            prefix = f"known_nodes AS {nodes}, known_edges AS {edges}, "
            nodes, edges = "known_nodes", "known_edges"
        # Each node at its shortest distance first, then its row: read by key, as few
        # as the walk reached, the walk driving both joins (without statistics, SQLite
        # would read every edge, or node, of the graph and look each up in the walk).
        join = self.store._engine.join_in_order
        rows = self.store._fetch(
            f"WITH RECURSIVE {prefix}walk(id, depth) AS ("
            f"SELECT s.id, 0 FROM {nodes} AS s WHERE s.graph = ? AND s.id = ? UNION "
            f"SELECT {other}, walk.depth + 1 FROM walk {join} {edges} AS e "
            f"ON {reached}{rel} AND {valid} WHERE walk.depth < ?) "
            "SELECT n.id, n.kind, n.props, n.created_at, n.updated_at, w.d FROM "
            "(SELECT id, min(depth) AS d FROM walk WHERE id <> ? GROUP BY id) AS w "
            f"{join} {nodes} AS n ON n.graph = ? AND n.id = w.id ORDER BY w.d, n.id",
            [
                *view,
                self.name,
                node_id,
                *[self.name] * reached.count("?"),
                *([relation] if relation is not None else []),
                *moments,
                depth,
                node_id,
                self.name,
            ],
        )
        return [_node(row[:5], row[5]) for row in rows]

    def search(
        self, text: str, *, limit: int = 20, kinds: Sequence[str] | None = None, as_of: Any = None
    ) -> list[Hit]:
        """Full-text search over the graph's nodes (their id, kind and props' text) and edges
        (their relation and props' text), best first: Hits whose record is a Node or an
        Edge (key: the node's id, or "source relation target"). ``text`` is an FTS5 query
        (``fts_words`` makes one from plain words); ``kinds`` keeps nodes of those kinds;
        edges that do not hold ``as_of`` (now by default) are left out."""
        text = _check_match(text)
        _check_count(limit, "limit")
        engine = self.store._engine
        valid, moments = _edges_valid_at(as_of, "e.")
        kind_filter, kind_params = "TRUE", []
        if kinds is not None:
            kind_filter = engine.ids_in("n.kind")
            kind_params = [engine.ids(_strings(kinds, "kinds"))]
        clause = (
            f"t.graph = ? AND ((n.id IS NOT NULL AND {kind_filter}) "
            f"OR (e.source IS NOT NULL AND {'FALSE' if kinds is not None else valid}))"
        )
        params = [self.name, *kind_params, *([] if kinds is not None else moments)]
        rows = engine.layer_search(
            self.store,
            "memstore_graph_text",
            _GRAPH_ITEM_COLUMNS,
            (clause, params),
            text,
            limit,
            _graph_item_joins("t"),
        )
        hits = []
        for *row, rank, snippet in rows:
            key, record = _graph_item(row)
            hits.append(Hit(key, record, rank, snippet, -rank))
        return hits

    def subgraph(
        self,
        text: str,
        *,
        token_budget: int = 2000,
        depth: int = 1,
        as_of: Any = None,
        limit: int = 20,
        vector: Any = None,
    ) -> dict[str, Any]:
        """The part of the graph around a query that fits in ``token_budget`` tokens (4
        characters a token, as JSON): the nodes the search finds, best first, then their
        neighbours up to ``depth`` steps (nearest first), and the edges among them that hold
        ``as_of``. Returns ``{"nodes", "edges", "truncated", "tokens"}``: what an agent's
        context can take, from a graph of any size. With vectors (``vector``, the query's
        embedding, or a handle with ``embed``), the ``limit`` nearest nodes are found too,
        and the two lists fused by reciprocal rank, as ``Collection.hybrid`` does."""
        _check_count(token_budget, "token_budget")
        _check_count(depth, "depth")

        def nodes_of(found: Iterable[Hit | Neighbor]) -> list[Node]:  # an edge: its two
            return [
                node
                for hit in found
                for node in (
                    [hit.record]
                    if isinstance(hit.record, Node)
                    else [self.node(hit.record.source), self.node(hit.record.target)]
                )
            ]

        lists = [nodes_of(self.search(text, limit=limit, as_of=as_of))]
        if vector is not None or (self.embed is not None and self.vectors is not None):
            query = text if vector is None else vector
            lists.append(nodes_of(self.nearest(query, k=limit, as_of=as_of)))
        scores: dict[str, float] = {}
        order: dict[str, Node] = {}
        for found in lists:
            for rank, node_id in enumerate(dict.fromkeys(n.id for n in found), 1):
                scores[node_id] = scores.get(node_id, 0.0) + 1 / (RRF_K + rank)
            for node in found:
                order.setdefault(node.id, node)
        order = {i: order[i] for i in sorted(order, key=lambda i: -scores[i])}
        if depth:
            for node_id in list(order):
                for near in self.neighbors(node_id, direction="both", depth=depth, as_of=as_of):
                    order.setdefault(near.id, near)
        nodes, used, truncated = _within_budget(
            ({"id": n.id, "kind": n.kind, "props": n.props} for n in order.values()),
            token_budget,
            2,
        )
        engine = self.store._engine
        kept = engine.ids([n["id"] for n in nodes])
        valid, moments = _edges_valid_at(as_of)
        among = self.store._fetch(  # the edges among the nodes kept, by their index
            f"SELECT source, target, relation, props FROM memstore_edges WHERE graph = ? "
            f"AND {engine.ids_in('source')} AND {valid} AND {engine.ids_in('target')} "
            "ORDER BY source, relation, target",
            (self.name, kept, *moments, kept),
        )
        edges, used, cut = _within_budget(
            (
                {"source": s, "target": t, "relation": r, "props": json.loads(p)}
                for s, t, r, p in among
            ),
            token_budget,
            used,
        )
        return {"nodes": nodes, "edges": edges, "truncated": truncated or cut, "tokens": used}

    def cleanup(self, *, older_than: timedelta | float | str) -> int:
        """Forget the versions of nodes and edges replaced more than ``older_than`` ago
        (``known_at`` reads before then see less); return how many went. The graph's
        nodes and edges themselves stay. ``Store.cleanup(older_than=...)`` does this for
        every graph."""
        return _cleanup_graph_history(self.store, older_than, self.name)

    def delete_node(self, node_id: str) -> bool:
        """Delete a node and its edges; return whether there was one."""
        with self.store._transaction():
            self.store._fetch(
                "DELETE FROM memstore_edges WHERE graph = ? AND (source = ? OR target = ?)",
                (self.name, node_id, node_id),
            )
            return bool(
                self.store._fetch(
                    "DELETE FROM memstore_nodes WHERE graph = ? AND id = ? RETURNING id",
                    (self.name, node_id),
                )
            )

    def delete_edge(self, source: str, target: str, relation: str) -> bool:
        """Delete one edge; return whether there was one."""
        with self.store._transaction():
            return bool(
                self.store._fetch(
                    "DELETE FROM memstore_edges WHERE graph = ? AND source = ? AND target = ? "
                    "AND relation = ? RETURNING source",
                    (self.name, source, target, relation),
                )
            )

    def set_profile(self, name: str, data: Mapping[str, Any]) -> None:
        """Store a named profile (an agent's, a user's) with the graph."""
        _check_key(name)
        body = _dumps(_mapping(data, "data"))
        with self.store._transaction():
            self.store._fetch(
                "INSERT INTO memstore_profiles (graph, name, data, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (graph, name) DO UPDATE SET data = excluded.data, "
                "updated_at = excluded.updated_at",
                (self.name, name, body, _iso(_utcnow())),
            )

    def profile(self, name: str, default: Any = _MISSING) -> Any:
        """A profile's data; ``default`` if given, else NotFoundError, when there is none."""
        rows = self.store._fetch(
            "SELECT data FROM memstore_profiles WHERE graph = ? AND name = ?", (self.name, name)
        )
        if rows:
            return json.loads(rows[0][0])
        if default is _MISSING:
            raise NotFoundError(f"no profile {name!r} in graph {self.name!r}")
        return default

    def profiles(self) -> dict[str, Any]:
        """Every profile of the graph, by name."""
        rows = self.store._fetch(
            "SELECT name, data FROM memstore_profiles WHERE graph = ? ORDER BY name", (self.name,)
        )
        return {name: json.loads(data) for name, data in rows}

    def check(self) -> list[str]:
        """Dangling edges: edges whose source or target node is missing."""
        rows = self.store._fetch(
            "SELECT e.source, e.relation, e.target FROM memstore_edges AS e WHERE e.graph = ? "
            "AND (NOT EXISTS (SELECT 1 FROM memstore_nodes AS n WHERE n.graph = e.graph "
            "AND n.id = e.source) OR NOT EXISTS (SELECT 1 FROM memstore_nodes AS n "
            "WHERE n.graph = e.graph AND n.id = e.target))",
            (self.name,),
        )
        return [f"dangling edge {s} -{r}-> {t} in graph {self.name}" for s, r, t in rows]

    def export(self) -> dict[str, Any]:
        """The whole graph as a self-describing JSON envelope, for ``import_``."""
        return {
            "format": GRAPH_FORMAT,
            "version": GRAPH_FORMAT_VERSION,
            "graph": self.name,
            "exported_at": _iso(_utcnow()),
            "nodes": [{"id": n.id, "kind": n.kind, "props": n.props} for n in self.nodes()],
            "edges": [
                {
                    "source": e.source,
                    "target": e.target,
                    "relation": e.relation,
                    "props": e.props,
                    "weight": e.weight,
                    **({"valid_from": e.valid_from} if e.valid_from else {}),
                    **({"valid_to": e.valid_to} if e.valid_to else {}),
                }
                for e in self.edges(every=True)
            ],
            "profiles": self.profiles(),
        }

    def import_(self, envelope: Mapping[str, Any]) -> dict[str, int]:
        """Load an ``export()`` envelope (upserting, in one transaction); return counts."""
        if not isinstance(envelope, Mapping) or envelope.get("format") != GRAPH_FORMAT:
            raise SchemaError(f"not a {GRAPH_FORMAT} envelope")
        if envelope.get("version") != GRAPH_FORMAT_VERSION:
            raise SchemaError(
                f"graph envelope version {envelope.get('version')!r} is not one this memstore "
                f"reads ({GRAPH_FORMAT_VERSION})"
            )
        try:
            nodes, edges = list(envelope["nodes"]), list(envelope["edges"])
            profiles = dict(envelope.get("profiles", {}))
            with self.store._transaction():
                for n in nodes:
                    self.add_node(n["id"], n["kind"], n.get("props"))
                for e in edges:
                    self.add_edge(
                        e["source"],
                        e["target"],
                        e["relation"],
                        e.get("props"),
                        e.get("weight", 1.0),
                        valid_from=e.get("valid_from"),
                        valid_to=e.get("valid_to"),
                    )
                for name, data in profiles.items():
                    self.set_profile(name, data)
        except (KeyError, TypeError) as err:
            raise ValidationError(f"malformed graph envelope: {err!r}") from err
        return {"nodes": len(nodes), "edges": len(edges), "profiles": len(profiles)}


def _flush_accesses(store: Store) -> None:
    """Write the reads counted in memory to their records (access_count, last_accessed)."""
    pending, store._accesses = store._accesses, {}
    with store._transaction():
        for name, counts in pending.items():
            if store._load_meta(name) is None:
                continue  # dropped meanwhile
            store._run_many(
                f"UPDATE {quote_identifier(name)} SET access_count = access_count + ?, "
                "last_accessed = CASE WHEN last_accessed IS NULL OR last_accessed < ? THEN ? "
                "ELSE last_accessed END WHERE key = ?",
                [(count, last, last, key) for key, (count, last) in counts.items()],
            )


def _flush_cache_counts(store: Store, name: str) -> None:
    """Write a cache's pending hit and miss counts to memstore_cache_stats."""
    hits, misses = store._cache_counts.pop(name, (0, 0))
    if hits or misses:
        store._fetch(
            "INSERT INTO memstore_cache_stats (cache, hits, misses) VALUES (?, ?, ?) "
            "ON CONFLICT (cache) DO UPDATE SET hits = memstore_cache_stats.hits + excluded.hits, "
            "misses = memstore_cache_stats.misses + excluded.misses",
            (name, hits, misses),
        )


class Cache:
    """A TTL cache of JSON values; from ``Store.cache``.

    >>> cache = store.cache("llm", ttl=timedelta(hours=1))
    >>> cache.set("prompt:42", {"answer": "..."})
    >>> cache.get("prompt:42")

    >>> @cache.memoize(ttl=600)
    ... def embed(text): ...
    """

    def __init__(self, store: Store, name: str, ttl: timedelta | float | str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a cache name must be a non-empty string, not {name!r}")
        self.store = store
        self.name = name
        if ttl is not None:  # the cache's default, kept in the file for every handle
            seconds = _seconds(ttl, "ttl")
            with store._transaction():
                store._fetch(
                    "INSERT INTO memstore_cache_stats (cache, ttl_seconds) VALUES (?, ?) "
                    "ON CONFLICT (cache) DO UPDATE SET ttl_seconds = excluded.ttl_seconds",
                    (name, seconds),
                )

    def __repr__(self) -> str:
        return f"<memstore.Cache {self.name!r}>"

    @property
    def ttl(self) -> float | None:
        """The cache's default time to live in seconds (from the file), or None."""
        rows = self.store._fetch(
            "SELECT ttl_seconds FROM memstore_cache_stats WHERE cache = ?", (self.name,)
        )
        return rows[0][0] if rows else None

    def set(self, key: str, value: Any, *, ttl: timedelta | float | str | None = None) -> None:
        """Store a value (JSON) for ``ttl`` (default: the cache's; None: no expiry)."""
        _check_key(key)
        body = _dumps(value)
        with self.store._transaction():
            seconds = self.ttl if ttl is None else _seconds(ttl, "ttl")
            now = _utcnow()
            expires = None if seconds is None else _iso(now + timedelta(seconds=seconds))
            self.store._fetch(
                "INSERT INTO memstore_cache (cache, key, value, size, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cache, key) DO UPDATE SET "
                "value = excluded.value, size = excluded.size, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                (self.name, key, body, len(_utf8(body)), _iso(now), expires),
            )
            self._flush_stats()

    def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` when it is missing or expired (a miss)."""
        found = self._lookup(key)
        return default if found is _MISSING else found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(key) and self._lookup(key, count=False) is not _MISSING

    def delete(self, key: str) -> bool:
        """Remove an entry; return whether there was one."""
        _check_key(key)
        with self.store._transaction():
            return bool(
                self.store._fetch(
                    "DELETE FROM memstore_cache WHERE cache = ? AND key = ? RETURNING key",
                    (self.name, key),
                )
            )

    def clear(self) -> int:
        """Remove every entry; return how many."""
        with self.store._transaction():
            self._flush_stats()
            return len(
                self.store._fetch(
                    "DELETE FROM memstore_cache WHERE cache = ? RETURNING key", (self.name,)
                )
            )

    def expire(self) -> int:
        """Remove the expired entries; return how many."""
        return _delete_batches(
            self.store,
            "memstore_cache",
            "cache = ? AND expires_at <= ?",
            [self.name, _iso(_utcnow())],
            BATCH_SIZE,
            key="key",
        )

    def stats(self) -> dict[str, int]:
        """hits, misses (from every process), entries and bytes of live entries."""
        with self.store._transaction():
            self._flush_stats()
        now = _iso(_utcnow())
        entries, size = self.store._fetch(
            "SELECT count(*), coalesce(sum(size), 0) FROM memstore_cache WHERE cache = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (self.name, now),
        )[0]
        counts = self.store._fetch(
            "SELECT hits, misses FROM memstore_cache_stats WHERE cache = ?", (self.name,)
        )
        hits, misses = counts[0] if counts else (0, 0)
        return {"hits": hits, "misses": misses, "entries": entries, "bytes": int(size)}

    def memoize(
        self, ttl: timedelta | float | str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Cache a function's results by its arguments (which must be JSON) until ``ttl``.

        The key is the function's module and name with a SHA-256 of the
        arguments, so it is the same in every process and every run.
        """
        seconds = None if ttl is None else _seconds(ttl, "ttl")

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            prefix = f"memoize:{function.__module__}.{function.__qualname__}:"

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    arguments = json.dumps([args, kwargs], sort_keys=True, allow_nan=False)
                except (TypeError, ValueError) as err:
                    raise ValidationError(f"memoized arguments must be JSON: {err}") from err
                key = prefix + _sha256(_utf8(arguments))
                found = self._lookup(key)
                if found is not _MISSING:
                    return found
                result = function(*args, **kwargs)
                self.set(key, result, ttl=seconds)
                return result

            return wrapper

        return decorate

    def _lookup(self, key: str, *, count: bool = True) -> Any:
        _check_key(key)
        rows = self.store._fetch(
            "SELECT value FROM memstore_cache WHERE cache = ? AND key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (self.name, key, _iso(_utcnow())),
        )
        if count:
            counts = self.store._cache_counts.setdefault(self.name, [0, 0])
            counts[0 if rows else 1] += 1
            if sum(counts) >= CACHE_COUNTS_FLUSH:
                with self.store._transaction():
                    self._flush_stats()
        return json.loads(rows[0][0]) if rows else _MISSING

    def _flush_stats(self) -> None:
        """Add the hits and misses counted since the last flush to the file's; inside a
        transaction."""
        _flush_cache_counts(self.store, self.name)


# --------------------------------------------------------------------------
# Operations: export and import, backups, tenants
# --------------------------------------------------------------------------

EXPORT_FORMAT = "memstore.export"
EXPORT_VERSION = 1

#: The memory layers' tables, in an order that puts parents before children.
LAYER_TABLES = (
    "memstore_logs",
    "memstore_events",
    "memstore_event_snapshots",
    "memstore_threads",
    "memstore_messages",
    "memstore_merges",
    "memstore_checkpoints",
    "memstore_checkpoint_branches",
    "memstore_nodes",
    "memstore_edges",
    "memstore_profiles",
    "memstore_cache",
    "memstore_cache_stats",
    "memstore_versions",
    "memstore_version_counters",
    "memstore_version_vectors",
    "memstore_node_versions",
    "memstore_edge_versions",
    "memstore_lg_checkpoints",
    "memstore_lg_blobs",
    "memstore_lg_writes",
    "memstore_kv",
)


#: Exported as tables: the layers', then graph nodes' vectors, which memstore_vectors
#: keys by row ids of the file: exported by graph and node id instead.
_EXPORT_TABLES = (*LAYER_TABLES, "memstore_graph_vectors")
_GRAPH_VECTOR_COLUMNS = (
    "graph",
    "item",
    "ref",
    "relation",
    "target",
    "model",
    "part",
    "dim",
    "vector",
)
_GRAPH_VECTORS_SQL = (
    "SELECT g.graph, g.item, g.ref, g.relation, g.target, v.model, v.part, v.dim, v.vector "
    "FROM memstore_vectors AS v JOIN memstore_graph_text AS g ON g.id = v.record_id "
    "AND 'graph:' || g.graph = v.collection WHERE substr(v.collection, 1, 6) = 'graph:' "
    "ORDER BY v.id"
)


def _row_dict(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(columns, map(_to_json, row), strict=True))


def _to_json(value: Any) -> Any:
    """A column value for JSONL: BLOBs (compressed checkpoint states) as base64."""
    if isinstance(value, bytes):
        import base64  # only exports need it: imported when used

        return {"$base64": base64.b64encode(value).decode("ascii")}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$base64"}:
        import base64

        return base64.b64decode(value["$base64"])
    return value


def _write_jsonl(path: Path, rows: Iterable[Any], progress: Callable[[int], None] | None) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
            if progress and count % 1000 == 0:
                progress(1000)
    if progress:
        progress(count % 1000)
    return count


def _copy_pages(
    source: apsw.Connection,
    dest: apsw.Connection,
    progress: Callable[[int, int], None] | None,
    *,
    restarts: int = 3,
) -> None:
    """Copy a database with the backup API, in chunks so progress can be told.

    A write by another connection makes SQLite start a chunked backup over;
    after ``restarts`` of those, the rest is copied in one step, which holds
    one read snapshot and so always finishes, however busy the writers are.
    """
    with dest.backup("main", source, "main") as backup:
        backup.step(0)
        chunk = max(64, backup.page_count // 50)
        left = backup.remaining
        while not backup.done:
            backup.step(chunk if restarts > 0 else -1)
            if backup.remaining > left:  # started over: another connection wrote
                restarts -= 1
            left = backup.remaining
            if progress:
                progress(backup.page_count - backup.remaining, backup.page_count)


def copy(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    key: str | bytes | Key | None = None,
    plaintext: bool = False,
) -> dict[str, Any]:
    """Copy a store to another place, on either engine: a file to PostgreSQL, PostgreSQL
    to a file, a file to a file. ``memstore copy SRC DST`` does the same.

    >>> memstore.copy("agent.db", "postgresql://agent@db/memory")
    {'collections': {'events': 1200, 'notes': 35}, 'tables': {'memstore_logs': 1,
     'memstore_events': 310}, 'rows': 1546}

    File to file is a backup (every layer; ``destination`` must not exist).
    Otherwise the collections go, each with its declaration and every record
    with its key and timestamps (expired ones too), and the memory layers'
    tables both engines have, row for row, read a batch at a time, in one
    transaction on the destination: all or nothing, so a copy that fails or
    is stopped leaves the destination as it was and can simply be run again.
    The destination must hold none of the source's collections and layers'
    rows (a ConflictError before anything is written otherwise). The copy is
    checked: each collection's and table's number of rows, and ``check()`` on
    the destination. ``progress(rows_done, rows_total)``.

    ``key`` is the file's: an encrypted source file is read with it; its copy
    to a file is encrypted with the same key, and its records go to PostgreSQL
    (which encrypts at rest on its own terms, if at all) only with
    ``plaintext=True``. From PostgreSQL, ``key`` encrypts the new file.
    """
    source, destination = _file_path(source, "source"), _file_path(destination, "destination")
    from_file = isinstance(_engine_for(source), _SQLite)
    with Store(source, create=False, key=key if from_file else None) as src:
        if from_file and isinstance(_engine_for(destination), _SQLite):
            result = src.backup(destination)
            with Store(destination, create=False, key=src._key) as copied:
                counts = {n: _rows_of(copied, n) for n in copied.collections()}
                tables = {t: n for t in LAYER_TABLES if (n := _rows_of(copied, t))}
            rows = sum(counts.values()) + sum(tables.values())
            return {"collections": counts, "tables": tables, "rows": rows, "backup": result}
        _refuse_plaintext(src, plaintext, "PostgreSQL holds the records as the server keeps them")
        return _copy_collections(src, destination, progress, None if from_file else key)


def _refuse_plaintext(store: Store, plaintext: bool, why: str) -> None:
    """An encrypted store's records leave it unencrypted only when the caller says so."""
    if not isinstance(plaintext, bool):
        raise ValidationError(f"plaintext must be True or False, not {plaintext!r:.60}")
    if store.encrypted and not plaintext:
        raise EncryptionError(
            f"{store.path} is encrypted and {why}: pass plaintext=True (--plaintext) to "
            "write its records unencrypted"
        )


def _copy_collections(
    src: Store,
    destination: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None,
    key: str | bytes | Key | None,
) -> dict[str, Any]:
    """copy() between engines: the collections, and the memory layers' tables both have;
    ``key`` encrypts a destination file."""
    names = src.collections()
    counts = {name: _rows_of(src, name) for name in names}
    tables = {t: n for t in LAYER_TABLES if (n := _rows_of(src, t))}
    total = sum(counts.values()) + sum(tables.values()) + _rows_of(src, "memstore_vectors")
    done = 0
    with Store(destination, key=key) as dst:
        clashes = [repr(n) for n in names if n in dst]
        clashes += [t for t in tables if _rows_of(dst, t)]
        if clashes:
            raise ConflictError(
                f"the destination holds {', '.join(clashes)} already; copy into a store "
                "without them (nothing was copied)"
            )

        def advance(rows: int) -> None:
            nonlocal done
            done += rows
            if progress:
                progress(done, total)

        with dst._transaction():
            dst._engine.defer_references(dst)
            for name in names:
                meta = src._require_meta(name)
                into = dst.collection(
                    name,
                    fields=meta.fields,
                    fts=meta.fts,
                    ttl=meta.ttl_seconds,
                    indexes=_index_dicts(meta.indexes),
                    history=meta.history or None,
                    temporal=meta.temporal or None,
                    hygiene=meta.hygiene,
                    vectors=meta.vectors,
                    time_indexes=meta.time_indexes,
                )
                into.warn_unknown_fields = False
                # A temporal collection's rows carry their validity, and superseded facts
                # the key they are facts of (import_rows takes them so).
                validity = ("valid_from", "valid_to", "fact_of") if meta.temporal else ()
                records = src._stream(
                    f"SELECT key, body, created_at, updated_at, expires_at"
                    f"{''.join(', ' + column for column in validity)} "
                    f"FROM {quote_identifier(name)} ORDER BY id",
                    (),
                    functools.partial(_copied_record, validity),
                )
                while batch := list(islice(records, BATCH_SIZE)):
                    into.import_rows(batch)
                    advance(len(batch))
                if meta.hygiene is not None:  # what hygiene keeps beside each record
                    kept = ", ".join(_HYGIENE_COLUMNS)
                    dst._run_many(
                        f"UPDATE {quote_identifier(name)} SET "
                        + ", ".join(f"{column} = ?" for column in _HYGIENE_COLUMNS)
                        + " WHERE key = ?",
                        src._stream(f"SELECT {kept}, key FROM {quote_identifier(name)}", (), tuple),
                    )
            # A layer's rows, column for column, in any order (references are checked at
            # commit); threads after their messages, so that their counts stay the source's
            # (the messages' triggers count in the rows of threads already there).
            for table in sorted(tables, key=lambda table: table == "memstore_threads"):
                wanted = set(dst._engine.insertable(dst, table))
                columns = [c for c in src._engine.insertable(src, table) if c in wanted]
                listed = ", ".join(columns)
                marks = ", ".join(["?"] * len(columns))
                insert = f"INSERT INTO {table} ({listed}) VALUES ({marks})"
                convert = _copied_row(table, columns, dst._engine)
                rows = src._stream(f"SELECT {listed} FROM {table}", (), convert)
                while batch := list(islice(rows, BATCH_SIZE)):
                    dst._run_many(insert, batch)
                    advance(len(batch))
                dst._engine.after_copy(dst, table)
            vectors = _copy_vectors(src, dst, names, advance)
            for name, count in {**counts, **tables, **vectors}.items():
                copied = _rows_of(dst, name)
                if copied != count:
                    raise MemstoreError(
                        f"{name}: {copied} rows copied of {count}; nothing was copied"
                    )
        problems = dst.check()
        if problems:
            raise MemstoreError(f"the copy has problems: {'; '.join(problems)}")
    return {"collections": counts, "tables": {**tables, **vectors}, "rows": total}


#: A vector's columns copy() takes as they are (its record's id is the destination's).
_VECTOR_COLUMNS = "v.model, v.part, v.dim, v.vector, v.embedded_at"


def _copy_vectors(
    src: Store, dst: Store, names: list[str], advance: Callable[[int], None]
) -> dict[str, int]:
    """copy()'s vectors, after the records and graphs they belong to, each given to its
    record's row in the destination (found by key, or a graph item by what names it):
    {"memstore_vectors": how many} when there are any."""
    count = _rows_of(src, "memstore_vectors")
    if not count:
        return {}
    insert = (
        "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, vector, "
        "embedded_at) SELECT ?, t.id, ?, ?, ?, ?, ? FROM {} WHERE {}"
    )
    for name in names:
        table = quote_identifier(name)
        rows = src._stream(  # the insert's parameters: the collection first, the key last
            f"SELECT ?, {_VECTOR_COLUMNS}, t.key FROM memstore_vectors AS v "
            f"JOIN {table} AS t ON t.id = v.record_id WHERE v.collection = ?",
            (name, name),
            tuple,
        )
        while batch := list(islice(rows, BATCH_SIZE)):
            dst._run_many(insert.format(f"{table} AS t", "t.key = ?"), batch)
            advance(len(batch))
    items = src._stream(
        f"SELECT v.collection, {_VECTOR_COLUMNS}, g.graph, g.item, g.ref, g.relation, g.target "
        "FROM memstore_vectors AS v JOIN memstore_graph_text AS g "
        "ON v.collection = 'graph:' || g.graph AND g.id = v.record_id",
        (),
        tuple,
    )
    where = "t.graph = ? AND t.item = ? AND t.ref = ? AND t.relation = ? AND t.target = ?"
    while batch := list(islice(items, BATCH_SIZE)):
        dst._run_many(insert.format("memstore_graph_text AS t", where), batch)
        advance(len(batch))
    return {"memstore_vectors": count}


def _copied_record(validity: tuple[str, ...], row: Sequence[Any]) -> dict[str, Any]:
    """A collection's row as copy() gives it to import_rows (its validity, if temporal)."""
    return {
        "key": row[0],
        "record": json.loads(row[1]),
        "created_at": row[2],
        "updated_at": row[3],
        "expires_at": row[4],
        **dict(zip(validity, row[5:], strict=True)),
    }


def _rows_of(store: Store, table: str) -> int:
    return int(store._fetch(f"SELECT count(*) FROM {quote_identifier(table)}")[0][0])


def _copied_row(table: str, columns: list[str], into: _Engine) -> Callable[[Any], tuple[Any, ...]]:
    """How copy() writes a layer's row: as it is, but a checkpoint's compressed state
    inflated for an engine that does not compress states (its filters read the text)."""
    if table != "memstore_checkpoints" or into.compresses_states:
        return tuple
    state, packed = columns.index("state"), columns.index("state_zlib")

    def inflated(row: Any) -> tuple[Any, ...]:
        values = list(row)
        if values[packed] is not None:
            values[state] = _zlib().decompress(values[packed]).decode("utf-8")
            values[packed] = None
        return tuple(values)

    return inflated


def encrypt(path: str | os.PathLike[str], key: str | bytes | Key) -> dict[str, Any]:
    """Encrypt a plain store file in place with ``key``; return ``{"path", "bytes",
    "encrypted"}``.

    >>> memstore.encrypt("agent.db", memstore.Key.from_env("MEMSTORE_KEY"))

    The file is written again, encrypted, beside itself, checked, synced and
    then renamed over the original in one step: a crash at any moment leaves
    the plain file or the encrypted one, whole (at worst with a stray
    ``<path>.memstore-rewrite`` to delete). No other process may have the
    store open meanwhile (BusyError otherwise; nothing is changed).
    """
    target, secret = _file_path(path), Key(key)
    _require_ciphers()
    if _encrypted_look(target):
        raise EncryptionError(f"{target} is encrypted already: change its key with rekey")
    return _rewrite(target, None, secret)


def rekey(
    path: str | os.PathLike[str], key: str | bytes | Key, new_key: str | bytes | Key
) -> dict[str, Any]:
    """Change an encrypted store file's key from ``key`` to ``new_key``, as ``encrypt``
    does (a new file renamed over the old in one step)."""
    return _rewrite(_file_path(path), Key(key), Key(new_key))


def decrypt(
    path: str | os.PathLike[str], dest: str | os.PathLike[str], key: str | bytes | Key
) -> dict[str, Any]:
    """Write a plain copy of the encrypted store ``path`` to ``dest`` (which must not
    exist); return ``{"path", "bytes", "encrypted"}``. The original stays as it is;
    ``dest`` appears whole, checked, or not at all."""
    source, target = _file_path(path), _file_path(dest, "dest")
    if os.path.exists(target):
        raise ValidationError(f"{target} exists; decrypt to a new file")
    secret = Key(key)
    conn = _open_to_copy(source, secret)
    try:
        return _write_beside(target, lambda tmp: _vacuum_into(conn, tmp, None, True), None)
    finally:
        conn.close()


def _open_to_copy(path: str, key: Key | None) -> apsw.Connection:
    """A connection to a store file that ``_vacuum_into`` copies from (with ``key``,
    which _connect refuses where apsw has no ciphers)."""
    if not os.path.isfile(path):
        raise NotFoundError(f"no store at {path}")
    return _connect(path, synchronous="FULL", timeout=5.0, create=False, key=key)


def _rewrite(path: str, old: Key | None, new: Key) -> dict[str, Any]:
    """encrypt and rekey: the store written again with ``new`` and renamed over itself.

    The file is taken alone first: leaving WAL mode waits for no one and fails while
    another connection has the file open (its WAL then checkpointed and gone, so no
    WAL of the old file can later be applied to the new one), and exclusive locking
    keeps newcomers out until the new file is in place. (encrypt has checked that
    apsw has ciphers; rekey's key is refused by _connect where it has none.)
    """
    conn = _open_to_copy(path, old)
    in_use = BusyError(f"{path} is in use by another connection: close it first (nothing changed)")
    try:
        conn.set_busy_timeout(0)
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchall()[0][0]
        except apsw.BusyError as err:
            raise in_use from err
        if mode != "delete":
            raise in_use
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE; COMMIT")  # held until this connection closes
        return _write_beside(path, lambda tmp: _vacuum_into(conn, tmp, new, False), new)
    except apsw.BusyError as err:
        raise in_use from err
    except apsw.Error as err:
        raise _translate(err) from err
    finally:
        conn.close()


def _write_beside(target: str, write: Callable[[str], None], key: Key | None) -> dict[str, Any]:
    """Write a file with ``write(temporary path)`` beside ``target``, check it (read with
    ``key``), sync it and rename it to ``target`` in one step; the temporary file goes
    if anything fails."""
    tmp = f"{target}.memstore-rewrite"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)  # a crashed rewrite's
    try:
        write(tmp)
        problems = _verify_copy(tmp, key)
        if problems:
            raise MemstoreError(f"the new file failed its check: {'; '.join(problems)}.")
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    folder = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return {"path": target, "bytes": os.path.getsize(target), "encrypted": key is not None}


def migrate(
    path: str | os.PathLike[str], *, backup: bool = True, key: str | bytes | Key | None = None
) -> dict[str, Any]:
    """Upgrade a store file to this memstore's schema, after backing it up beside itself.

    >>> memstore.migrate("agent.db")
    {'from': 5, 'to': 6, 'backup': 'agent.db.v5-20261122T101500.bak'}

    Opening a Store migrates as well; this first copies the file (with the
    backup API, so a live file is copied safely) to
    ``<path>.v<old version>-<UTC time>.bak`` when there is anything to
    upgrade and ``backup`` is true. Returns ``{"from", "to", "backup"}``
    (``backup`` is None when nothing was copied). An encrypted file needs
    its ``key``, and its backup is encrypted with it.
    """
    target = _file_path(path)
    secret = _as_key(key)
    if not os.path.isfile(target):
        raise NotFoundError(f"no store at {target}")
    try:
        probe = apsw.Connection(_sqlite_name(target), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            _apply_key(probe, secret)
            version = probe.execute("PRAGMA user_version").fetchall()[0][0]
        finally:
            probe.close()
    except apsw.Error as err:
        raise _open_error(target, err, secret) from err
    assert isinstance(version, int)
    backup_path = None
    if backup and version < SCHEMA_VERSION:
        backup_path = f"{target}.v{version}-{_utcnow():%Y%m%dT%H%M%S}.bak"
        try:
            source = apsw.Connection(_sqlite_name(target))
            copy = apsw.Connection(_sqlite_name(backup_path))
            try:
                _apply_key(source, secret)
                _apply_key(copy, secret)
                _copy_pages(source, copy, None)
            finally:
                copy.close()
                source.close()
        except apsw.Error as err:
            raise _translate(err) from err
    with Store(target, key=secret) as store:
        return {"from": version, "to": store.schema_version, "backup": backup_path}


def _verify_copy(path: str, key: Key | None = None) -> list[str]:
    """Why a file is not a sound memstore copy (read with ``key``); [] when it is."""
    if not os.path.isfile(path):
        return ["it does not exist"]
    try:
        conn = apsw.Connection(_sqlite_name(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as err:
        return [f"it cannot be opened ({err})"]
    try:
        _apply_key(conn, key)
        problems = [
            f"integrity check: {r[0]}"
            for r in conn.execute("PRAGMA integrity_check")
            if r[0] != "ok"
        ]
        app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
        version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    except apsw.NotADBError:
        if key is not None:
            return ["it cannot be read with this key (a wrong key, or a plain file)"]
        return ["it cannot be read as SQLite (encrypted? give its key)"]
    except apsw.Error as err:
        return [f"it cannot be read as SQLite ({err})"]
    finally:
        conn.close()
    if app_id != APPLICATION_ID:
        problems.append("it is not a memstore file")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        problems.append(
            f"its schema version {version} is newer than this memstore's ({SCHEMA_VERSION})"
        )
    return problems


class _BadFile(Exception):
    """A JSONL file of an export that cannot be read; the import skips it."""


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file, one at a time: memory stays flat whatever its size."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise _BadFile(f"line {number} is not valid JSON: {err}") from err
                if not isinstance(row, dict):
                    raise _BadFile(f"line {number} is not a JSON object")
                yield row
    except (OSError, UnicodeDecodeError) as err:
        raise _BadFile(f"it cannot be read: {err}") from err


class _ExportFile(NamedTuple):
    """One file an export's manifest names."""

    kind: Literal["collection", "table"]
    name: str
    path: Path
    declaration: dict[str, Any]


def _read_manifest(root: Path) -> list[_ExportFile]:
    """The files of an export, checked: collections first, then layer tables, parents first."""
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise ValidationError(
            f"{root} is not a memstore export (no manifest.json); the file layouts of older "
            "stores are read by `memstore import` (the memstore_legacy module)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SchemaError(f"{manifest_path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise SchemaError(f"{manifest_path} is not a memstore export manifest")
    if manifest.get("version") != EXPORT_VERSION:
        raise SchemaError(
            f"export format version {manifest.get('version')!r} is not one "
            f"this memstore reads ({EXPORT_VERSION})"
        )
    try:
        files = [
            _ExportFile(
                "collection",
                check_collection_name(name),
                root / entry["file"],
                {
                    "fields": entry.get("fields") or None,
                    "fts": entry.get("fts") or None,
                    "ttl": entry.get("ttl_seconds"),
                    "history": entry.get("history"),
                    "indexes": entry.get("indexes") or None,
                    "vectors": entry.get("vectors") or None,
                    "temporal": entry.get("temporal") or None,
                    "time_indexes": entry.get("time_indexes"),
                },
            )
            for name, entry in manifest.get("collections", {}).items()
        ]
        tables = manifest.get("tables", {})
        for table in tables:
            if table not in _EXPORT_TABLES:
                raise SchemaError(f"unknown table {table!r} in the export manifest")
        files += [
            _ExportFile("table", table, root / tables[table]["file"], {})
            for table in _EXPORT_TABLES
            if table in tables
        ]
    except (KeyError, TypeError, AttributeError) as err:
        raise SchemaError(f"{manifest_path} is malformed: {err!r}") from err
    inside = root.resolve()
    for file in files:
        if inside not in file.path.resolve().parents:
            raise SchemaError(f"{manifest_path} names a file outside the export: {file.path}")
    return files


# Layer tables whose INTEGER PRIMARY KEY is only a row number: their rows are
# matched by these columns instead, and get new ids where they are imported.
_NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "memstore_events": ("log", "event_id"),
    "memstore_messages": ("thread_id", "position"),
    "memstore_merges": ("branch_id", "into_id", "first_position"),
    "memstore_versions": ("collection", "key", "valid_from", "archived_at"),
    "memstore_node_versions": ("graph", "node", "known_from", "known_to"),
    "memstore_edge_versions": ("graph", "source", "relation", "target", "known_from", "known_to"),
}

# How a row whose key is there already is taken, per table: by default, not at all.
_ON_CONFLICT = {
    "memstore_version_counters": (
        "ON CONFLICT (collection, key) DO UPDATE SET last = excluded.last "
        "WHERE excluded.last > memstore_version_counters.last"
    ),
}


class _LayerImport:
    """Merges exported layer rows into a store that may hold rows already.

    Rows are matched by their natural keys (a thread's id, an event's id in
    its log, a message's position in its thread); integer ids are given anew
    and references to them remapped (``merged_from``); an event log that
    already has events gets the new ones appended after its last sequence
    number, its snapshots following. Counts are of rows really written.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ids: dict[str, dict[Any, Any]] = {}  # table -> exported id -> id here
        self.seqs: dict[Any, dict[Any, Any]] = {}  # log -> exported seq -> seq here
        self.busy_logs = {r[0] for r in store._fetch("SELECT DISTINCT log FROM memstore_events")}
        self.threads: set[Any] = set()  # threads given messages: recounted at the end
        self.columns: dict[str, set[str]] = {}
        self._last_id: Any = None  # the rowid of the row _insert wrote last

    def rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Import a table's rows; return how many were written."""
        if table == "memstore_graph_vectors":  # each to its node or edge, imported before
            return sum(
                len(
                    self.store._fetch(
                        "INSERT INTO memstore_vectors (collection, record_id, model, part, dim, "
                        "vector) SELECT 'graph:' || g.graph, g.id, ?, ?, ?, ? "
                        "FROM memstore_graph_text AS g WHERE g.graph = ? AND g.item = ? "
                        "AND g.ref = ? AND g.relation = ? AND g.target = ? "
                        "ON CONFLICT DO NOTHING RETURNING id",
                        [
                            *(_from_json(row.get(c)) for c in ("model", "part", "dim", "vector")),
                            *(row.get(c) for c in ("graph", "item", "ref", "relation", "target")),
                        ],
                    )
                )
                for row in rows
            )
        if table not in self.columns:
            self.columns[table] = set(self.store._engine.insertable(self.store, table))
        written = 0
        for row in rows:
            taken = {k: _from_json(v) for k, v in row.items() if k in self.columns[table]}
            written += self._row(table, taken)
        return written

    def _row(self, table: str, row: dict[str, Any]) -> int:
        natural = _NATURAL_KEYS.get(table)
        if natural is None:
            if table == "memstore_event_snapshots" and row.get("log") in self.seqs:
                row["seq"] = self.seqs[row["log"]].get(row.get("seq"), row.get("seq"))
            return self._insert(table, row, _ON_CONFLICT.get(table, "ON CONFLICT DO NOTHING"))
        old_id = row.pop("id", None)
        if table == "memstore_messages":
            if row.get("merged_from") is not None:
                row["merged_from"] = self.ids.get(table, {}).get(row["merged_from"])
            self.threads.add(row.get("thread_id"))
        same = self.store._engine.same
        found = self.store._fetch(
            f"SELECT id, {'seq' if table == 'memstore_events' else 'NULL'} "
            f"FROM {quote_identifier(table)} WHERE "
            + " AND ".join(f"{quote_identifier(c)} {same} ?" for c in natural),
            [row.get(c) for c in natural],
        )
        if table == "memstore_events":
            self._sequence(row, found[0][1] if found else None)
        if found:
            self.ids.setdefault(table, {})[old_id] = found[0][0]
            return 0
        written = self._insert(table, row, "", "id")
        self.ids.setdefault(table, {})[old_id] = self._last_id
        if table == "memstore_events":
            self.store._fetch(
                "UPDATE memstore_logs SET last_seq = CASE WHEN last_seq < ? THEN ? "
                "ELSE last_seq END WHERE name = ?",
                (row.get("seq"), row.get("seq"), row.get("log")),
            )
        return written

    def _sequence(self, row: dict[str, Any], existing: int | None) -> None:
        """An event's sequence number here: the one it has if it is here already (``existing``),
        its own in a log that was empty, else the next."""
        log, seq = row.get("log"), row.get("seq")
        seqs = self.seqs.setdefault(log, {})
        if existing is not None:
            row["seq"] = existing
        elif log in self.busy_logs:  # appended after what the log had, in their order
            last = self.store._fetch("SELECT last_seq FROM memstore_logs WHERE name = ?", (log,))
            row["seq"] = (last[0][0] if last else 0) + 1
        seqs[seq] = row["seq"]

    def _insert(self, table: str, row: dict[str, Any], conflict: str, returning: str = "1") -> int:
        names = list(row)
        done = self.store._fetch(
            f"INSERT INTO {quote_identifier(table)} ({', '.join(map(quote_identifier, names))}) "
            f"VALUES ({', '.join('?' for _ in names)}) {conflict} RETURNING {returning}",
            [row[n] for n in names],
        )
        self._last_id = done[0][0] if done else None
        return len(done)

    def finish(self) -> None:
        """Recount the threads given messages: their rows were counted by triggers."""
        for thread_id in self.threads:
            _recount_thread(self.store._fetch, thread_id)


_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


class Tenants:
    """One SQLite file per tenant in a directory: isolation by construction.

    >>> tenants = memstore.Tenants("data/tenants", max_size=50 * 2**20)
    >>> store = tenants.open("acme")          # data/tenants/acme.db
    >>> tenants.list(); tenants.stats(); tenants.erase("acme")

    ``max_size`` is each tenant's quota in bytes, enforced by SQLite: a write
    past it raises QuotaError, leaving the tenant's data as it was.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_size: int | None = None, **options: Any
    ) -> None:
        self.directory = Path(_file_path(directory, "directory"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_size = max_size
        self.options = options
        self._stores: dict[str, Store] = {}

    def __enter__(self) -> Tenants:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, tenant_id: str) -> Path:
        """The tenant's file."""
        if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id) or ".." in tenant_id:
            raise ValidationError(
                f"invalid tenant id {tenant_id!r}: letters, digits, '_', '-' and '.', "
                "starting with a letter or digit, at most 128"
            )
        return self.directory / f"{tenant_id}.db"

    def open(self, tenant_id: str) -> Store:
        """The tenant's store, created on first use."""
        path = self.path(tenant_id)
        store = self._stores.get(tenant_id)
        if store is None or store._conn is None:
            store = Store(path, max_size=self.max_size, **self.options)
            self._stores[tenant_id] = store
        return store

    def list(self) -> list[str]:
        """The tenants with a file in the directory."""
        return sorted(p.stem for p in self.directory.glob("*.db") if _TENANT_ID.match(p.stem))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per tenant: bytes on disk (with the WAL), collections and records."""
        result = {}
        for tenant_id in self.list():
            was_open = tenant_id in self._stores
            store = self.open(tenant_id)
            path = self.path(tenant_id)
            wal = Path(f"{path}-wal")
            names = store.collections()
            result[tenant_id] = {
                "bytes": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
                "quota": self.max_size,
                "collections": len(names),
                "records": sum(store.collection(n).count() for n in names),
            }
            if not was_open:  # many tenants must not mean as many open files
                self._stores.pop(tenant_id).close()
        return result

    def erase(self, tenant_id: str) -> bool:
        """Delete a tenant, file and all; return whether it existed."""
        path = self.path(tenant_id)
        store = self._stores.pop(tenant_id, None)
        if store is not None:
            store.close()
        existed = path.exists()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return existed

    def close(self) -> None:
        """Close every open tenant store."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()


class StorePool:
    """Stores for many threads at once: each ``with pool.store() as store:`` takes a
    store no other thread is using, and gives it back at the block's end.

    >>> pool = memstore.StorePool("postgresql://agent@db/memory", size=8)
    >>> with pool.store() as store:
    ...     store.collection("notes").put("a", {"text": "..."})
    >>> pool.close()

    A Store is one connection, and runs one call at a time: threads sharing one
    wait for each other. A pool opens up to ``size`` stores of the same database
    (``options`` are Store's), the first at once (a wrong path or an unreachable
    server fails here), the others as threads ask for more; when all are in use,
    ``store()`` waits up to ``wait`` seconds for one to come back, then raises
    BusyError. A store given back closed, or inside a transaction it entered by
    hand, is closed rather than handed out again. On PostgreSQL the threads' calls
    run at once on the server; on a file, readers do (writers take turns, as
    SQLite makes any two connections do). ``close()`` closes the stores not in
    use, and those in use as they come back.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, size: int = 4, wait: float = 5.0, **options: Any
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1000:
            raise ValidationError(f"size must be a whole number from 1 to 1000, not {size!r:.60}")
        if not 0 <= _finite(wait, "wait") <= 86400:
            raise ValidationError(f"wait must be 0 to 86400 seconds, not {wait!r:.60}")
        self.path = _file_path(path, "path")
        if self.path == ":memory:":
            raise ValidationError(
                "a pool's stores share one database, and each :memory: store is its own: "
                "give a file's path or a PostgreSQL URL"
            )
        self.size, self.wait, self.options = size, float(wait), options
        self._ready = threading.Condition()
        self._idle = [Store(self.path, **options)]
        self._open = 1  # stores open, idle or in use
        self._closed = False

    def __repr__(self) -> str:
        return f"<memstore.StorePool {without_password(self.path)!r} {self._open}/{self.size} open>"

    def __enter__(self) -> StorePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def store(self) -> Iterator[Store]:
        """A store for this thread's block: one no other thread is using."""
        store = self._take()
        try:
            yield store
        finally:
            self._give_back(store)

    def _take(self) -> Store:
        deadline = time.monotonic() + self.wait
        with self._ready:
            while True:
                if self._closed:
                    raise MemstoreError("the pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self.size:
                    self._open += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BusyError(
                        f"all {self.size} stores of the pool were in use for {self.wait:g} s: "
                        "give it a larger size, or hold each store for less time"
                    )
                self._ready.wait(left)
        try:  # connecting takes a while: other threads go on meanwhile
            return Store(self.path, **self.options)
        except BaseException:
            with self._ready:
                self._open -= 1
                self._ready.notify()
            raise

    def _give_back(self, store: Store) -> None:
        with self._ready:
            spent = self._closed or store._conn is None or bool(store._depth)
            if spent:
                self._open -= 1
            else:
                self._idle.append(store)
            self._ready.notify()
        if spent:  # closing (a server's goodbye) holds up no other thread
            with contextlib.suppress(MemstoreError):
                store.close()

    def close(self) -> None:
        """Close the stores not in use; those in use are closed as they come back."""
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._ready.notify_all()
        for store in idle:
            store.close()


# --------------------------------------------------------------------------
# AsyncStore: the same API for asyncio, on worker threads
# --------------------------------------------------------------------------

# Per task (and the tasks it starts): the transaction it is inside, per AsyncStore.
_ASYNC_OWNERS: contextvars.ContextVar[Mapping[int, object] | None] = contextvars.ContextVar(
    "memstore_async_owners", default=None
)
# Methods whose sync result is an iterator: their async form is an async iterator.
_ASYNC_STREAMS = frozenset({"rows", "stream"})
# Sync-only helpers, with what to use instead.
_ASYNC_MISSING = {
    "memoize": "memoize wraps sync functions; await cache.get() and cache.set() instead",
    "from_env": "use AsyncStore(os.environ['MEMSTORE_PATH'])",
}


class _Job(NamedTuple):
    call: Callable[[], Any]
    owner: object | None  # the transaction the job belongs to, if any
    future: Any  # a concurrent.futures.Future, or a _LoopWaiter
    bare: bool = False  # runs without a Store (opening or closing one)


class _LoopWaiter:
    """A job's outcome for a coroutine awaiting it: the worker's side of an asyncio future.

    Has the three methods of ``concurrent.futures.Future`` the worker calls. A
    job whose caller was cancelled before it started is skipped; one that has
    started runs on, its outcome dropped. The result reaches the loop by
    ``call_soon_threadsafe``, and nowhere when the loop has closed meanwhile.
    """

    __slots__ = ("_future", "_loop")

    def __init__(self, loop: Any, future: Any) -> None:
        self._loop = loop
        self._future = future

    def set_running_or_notify_cancel(self) -> bool:
        return not self._future.cancelled()

    def set_result(self, result: Any) -> None:
        self._deliver(self._future.set_result, result)

    def set_exception(self, error: BaseException) -> None:
        self._deliver(self._future.set_exception, error)

    def _deliver(self, setter: Callable[[Any], None], value: Any) -> None:
        def settle() -> None:
            if not self._future.done():  # cancelled while running
                setter(value)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            self._loop.call_soon_threadsafe(settle)


class _Lane:
    """One worker thread of an AsyncStore and the Store (connection) it alone uses."""

    def __init__(self, runner: AsyncStore, index: int, lock: threading.Lock) -> None:
        self.runner, self.index = runner, index
        self.wake = threading.Condition(lock)  # a job for it, or the store closed
        self.idle = False  # waiting for a job
        self.store: Store | None = None
        self.own: collections.deque[_Job] = collections.deque()  # jobs for this lane only
        self.running: object | None = None  # the transaction the lane is inside
        self.thread: threading.Thread | None = None


# The lane whose worker thread this is (None on any other thread).
_LANE = threading.local()


class AsyncStore:
    """memstore for asyncio: every ``Store`` operation as an awaitable.

    >>> async with memstore.AsyncStore("agent.db") as store:
    ...     notes = await store.collection("notes", fts=["text"])
    ...     await notes.put("n1", {"text": "remember the milk"})
    ...     audit = await store.event_log("audit")
    ...     async with store.transaction():
    ...         await notes.delete("n1")
    ...         await audit.append({"kind": "deleted"})
    ...     async for row in notes.rows(limit=100):
    ...         ...

    A worker thread owns the store and runs its calls in the order they
    arrive, so the event loop never waits on the database, and many
    coroutines can share one AsyncStore. The sync ``Store`` does the work:
    ``AsyncStore`` and the handles it returns (``AsyncHandle``) only carry
    calls to it.

    While a coroutine is inside ``async with store.transaction():``, the
    block's own calls, and those of tasks it starts, run inside it, on the
    worker that began it; other coroutines' calls do not (with one worker,
    they wait until the block ends). A block left by an exception or by
    cancellation is rolled back, its calls finished first.

    ``workers=n`` (a file or PostgreSQL) runs calls on up to ``n`` worker
    threads, each with its own connection, opened when first needed: a call
    goes to a worker outside any transaction, so one coroutine's slow query
    or open transaction holds up no other. Calls then run concurrently and
    in no guaranteed order between coroutines (each coroutine's own calls
    still run one after another), as with ``StorePool`` in threads. On SQLite
    the file takes one writer at a time; on PostgreSQL writers run together.

    ``path`` is a file, a PostgreSQL URL or ``":memory:"`` with ``Store``'s
    options, or an open ``Store`` (which ``close()`` then leaves open: it may
    be shared with threads). Opening happens on a worker: ``async with``, or
    ``await AsyncStore.open(...)``, reports an error opening at once.
    """

    def __init__(
        self, path: str | os.PathLike[str] | Store = ":memory:", *, workers: int = 1, **options: Any
    ) -> None:
        import concurrent.futures

        self._closed = False
        if isinstance(path, Store) and options:
            raise ValidationError("options are for a file AsyncStore opens, not an open Store")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValidationError(f"workers must be an int of at least 1, not {workers!r}")
        name = path.path if isinstance(path, Store) else _file_path(path)
        if workers > 1 and (isinstance(path, Store) or name == ":memory:"):
            raise ValidationError(
                "workers > 1 needs a file or a PostgreSQL URL that each worker opens: "
                + (
                    "an open Store is one connection"
                    if isinstance(path, Store)
                    else "each connection to ':memory:' is a database of its own"
                )
            )
        self._owns_store = not isinstance(path, Store)
        self._path, self._options = path, options
        self._ready = threading.Lock()  # guards the jobs, the lanes' state and _closed
        self._shared: collections.deque[_Job] = collections.deque()  # for any free lane
        self._lanes = [_Lane(self, i, self._ready) for i in range(workers)]
        self._lane_of: dict[int, _Lane] = {}  # id of a running transaction -> its lane
        for lane in self._lanes:
            lane.thread = threading.Thread(
                target=self._work, args=(lane,), name=f"memstore {name} {lane.index}", daemon=True
            )
            lane.thread.start()
        self._thread = self._lanes[0].thread
        self._opened: concurrent.futures.Future[Store]
        if isinstance(path, Store):
            self._lanes[0].store = path
            self._opened = concurrent.futures.Future()
            self._opened.set_result(path)
        else:

            def open_() -> Store:
                try:
                    return self._open_lane(self._lanes[0])
                except BaseException:
                    self.stop()  # nothing to run calls on: the workers end
                    raise

            self._opened = self._submit(open_, None, lane=self._lanes[0], bare=True)

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str] = ":memory:", *, workers: int = 1, **options: Any
    ) -> AsyncStore:
        """Open a store and wait until it is open: ``store = await AsyncStore.open("agent.db")``."""
        store = cls(path, workers=workers, **options)
        await store._call(lambda: None)
        return store

    def __repr__(self) -> str:
        first = self._lanes[0].store
        shown = first.shown_path if first else "(opening)"
        workers = f" workers={len(self._lanes)}" if len(self._lanes) > 1 else ""
        return f"<memstore.AsyncStore {shown!r}{workers}>"

    async def __aenter__(self) -> AsyncStore:
        await self._call(lambda: None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def workers(self) -> int:
        """How many worker threads (and connections, at most) this AsyncStore has."""
        return len(self._lanes)

    @property
    def store(self) -> Store:
        """The sync Store doing the work (once open). In a function run on a worker
        (``run``), the Store of that worker; elsewhere, the first worker's."""
        lane: _Lane | None = getattr(_LANE, "lane", None)
        if lane is not None and lane.store is not None and lane.runner is self:
            return lane.store
        first = self._lanes[0].store
        if first is None:
            raise MemstoreError("the store is not open yet: await AsyncStore.open() first")
        return first

    async def close(self) -> None:
        """Close the store (unless it was given open) and stop the workers. Safe to call twice."""
        import asyncio

        if self._closed:
            return
        owned, owner = self._owns_store, self._owner()

        def close(lane: _Lane) -> Callable[[], None]:
            def run() -> None:
                if owned and lane.store is not None:
                    lane.store.close()

            return run

        futures = [self._submit(close(lane), owner, lane=lane, bare=True) for lane in self._lanes]
        self.stop()
        cancelled = False
        for future in futures:
            cancelled = (await _settle(future))[1] or cancelled
        if cancelled:
            raise asyncio.CancelledError

    def stop(self) -> None:
        """Stop the workers from sync code, without waiting: calls queued before still run,
        later ones raise MemstoreError. Leaves the store open; see ``close()``."""
        with self._ready:
            self._closed = True
            for lane in self._lanes:
                lane.wake.notify()

    # -- what returns handles, and transactions -----------------------------

    async def _handle(self, make: Callable[[Store], Any]) -> AsyncHandle:
        """A handle of what ``make(store)`` returns; made again for each worker that uses it."""

        def first() -> tuple[int, Any]:
            return _LANE.lane.index, make(self.store)

        lane, target = await self._call(first)
        handle = AsyncHandle(self, target, make)
        handle._targets[lane] = target
        return handle

    async def collection(self, name: str, **declaration: Any) -> AsyncHandle:
        """``Store.collection``: the collection, its methods as coroutines."""
        return await self._handle(lambda store: store.collection(name, **declaration))

    async def event_log(self, name: str) -> AsyncHandle:
        """``Store.event_log``; ``stream()`` is an async iterator."""
        return await self._handle(lambda store: store.event_log(name))

    async def conversations(self) -> AsyncHandle:
        """``Store.conversations``."""
        return await self._handle(lambda store: store.conversations())

    async def checkpoints(self) -> AsyncHandle:
        """``Store.checkpoints``."""
        return await self._handle(lambda store: store.checkpoints())

    async def graph(self, name: str, *, vectors: Mapping[str, Any] | None = None) -> AsyncHandle:
        """``Store.graph``."""
        return await self._handle(lambda store: store.graph(name, vectors=vectors))

    async def cache(self, name: str, *, ttl: timedelta | float | str | None = None) -> AsyncHandle:
        """``Store.cache`` (``memoize`` is sync only)."""
        return await self._handle(lambda store: store.cache(name, ttl=ttl))

    async def run(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a sync function on a worker, inside the caller's transaction if it is in one.

        For what the handles do not cover, such as SQL of your own::

            def newest(store: memstore.Store) -> list[Any]:
                with store.transaction(immediate=False):
                    return store.connection.execute(sql).fetchall()

            rows = await astore.run(lambda: newest(astore.store))

        (``astore.store`` read on the worker is that worker's Store.)
        """
        return await self._call(lambda: function(*args, **kwargs))

    def transaction(self, *, immediate: bool = True, exclusive: bool = True) -> _AsyncTransaction:
        """``async with store.transaction():`` — atomic and nestable, as ``Store.transaction``."""
        return _AsyncTransaction(self, immediate, exclusive)

    def __getattr__(self, name: str) -> Any:
        """Every other ``Store`` method (check, stats, backup, cleanup, ...) as a coroutine."""
        if name.startswith("_"):
            raise AttributeError(f"AsyncStore has no attribute {name!r}")
        return _async_attribute(self, Store, lambda: self.store, name)

    # -- the workers ---------------------------------------------------------

    def _submit(
        self,
        call: Callable[[], Any],
        owner: object | None,
        future: Any = None,
        *,
        lane: _Lane | None = None,
        bare: bool = False,
    ) -> Any:
        """Queue ``call`` for a worker: ``lane``'s, the one running ``owner``'s transaction,
        or any free one. Its outcome goes to ``future`` (by default a new
        ``concurrent.futures.Future``, which is returned). A ``bare`` call needs no Store."""
        import concurrent.futures

        if future is None:
            future = concurrent.futures.Future()
        with self._ready:
            if self._closed:
                opened = getattr(self, "_opened", None)
                if opened is not None and opened.done() and opened.exception() is not None:
                    raise opened.exception()  # it never opened: say why
                raise MemstoreError("the store is closed")
            if lane is None and owner is not None:
                lane = self._lane_of.get(id(owner))
            if lane is None and len(self._lanes) == 1:
                lane = self._lanes[0]
            job = _Job(call, owner, future, bare)
            if lane is not None:
                lane.own.append(job)
            else:
                self._shared.append(job)
                # Woken: one idle worker outside any transaction, one that has its Store
                # open first (none: the job waits for the next worker to finish a call).
                free = [other for other in self._lanes if other.idle and other.running is None]
                lane = min(free, key=lambda other: other.store is None, default=None)
            if lane is not None and lane.idle:
                lane.idle = False  # the next job goes to another idle one
                lane.wake.notify()
        return future

    async def _call(self, call: Callable[[], Any], lane: _Lane | None = None) -> Any:
        """Run ``call`` on a worker (``lane``'s, if given), inside the caller's transaction
        if it is in one."""
        import asyncio

        # The worker hands the outcome straight to the event loop (_LoopWaiter): a tenth
        # of a call's round trip less than through a concurrent.futures.Future.
        # Cancelling the caller cancels a call that has not started; one that has runs on.
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._submit(call, self._owner(), _LoopWaiter(loop, waiter), lane=lane)
        return await waiter

    def _owner(self) -> object | None:
        """The transaction of this store the calling task is inside, if any."""
        return (_ASYNC_OWNERS.get() or {}).get(id(self))

    def _take(self, lane: _Lane) -> _Job | None:
        """The next job ``lane`` may run (under ``_ready``): the first of its own, or the
        first of anyone's; inside a transaction, only the transaction's own."""
        for i, job in enumerate(lane.own):
            if lane.running is None or job.owner is lane.running:
                del lane.own[i]
                return job
        if lane.running is None and self._shared:
            return self._shared.popleft()
        return None

    def _work(self, lane: _Lane) -> None:
        """A worker: run the jobs it may take, in order, until the store is closed."""
        _LANE.lane = lane
        while True:
            with self._ready:
                job = self._take(lane)
                while job is None:
                    if self._closed:  # what waits for a transaction never ended fails
                        left = list(lane.own)
                        lane.own.clear()
                        if all(other.thread is None for other in self._lanes if other is not lane):
                            left += self._shared
                            self._shared.clear()
                        lane.thread = None
                        break
                    lane.idle = True
                    lane.wake.wait()
                    lane.idle = False
                    job = self._take(lane)
            if job is None:
                for job in left:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(MemstoreError("the store is closed"))
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                if lane.store is None and not job.bare:
                    self._opened.result()  # the first worker's opening: raises its error
                    if lane.store is None:
                        self._open_lane(lane)
                result = job.call()
            except BaseException as err:
                job.future.set_exception(err)
            else:
                job.future.set_result(result)

    def _open_lane(self, lane: _Lane) -> Store:
        """Open ``lane``'s Store (on its worker): the first when the AsyncStore starts, the
        others when first needed."""
        lane.store = Store(cast("str | os.PathLike[str]", self._path), **self._options)
        return lane.store

    def _begun(self, token: object, outer: object | None) -> _Lane:
        """On a worker: its transaction ``token`` has begun (inside ``outer``, if nested)."""
        lane: _Lane = _LANE.lane
        with self._ready:
            lane.running = token
            if outer is None:
                self._lane_of[id(token)] = lane
        return lane

    def _ended(self, lane: _Lane, token: object, outer: object | None) -> None:
        """On a worker: the block of ``token`` has ended; the lane is in ``outer`` again."""
        with self._ready:
            lane.running = outer
            if outer is None:
                self._lane_of.pop(id(token), None)


class AsyncHandle:
    """A collection, event log, conversations, checkpoints, graph or cache of an AsyncStore.

    Each method of the sync object is a coroutine method here, with the same
    arguments and result: ``await events.put(...)``, ``await log.tail(5)``.
    ``Collection.rows`` and ``EventLog.stream`` are async iterators:
    ``async for row in events.rows(where={...})``. Plain attributes (such as
    ``name``) are read as they are; properties (``Cache.ttl``) are awaited.
    """

    def __init__(
        self, runner: AsyncStore, target: Any, make: Callable[[Store], Any] | None = None
    ) -> None:
        self._runner = runner
        self._target = target
        self._make = make  # the sync object from a worker's Store (AsyncStore(workers=n))
        self._targets: dict[int, Any] = {}  # lane index -> the sync object on that lane

    def __repr__(self) -> str:
        return f"<memstore.AsyncHandle of {self._target!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        found = _async_attribute(self._runner, type(self._target), self._here, name)
        if getattr(found, "_memstore_method", False):  # the same each time: made once
            self.__dict__[name] = found
        return found

    def __dir__(self) -> list[str]:
        return sorted(n for n in dir(self._target) if not n.startswith("_"))

    def _here(self) -> Any:
        """The sync object on this worker's Store (the first one, off the workers)."""
        lane = getattr(_LANE, "lane", None)
        if lane is None or self._make is None or len(self._runner._lanes) == 1:
            return self._target
        target = self._targets.get(lane.index)
        if target is None:
            target = self._targets[lane.index] = self._make(self._runner.store)
        return target


class _AsyncTransaction:
    """``async with store.transaction():``; see ``AsyncStore``."""

    def __init__(self, runner: AsyncStore, immediate: bool, exclusive: bool) -> None:
        self._runner = runner
        self._immediate = immediate
        self._exclusive = exclusive

    async def __aenter__(self) -> AsyncStore:
        import asyncio

        runner = self._runner
        owners = _ASYNC_OWNERS.get() or {}
        outer = owners.get(id(runner))
        token = outer if outer is not None else object()

        def begin() -> tuple[Any, _Lane]:
            block = runner.store.transaction(immediate=self._immediate, exclusive=self._exclusive)
            block.__enter__()
            return block, runner._begun(token, outer)

        # A new transaction goes to a worker outside any: it is submitted as nobody's.
        future = runner._submit(begin, outer)
        try:
            self._block, self._lane = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            if future.cancel():  # it never began
                raise
            self._block, self._lane = (await _settle(future))[0]
            await self._end(token, outer, asyncio.CancelledError())
            raise
        self._token, self._outer = token, outer
        self._reset = _ASYNC_OWNERS.set({**owners, id(runner): token})
        return runner

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        _ASYNC_OWNERS.reset(self._reset)
        await self._end(self._token, self._outer, exc)

    async def _end(self, token: object, outer: object | None, exc: BaseException | None) -> None:
        """Commit (or on ``exc``, roll back) and wait for it, even if cancelled meanwhile."""
        import asyncio

        runner, block, lane = self._runner, self._block, self._lane

        def end() -> None:
            try:
                if exc is None:
                    block.__exit__(None, None, None)
                else:
                    block.__exit__(type(exc), exc, exc.__traceback__)
            finally:
                runner._ended(lane, token, outer)  # the enclosing block's, or none

        if (await _settle(runner._submit(end, token, lane=lane)))[1]:
            raise asyncio.CancelledError


def _async_attribute(runner: AsyncStore, kind: type, target: Callable[[], Any], name: str) -> Any:
    """``name`` of the sync object as a coroutine function, async iterator maker or value."""
    if name in _ASYNC_MISSING:
        raise AttributeError(
            f"{name} is not offered by memstore's async API: {_ASYNC_MISSING[name]}"
        )
    attribute = getattr(kind, name, _MISSING)
    if attribute is _MISSING:
        value = getattr(target(), name)  # an instance attribute, such as name
        if callable(value):
            raise AttributeError(f"{name!r} cannot be called through the async API")
        return value
    if isinstance(attribute, property):
        return runner._call(lambda: getattr(target(), name))
    if not callable(attribute):
        return attribute
    if name in _ASYNC_STREAMS:

        def stream(*args: Any, **kwargs: Any) -> _AsyncIterator:
            return _AsyncIterator(runner, lambda: getattr(target(), name)(*args, **kwargs))

        stream.__doc__ = attribute.__doc__
        stream._memstore_method = True  # type: ignore[attr-defined]
        return stream

    async def method(*args: Any, **kwargs: Any) -> Any:
        return await runner._call(lambda: getattr(target(), name)(*args, **kwargs))

    method.__doc__, method.__name__ = attribute.__doc__, name
    method._memstore_method = True  # type: ignore[attr-defined]
    return method


class _AsyncIterator:
    """An iterator of the sync API, read on the worker 256 items at a time."""

    def __init__(self, runner: AsyncStore, start: Callable[[], Iterator[Any]]) -> None:
        self._runner = runner
        self._start: Callable[[], Iterator[Any]] | None = start
        self._items: Iterator[Any] | None = None
        self._batch: collections.deque[Any] = collections.deque()
        self._done = False
        self._lane: _Lane | None = None  # the worker the iterator runs on, once started

    def __aiter__(self) -> _AsyncIterator:
        return self

    async def __anext__(self) -> Any:
        if not self._batch and not self._done:
            self._batch.extend(await self._runner._call(self._next_batch, self._lane))
            self._done = not self._batch
        if not self._batch:
            raise StopAsyncIteration
        return self._batch.popleft()

    def _next_batch(self) -> list[Any]:
        if self._items is None:
            assert self._start is not None
            self._items, self._start = iter(self._start()), None
            self._lane = _LANE.lane
        return list(islice(self._items, 256))

    async def aclose(self) -> None:
        """Stop early, closing the query on the worker."""
        items, self._items, self._done = self._items, None, True
        close = getattr(items, "close", None)
        if close is not None:
            await self._runner._call(close, self._lane)


class Adapter:
    """A base for classes that keep another library's data in a memstore file.

    >>> class MyCheckpointer(memstore.Adapter, TheirBaseClass):
    ...     def __init__(self, path=":memory:", **options):
    ...         self.open_store(path, options)      # sets self.store
    ...     async def aget(self, key):
    ...         return await self.run_async(self.get, key)

    ``open_store`` takes a path (opened with ``Store``'s options, and closed
    by ``close()``) or an open ``Store`` to share (left open). ``execute``
    runs the adapter's own SQL with memstore's errors. ``run_async`` runs a
    sync method on an ``AsyncStore`` worker started on first use.
    ``layer`` names the memory layer the adapter keeps its data in: a store
    whose engine lacks it is refused (UnsupportedError) when opened.
    The memstore_langgraph and memstore_langchain classes are built on it.
    """

    store: Store
    #: The memory layer (a feature of Store's engine) the adapter's data is kept in; None:
    #: collections alone, which every engine has. An adapter of its own SQL keeps the
    #: default, which only SQLite, the reference, is taken to have.
    layer: str | None = "the framework adapters"

    def open_store(self, path: str | os.PathLike[str] | Store, options: Mapping[str, Any]) -> None:
        """Open ``path`` (or take an open Store) as ``self.store``."""
        if isinstance(path, Store):
            if options:
                raise ValidationError("options are for a file opened here, not an open Store")
            self.store, self._owns_store = path, False
        else:
            self.store, self._owns_store = Store(path, **options), True
        try:
            if self.layer is not None:
                self.store._engine.unsupported(self.layer)
        except UnsupportedError:
            if self._owns_store:
                self.store.close()
            raise
        self._async: AsyncStore | None = None
        self._async_lock = threading.Lock()

    @contextmanager
    def opening_store(
        self, path: str | os.PathLike[str] | Store, options: Mapping[str, Any]
    ) -> Iterator[Store]:
        """``open_store`` for a subclass that sets up more on the store in the block: if
        the block fails, a store opened here is closed again (a given one stays open)."""
        self.open_store(path, options)
        try:
            yield self.store
        except BaseException:
            if self._owns_store:
                self.store.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the store, unless it was given open. From async code, ``aclose()``."""
        self.before_close()
        if self._async is not None:
            self._async.stop()
            self._async = None
        if self._owns_store:
            self.store.close()

    async def aclose(self) -> None:
        """Close from async code: the worker finishes the calls it has first."""
        self.before_close()
        if self._async is not None:
            await self._async.close()
            self._async = None
        if self._owns_store:
            self.store.close()

    def before_close(self) -> None:
        """What a subclass stops before the store closes (a background thread, say)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement of the adapter's own SQL on the store's connection, under its
        lock, and return every row; driver errors (a value SQLite cannot bind, say) come
        out as memstore's. Inside ``store.transaction()`` for several at once."""
        return self.store._fetch(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``execute`` for many rows of parameters."""
        self.store._run_many(sql, rows)

    def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """``execute`` for several statements that do not depend on each other, each
        one's rows in order: inside a transaction on PostgreSQL they go to the server
        together, in one round trip."""
        return self.store._engine.fetch_together(self.store, statements)

    def live_clause(self, alias: str | None = None) -> str:
        """``live_clause`` with the store's engine's clock."""
        column = "expires_at" if alias is None else f"{quote_identifier(alias)}.expires_at"
        return f"({column} IS NULL OR {column} > {self.now_sql})"

    @property
    def no_limit(self) -> int | None:
        """LIMIT's value for no limit, on the store's engine."""
        return self.store._engine.no_limit

    @property
    def now_sql(self) -> str:
        """SQL for now, as memstore writes times, on the store's engine."""
        return self.store._engine.now

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition "``column`` is one of ``values``" and its one parameter, on the
        store's engine: ``sql, param = self.in_list("key", keys)``."""
        engine = self.store._engine
        return engine.ids_in(column), engine.ids(list(values))

    # The few SQL spellings an adapter's statements need that differ between engines
    # (the store's engine gives them: see _Engine).

    @property
    def join_in_order(self) -> str:
        """An inner join whose left side is read first."""
        return self.store._engine.join_in_order

    @property
    def remote(self) -> bool:
        """Whether each request is a round trip to a server (PostgreSQL), so that one
        statement doing the work of several is worth what it costs; on SQLite a few
        simple statements are cheaper than one that combines them."""
        return self.store._engine.remote

    def json_entries(self, sql: str) -> str:
        """A table of the (key, value) entries of the JSON object ``sql``."""
        return self.store._engine.json_entries(sql)

    def json_field(self, sql: str, key: str, what: str) -> tuple[str, list[Any]]:
        """A field of the JSON object ``sql``: its "type" (SQLite's json_type names), its
        "number" or its "text"; SQL and its parameters."""
        return self.store._engine.json_field(sql, key, what)

    def tuples(
        self, alias: str, width: int, rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[str], str, list[Any]]:
        """A table ``alias`` of rows of text bound as parameters: (FROM item, the SQL of
        each column, the SQL of the rows' order, the parameters)."""
        return self.store._engine.tuples(alias, width, rows)

    async def run_async(self, function: Callable[..., Any], /, *args: Any) -> Any:
        """``function(*args)`` on the AsyncStore worker, started on the first call."""
        worker = self._async
        if worker is None:
            with self._async_lock:
                if self._async is None:
                    self._async = AsyncStore(self.store)
                worker = self._async
        return await worker._call(lambda: function(*args))


async def _settle(future: Any) -> tuple[Any, bool]:
    """Wait for a concurrent future to finish even if cancelled meanwhile; (result, cancelled).

    A transaction's begin and end must not be abandoned half-way: the worker
    would stay inside the transaction and every other call would wait forever.
    """
    import asyncio

    cancelled = False
    waiting = asyncio.wrap_future(future)
    while True:
        try:
            return await asyncio.shield(waiting), cancelled
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                return future.result(), True
            cancelled = True


# --------------------------------------------------------------------------
# Collection tables: the DDL memstore writes for each collection
# --------------------------------------------------------------------------

_BASE_INDEXED = ("created_at", "updated_at", "expires_at")
#: The base indexes a collection may go without (time_indexes=False).
_TIME_INDEXED = ("created_at", "updated_at")


def _create_table_sql(name: str) -> list[str]:
    """A collection's table: key, JSON body, timestamps; fields are added as columns."""
    table = quote_identifier(name)
    return [
        f"""CREATE TABLE {table} (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16)))),
    body       TEXT NOT NULL
               CHECK (CASE WHEN json_valid(body) THEN json_type(body) = 'object' ELSE 0 END),
    created_at TEXT NOT NULL DEFAULT ({_SQL_NOW}),
    updated_at TEXT NOT NULL DEFAULT ({_SQL_NOW}),
    expires_at TEXT
)""",
        _index_sql(name, "created_at"),
        _index_sql(name, "updated_at"),
        _index_sql(name, "expires_at"),
        _touch_trigger_sql(name),
    ]


def _index_name(table: str, column: str) -> str:
    return f"{table}__{column}_idx"  # collection names have no "__", so never ambiguous


def _index_sql(
    table: str, column: str, then: Sequence[str] = (), *, nulls_first: bool = False
) -> str:
    """The index of one column, ``then`` other columns after it (see _field_index_sql).
    ``nulls_first``: PostgreSQL's, whose indexes hold NULLs last unless told, and no row
    id unless given one (SQLite's order, NULLs first, then the row id, is the order of
    memstore's reads, which the index gives as it is read)."""
    partial = " WHERE expires_at IS NOT NULL" if column == "expires_at" else ""
    nulls = " NULLS FIRST" if nulls_first else ""
    columns = ", ".join(quote_identifier(c) + nulls for c in (column, *then))
    if nulls_first:  # the row id last, as SQLite's indexes hold it: ties in memstore's order
        columns += ", id"
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(_index_name(table, column))} "
        f"ON {quote_identifier(table)} ({columns}){partial}"
    )


def _field_index_sql(meta: _Meta, path: str, *, nulls_first: bool = False) -> str:
    """A declared field's index. In a temporal collection (and one with hygiene) it holds
    the columns every read tests as well, validity (and forgotten_at), so that a filter
    or count by the field is answered from the index alone, as in a plain collection."""
    then: tuple[str, ...] = ("valid_from", "valid_to") if meta.temporal else ()
    if meta.hygiene is not None:
        then += ("forgotten_at",)
    return _index_sql(meta.name, field_column(path), then, nulls_first=nulls_first)


def _compound_index_name(table: str, spec: tuple[tuple[str, ...], bool]) -> str:
    fields, unique = spec
    parts = [field_column(f.lstrip("-")) + ("_desc" if f.startswith("-") else "") for f in fields]
    return f"{table}__{'unique' if unique else 'index'}__{'__'.join(parts)}"


def _leading_fields(indexes: Sequence[tuple[tuple[str, ...], bool]]) -> set[str]:
    """The fields an index over several fields starts with: they need no index of their own."""
    return {fields[0].lstrip("-") for fields, _ in indexes}


def _compound_index_sql(
    table: str, spec: tuple[tuple[str, ...], bool], *, nulls_first: bool = False
) -> str:
    """An index over several fields (their generated columns, or the meta columns).

    Queries break ties in insertion order, reversed with a descending order:
    ``ORDER BY timestamp DESC, id DESC``. An index has the row id last, in
    ascending order, so one with a descending term ends in ``id DESC`` to give
    that order as it is read, with no sorting.
    """
    fields, unique = spec
    ascending, descending = (" NULLS FIRST", " DESC NULLS LAST") if nulls_first else ("", " DESC")
    columns = ", ".join(
        quote_identifier(field_column(f.lstrip("-"))) + (descending if f[:1] == "-" else ascending)
        for f in fields
    )
    if not unique and any(f.startswith("-") for f in fields):
        columns += ", id DESC"
    elif not unique and nulls_first:  # PostgreSQL's: the row id SQLite's indexes end with
        columns += ", id"
    return (
        f"CREATE {'UNIQUE ' if spec[1] else ''}INDEX IF NOT EXISTS "
        f"{quote_identifier(_compound_index_name(table, spec))} "
        f"ON {quote_identifier(table)} ({columns})"
    )


def _add_column_sql(table: str, path: str, column_type: str) -> str:
    # The path is validated against _FIELD_PATH, so it is safe as a literal.
    return (
        f"ALTER TABLE {quote_identifier(table)} "
        f"ADD COLUMN {quote_identifier(field_column(path))} {column_type} "
        f"GENERATED ALWAYS AS (json_extract(body, {_literal('$.' + path)})) VIRTUAL"
    )


_FTS_EVENTS = ("insert", "delete", "update")


def _fts_trigger(table: str, event: str) -> str:
    return f"{table}__fts_{event}"


#: A collection's FTS mark when no batch is open: every row is indexed at once.
_ALL_INDEXED = 2**63 - 1


def _fts_mark(table: str) -> str:
    """SQL for the id up to which a collection's FTS index is complete (sql/0013): rows
    past it wait to be indexed in a batch. Without its row in memstore_fts_progress,
    every row is indexed at once, as before."""
    return (
        f"coalesce((SELECT indexed_to FROM memstore_fts_progress "
        f"WHERE fts = {_literal(fts_table(table))}), {_ALL_INDEXED})"
    )


def _fts_trigger_sql(table: str, columns: list[str]) -> dict[str, str]:
    """Triggers that keep the FTS index in step with rows written by any tool, by event,
    for the rows it covers (ids up to _fts_mark); newer rows wait for _catch_up_fts."""
    fts, cols = quote_identifier(fts_table(table)), ", ".join(quote_identifier(c) for c in columns)
    new = ", ".join(f"new.{quote_identifier(c)}" for c in columns)
    old = ", ".join(f"old.{quote_identifier(c)}" for c in columns)
    insert = f"INSERT INTO {fts} (rowid, {cols}) VALUES (new.id, {new});"
    delete = f"INSERT INTO {fts} ({fts}, rowid, {cols}) VALUES ('delete', old.id, {old});"
    bodies = {"insert": insert, "delete": delete, "update": f"{delete} {insert}"}
    # An update reindexes only when the body (and so the indexed columns) changed: an
    # update of expires_at or updated_at alone, as the TTL and touch triggers make,
    # must not 'delete' a row the index may not hold yet.
    when = {"insert": "INSERT", "delete": "DELETE", "update": "UPDATE OF body"}
    covered = {
        event: f"{'new' if event == 'insert' else 'old'}.id <= {_fts_mark(table)}"
        for event in bodies
    }
    return {
        event: f"CREATE TRIGGER {quote_identifier(_fts_trigger(table, event))} "
        f"AFTER {when[event]} ON {quote_identifier(table)} WHEN {covered[event]} "
        f"BEGIN {body} END"
        for event, body in bodies.items()
    }


def _history_trigger_sql(table: str, *, drop: bool = False, temporal: bool = False) -> list[str]:
    """Triggers keeping the previous version of every updated or deleted record (in a
    temporal collection, with the validity it had: a change of validity is a version)."""
    names = [quote_identifier(f"{table}__history_{event}") for event in ("update", "delete")]
    if drop:
        return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    # Each version gets the next number from memstore_version_counters (never reused);
    # it stopped being current when the new one started: the new row's updated_at.
    collection = _literal(table)
    archived = f"CASE WHEN new.updated_at IS old.updated_at THEN {_SQL_NOW} ELSE new.updated_at END"
    archive = (
        "INSERT INTO memstore_version_counters (collection, key, last) "
        f"VALUES ({collection}, old.key, 1) ON CONFLICT (collection, key) DO UPDATE "
        "SET last = last + 1; "
        "INSERT INTO memstore_versions "
        "(collection, key, version, body, valid_from, archived_at, operation"
        + (", fact_from, fact_to, fact_of" if temporal else "")
        + f") VALUES ({collection}, old.key, (SELECT last FROM memstore_version_counters "
        f"WHERE collection = {collection} AND key = old.key), old.body, old.updated_at, "
        "{0}, '{1}'" + (", old.valid_from, old.valid_to, old.fact_of" if temporal else "") + ");"
    )
    columns, changed = _versioned(temporal)
    return [
        # When the update did not move updated_at, the touch trigger sets it to SQLite's now,
        # which is the same instant throughout one statement: the archive uses it too.
        f"CREATE TRIGGER {names[0]} AFTER UPDATE OF {columns} ON {quote_identifier(table)} "
        f"WHEN {changed} BEGIN {archive.format(archived, 'update')} END",
        f"CREATE TRIGGER {names[1]} AFTER DELETE ON {quote_identifier(table)} "
        f"BEGIN {archive.format(_SQL_NOW, 'delete')} END",
    ]


def _versioned(temporal: bool) -> tuple[str, str]:
    """The columns whose update makes a new version of a record, and the condition that
    one of them changed: the body, and in a temporal collection its validity too. The
    history, touch and vector history triggers all fire on it."""
    if temporal:
        return "body, valid_from, valid_to", (
            "(old.body IS NOT new.body OR old.valid_from IS NOT new.valid_from "
            "OR old.valid_to IS NOT new.valid_to)"
        )
    return "body", "old.body IS NOT new.body"


def _vector_history_trigger_sql(table: str, *, drop: bool = False) -> list[str]:
    """Triggers of a temporal collection with vectors copying a record's vectors into
    memstore_version_vectors before a change archives its version (the number the history
    trigger is about to give it), so that known_at reads compare the vectors it had."""
    names = [
        quote_identifier(f"{table}__history_vectors_{event}") for event in ("update", "delete")
    ]
    if drop:
        return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    collection = _literal(table)
    copy = (
        "INSERT INTO memstore_version_vectors (collection, key, version, model, part, dim, vector) "
        f"SELECT {collection}, old.key, 1 + coalesce((SELECT last FROM memstore_version_counters "
        f"WHERE collection = {collection} AND key = old.key), 0), model, part, dim, vector "
        f"FROM memstore_vectors WHERE collection = {collection} AND record_id = old.id "
        "ON CONFLICT (collection, key, version, model, part) DO UPDATE SET dim = excluded.dim, "
        "vector = excluded.vector;"
    )
    columns, changed = _versioned(temporal=True)
    # BEFORE: the record's vectors are still the old version's (a put writes the new ones
    # after the row, and deleting the row deletes them).
    return [
        f"CREATE TRIGGER {names[0]} BEFORE UPDATE OF {columns} "
        f"ON {quote_identifier(table)} WHEN {changed} BEGIN {copy} END",
        f"CREATE TRIGGER {names[1]} BEFORE DELETE ON {quote_identifier(table)} BEGIN {copy} END",
    ]


def _touch_trigger_sql(table: str, temporal: bool = False) -> str:
    """A trigger moving updated_at to SQLite's now when an update changes a record (in a
    temporal collection, its validity too) and leaves updated_at as it was: another
    tool's write, or memstore's in the millisecond of the last one. The history trigger
    ends the old version at the same now, so versions never overlap in store time."""
    quoted = quote_identifier(table)
    columns, changed = _versioned(temporal)
    return (
        f"CREATE TRIGGER {quote_identifier(_touch_trigger(table))} AFTER UPDATE OF {columns} "
        f"ON {quoted} WHEN new.updated_at IS old.updated_at AND {changed} "
        f"BEGIN UPDATE {quoted} SET updated_at = {_SQL_NOW} WHERE id = new.id; END"
    )


def _validity_index_sql(table: str) -> str:
    """The index "valid at t" queries use: validity starts, then ends."""
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(_index_name(table, 'validity'))} "
        f"ON {quote_identifier(table)} (valid_from, valid_to)"
    )


def _subject_index_sql(table: str) -> str:
    """The index of what each row of a temporal collection is a fact about: its key, or
    for a superseded fact its subject's (fact_of); reads by key use it."""
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(_index_name(table, 'subject'))} "
        f"ON {quote_identifier(table)} (coalesce(fact_of, key))"
    )


def _touch_trigger(table: str) -> str:
    return f"{table}__touch"


def _ttl_trigger_sql(table: str) -> str:
    """A trigger giving rows that other tools insert without an expiry the collection's
    default time to live. Only a collection with a TTL has it (_set_ttl_trigger); the TTL
    itself is read from the registry, so a new TTL needs no new trigger."""
    quoted, name = quote_identifier(table), _literal(table)
    ttl = f"(SELECT ttl_seconds FROM _memstore_collections WHERE name = {name})"
    return (
        f"CREATE TRIGGER IF NOT EXISTS {quote_identifier(_ttl_trigger(table))} AFTER INSERT "
        f"ON {quoted} WHEN new.expires_at IS NULL BEGIN "
        f"UPDATE {quoted} SET expires_at = strftime('%Y-%m-%dT%H:%M:%f000Z', "
        f"new.created_at, '+' || {ttl} || ' seconds') WHERE id = new.id AND {ttl} IS NOT NULL; "
        "END"
    )


def _drop_ttl_trigger_sql(table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {quote_identifier(_ttl_trigger(table))}"


def _ttl_trigger(table: str) -> str:
    return f"{table}__ttl"


def _create_fts_sql(table: str, columns: list[str]) -> list[str]:
    """An external-content FTS5 table over generated columns, filled from the rows.

    content="..." in double quotes and real columns: the form Datasette
    recognises, so its search box works on the table.
    """
    fts = quote_identifier(fts_table(table))
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({', '.join(columns)}, "
        f"content={quote_identifier(table)}, content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2')",
        f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')",
        _fts_progress_sql(table),
        *_fts_trigger_sql(table, columns).values(),
    ]


def _fts_progress_sql(table: str) -> str:
    """Mark a collection's FTS index complete, with no batch open: every row written from
    now on, by any tool, is indexed at once (after a rebuild, a load, a catch-up)."""
    return (
        "INSERT INTO memstore_fts_progress (fts, indexed_to) "
        f"VALUES ({_literal(fts_table(table))}, {_ALL_INDEXED}) "
        "ON CONFLICT (fts) DO UPDATE SET indexed_to = excluded.indexed_to"
    )


def _open_fts_batch_sql(table: str) -> str:
    """Open a batch: the rows written from now on (past the newest row) wait for the
    index, until someone catches it up (_catch_up_fts, index_pending)."""
    return (
        "UPDATE memstore_fts_progress SET indexed_to = "
        f"(SELECT coalesce(max(id), 0) FROM {quote_identifier(table)}) "
        f"WHERE fts = {_literal(fts_table(table))} AND indexed_to = {_ALL_INDEXED}"
    )


def _drop_fts_sql(table: str, *, keep_table: bool = False) -> list[str]:
    triggers = [
        f"DROP TRIGGER IF EXISTS {quote_identifier(_fts_trigger(table, e))}" for e in _FTS_EVENTS
    ]
    return (
        triggers
        if keep_table
        else [
            *triggers,
            f"DROP TABLE IF EXISTS {quote_identifier(table + '_fts')}",
            f"DELETE FROM memstore_fts_progress WHERE fts = {_literal(fts_table(table))}",
        ]
    )


# On PostgreSQL (see _Postgres): the same table, its text in SQLite's byte order.

#: Declared field types on PostgreSQL: name -> column type.
_PG_COLUMN_TYPES = {
    "text": "TEXT",
    "integer": "BIGINT",
    "real": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
}


def _pg_create_table_sql(name: str) -> list[str]:
    """A collection's table on PostgreSQL: _create_table_sql's columns, JSON as text."""
    table = quote_identifier(name)
    return [
        f"""CREATE TABLE {table} (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    key        TEXT COLLATE "C" NOT NULL UNIQUE
               DEFAULT replace(gen_random_uuid()::text, '-', ''),
    body       TEXT NOT NULL CHECK (json_typeof(body::json) = 'object'),
    created_at TEXT COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    updated_at TEXT COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    expires_at TEXT COLLATE "C"
)""",
        _index_sql(name, "created_at", nulls_first=True),
        _index_sql(name, "updated_at", nulls_first=True),
        _index_sql(name, "expires_at", nulls_first=True),
        _pg_touch_trigger_sql(name),
    ]


def _pg_versioned(temporal: bool) -> tuple[str, str]:
    """_versioned on PostgreSQL: the columns whose update makes a version, and the
    condition that one of them changed."""
    if temporal:
        return "body, valid_from, valid_to", (
            "(old.body, old.valid_from, old.valid_to) IS DISTINCT FROM "
            "(new.body, new.valid_from, new.valid_to)"
        )
    return "body", "old.body IS DISTINCT FROM new.body"


def _pg_touch_trigger_sql(table: str, temporal: bool = False) -> str:
    """_touch_trigger_sql on PostgreSQL: before the update, so it sets the new row's time."""
    columns, changed = _pg_versioned(temporal)
    return (
        f"CREATE TRIGGER {quote_identifier(_touch_trigger(table))} BEFORE UPDATE OF {columns} "
        f"ON {quote_identifier(table)} FOR EACH ROW WHEN (new.updated_at IS NOT DISTINCT FROM "
        f"old.updated_at AND {changed}) EXECUTE FUNCTION _memstore_touch()"
    )


def _pg_add_column_sql(table: str, path: str, kind: str) -> str:
    """A declared field's generated column on PostgreSQL. A value not of the field's type
    (another tool's write) leaves the column NULL rather than failing the write."""
    value = f"(body::json #> {_pg_path_literal(path)})"
    expression = {
        "text": f"CASE json_typeof({value}) WHEN 'string' THEN {value} #>> '{{}}' END",
        # A whole number in bigint's range (SQLite's INTEGER affinity takes 1.0 as 1).
        "integer": f"CASE WHEN json_typeof({value}) = 'number' AND ({value} #>> '{{}}')::numeric "
        f"= trunc(({value} #>> '{{}}')::numeric) AND ({value} #>> '{{}}')::numeric "
        f"BETWEEN {-(2**63)} AND {2**63 - 1} THEN ({value} #>> '{{}}')::numeric::bigint END",
        "real": f"CASE json_typeof({value}) WHEN 'number' THEN ({value} #>> '{{}}')::float8 END",
        "boolean": f"CASE json_typeof({value}) WHEN 'boolean' THEN ({value} #>> '{{}}')::boolean "
        "END",
    }[kind]
    collation = ' COLLATE "C"' if kind == "text" else ""  # SQLite's byte order
    return (
        f"ALTER TABLE {quote_identifier(table)} ADD COLUMN "
        f"{quote_identifier(field_column(path))} {_PG_COLUMN_TYPES[kind]}{collation} "
        f"GENERATED ALWAYS AS ({expression}) STORED"
    )


def _path_segments(path: str) -> list[str]:
    """An SQLite JSON path (from _json_path) as PostgreSQL's: its keys and array indexes."""
    return [
        name or quoted or index
        for name, quoted, index in re.findall(r'\.([A-Za-z_]\w*)|\."([^"]*)"|\[(\d+)\]', path)
    ]


def _pg_path_literal(field: str) -> str:
    """A field's path as a PostgreSQL text[] literal, for schema objects (which bind no
    parameters). Its segments are printable and hold no double quote (_json_path)."""
    segments = _path_segments(_json_path(field))
    return _literal("{" + ",".join('"' + s.replace("\\", "\\\\") + '"' for s in segments) + "}")


def _pg_body_value(path: str) -> _Target:
    """A field of a PostgreSQL record's JSON text, at an SQLite JSON path (_json_path), as a
    filter target read as JSON (kind "json")."""
    return _Target("(t.body::json #> ?::text[])", (_path_segments(path),), path, "json")


def _pg_fts_text(paths: Sequence[str]) -> str:
    """A PostgreSQL collection's searchable text: its FTS paths' values, one after another."""
    parts = [f"coalesce(body::json #>> {_pg_path_literal(p)}, '')" for p in paths]
    return " || ' ' || ".join(parts)


# FTS5's query syntax, token by token: a "phrase" or a word (each maybe a prefix*), a
# column filter's colon, an operator word, a bracket; anything else is refused.
_FTS5_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"(\*?)|(\()|(\))|(:)|([\w\x1a]+)(\*?)|(\S))')


def _pg_match(text: str, texts: Mapping[str, str]) -> tuple[str, list[Any], str]:
    """An FTS5 query (memstore's documented syntax: words, "phrases", prefix*, AND, OR,
    NOT, brackets, ``column: term``) as PostgreSQL full-text search: (an SQL condition on
    the row ``t``, its parameters, a tsquery of every term for ranking and snippets).
    ``texts`` maps the indexed texts' names (FTS5's column names) to SQL giving each.
    Each term is a tsquery of the 'memstore' configuration; NEAR and ^ are a QueryError."""

    def refuse(why: str) -> QueryError:
        return QueryError(f"cannot search for {text!r:.80}: {why}")

    tokens = [m.groups() for m in _FTS5_TOKEN.finditer(text)]
    parts: list[str] = []
    params: list[Any] = []
    terms: list[str] = []
    operand, depth, at = False, 0, 0
    while at < len(tokens):
        phrase, phrase_prefix, opening, closing, colon, word, prefix, other = tokens[at]
        at += 1
        if other is not None or colon is not None:
            raise refuse(f"{other or colon!r} is not supported there")
        if word in ("AND", "OR", "NOT"):
            if not operand:
                raise refuse(f"{word} needs a term before it")
            parts.append({"AND": "AND", "OR": "OR", "NOT": "AND NOT"}[word])
            operand = False
            continue
        if word == "NEAR":
            raise refuse("NEAR is not on PostgreSQL")
        if closing is not None:
            if not operand or depth == 0:
                raise refuse("unbalanced brackets")
            depth -= 1
            parts.append(")")
            continue
        if operand:  # two terms side by side: both
            parts.append("AND")
        if opening is not None:
            depth += 1
            parts.append("(")
            operand = False
            continue
        document = "t.fts_document"
        if word is not None and not prefix and at < len(tokens) and tokens[at][4] is not None:
            if word not in texts:  # column: term
                raise refuse(f"no such column: {word}")
            document = f"to_tsvector('memstore'::regconfig, {texts[word]})"
            if at + 1 >= len(tokens) or (tokens[at + 1][0] is None and tokens[at + 1][5] is None):
                raise refuse(f"{word}: needs a word or a phrase after it")
            phrase, phrase_prefix, _, _, _, word, prefix, _ = tokens[at + 1]
            at += 2
        words = re.findall(r"\w+", (phrase or "").replace('""', '"') if word is None else word)
        if not words:
            raise refuse("a term has no words")
        lexemes = [f"'{w}'" for w in words]
        if prefix or phrase_prefix:
            lexemes[-1] += ":*"
        query = " <-> ".join(lexemes)
        terms.append(f"({query})")
        parts.append(f"{document} @@ to_tsquery('memstore'::regconfig, ?)")
        params.append(query)
        operand = True
    if not operand or depth:
        raise refuse("the query is incomplete")
    return "(" + " ".join(parts) + ")", params, " | ".join(terms)


# --------------------------------------------------------------------------
# Query compilation: filters are data, operators a table of small functions.
# --------------------------------------------------------------------------

_Compiled = tuple[str, list[Any]]


#: An engine's operators: name -> the function compiling it for a target and a value.
_Operators = dict[str, Callable[["_Target", Any], _Compiled]]


def _compile_filter(
    where: Mapping[str, Any],
    target: Callable[[str], _Target],
    operators: _Operators | None = None,
) -> _Compiled:
    """A filter as an SQL condition and its parameters, after checking its size. The
    operators are SQLite's unless an engine gives its own (``_Engine.operators``)."""
    _check_filter_size(where)
    return _compile_where(where, target, _OPERATORS if operators is None else operators)


def _is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), a dict answered without the ABC's check (filters are
    compiled on every query: a search's filter made some twenty of them)."""
    return type(value) is dict or isinstance(value, Mapping)


def _check_filter_size(where: Any) -> None:
    """Refuse a filter nested too deep or with too many conditions, before compiling it:
    a QueryError that says the limit, not a RecursionError or SQLite's "too large"."""
    stack, terms = [(where, 1)], 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_FILTER_DEPTH:
            raise QueryError(
                f"a filter may nest $and, $or and $not {MAX_FILTER_DEPTH} deep at most"
            )
        if not _is_mapping(node):
            continue
        for key, value in node.items():
            terms += len(value) if _is_mapping(value) else 1
            if key in _LOGICAL:
                children = value if isinstance(value, (list, tuple)) else [value]
                stack.extend((child, depth + 1) for child in children)
        if terms > MAX_FILTER_TERMS:
            raise QueryError(
                f"a filter may hold {MAX_FILTER_TERMS} conditions at most "
                "(use $in for a long list of values)"
            )


def _compile_where(
    where: Mapping[str, Any], target: Callable[[str], _Target], operators: _Operators
) -> _Compiled:
    if not _is_mapping(where):
        raise QueryError(f"where must be a dict, not {type(where).__name__}")
    parts: list[str] = []
    params: list[Any] = []
    for field, condition in where.items():
        if field in _LOGICAL:
            sql, extra = _LOGICAL[field](condition, target, operators)
        elif isinstance(field, str) and field.startswith("$"):
            raise QueryError(f"unknown operator {field!r}; use one of {', '.join(_LOGICAL)}")
        else:
            sql, extra = _compile_condition(target(field), field, condition, operators)
        parts.append(sql)
        params += extra
    return (" AND ".join(parts) if parts else "true"), params


def _compile_condition(
    target: _Target, field: str, condition: Any, operators: _Operators
) -> _Compiled:
    if _is_mapping(condition) and any(isinstance(k, str) and k.startswith("$") for k in condition):
        parts, params = [], []
        for operator, value in condition.items():
            if operator not in operators:
                raise QueryError(
                    f"unknown operator {operator!r} for {field!r}; "
                    f"use one of {', '.join(operators)}"
                )
            sql, extra = operators[operator](target, value)
            parts.append(sql)
            params += extra
        return "(" + " AND ".join(parts) + ")", params
    if isinstance(condition, (list, tuple)):
        raise QueryError(
            f"{field!r}: a list is not a value to compare with; for any of these values "
            f'use {{"{field}": {{"$in": [...]}}}}, for a list holding a value $contains, '
            "for exactly this list $eq"
        )
    return operators["$eq"](target, condition)


def _query_value(value: Any, *, structured: bool = False) -> Any:
    """Check a value given in a filter; structured (dict/list) ones become JSON text."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise QueryError(f"cannot compare with {value!r:.60}: beyond SQLite's 64-bit integers")
        return value
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"cannot compare with {value!r}")
        return value
    if structured and isinstance(value, (dict, list)):
        return _dumps(value)
    raise QueryError(f"cannot compare with a {type(value).__name__}: {value!r}")


def _matching(target: _Target, values: Iterable[Any]) -> _Target:
    """The target to compare these values with: a declared field's indexed column, unless a
    value is not of the field's type. The column's affinity would turn "1" into 1 (or 1 into
    "1" for text), and a filter must match the same records whether a field is declared or not.
    """
    if target.kind is None or all(v is None or _fits(v, target.kind) for v in values):
        return target
    return _Target("json_extract(t.body, ?)", (target.path,), target.path)


def _equals(target: _Target, value: Any) -> _Compiled:
    target = _matching(target, [value])
    if isinstance(value, (dict, list)):
        return f"{target.sql} IS json(?)", [*target.params, _query_value(value, structured=True)]
    return f"{target.sql} IS ?", [*target.params, _query_value(value)]


def _not_equals(target: _Target, value: Any) -> _Compiled:
    sql, params = _equals(target, value)
    return f"NOT ({sql})", params


def _comparison(symbol: str) -> Callable[[_Target, Any], _Compiled]:
    def compile_(target: _Target, value: Any) -> _Compiled:
        if value is None:
            raise QueryError(f"cannot use {symbol} with null")
        target = _matching(target, [value])
        return f"{target.sql} {symbol} ?", [*target.params, _query_value(value)]

    return compile_


def _in_values(values: Any) -> list[Any]:
    """$in's and $nin's values, checked (on either engine)."""
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise QueryError(f"$in and $nin take a list, not {type(values).__name__}")
    return [_query_value(v) for v in values]


def _exists_test(value: Any) -> str:
    """$exists's value, checked, as the SQL test it makes (on either engine)."""
    if not isinstance(value, bool):
        raise QueryError("$exists takes true or false")
    return "IS NOT NULL" if value else "IS NULL"


def _in(target: _Target, values: Any) -> _Compiled:
    checked = _in_values(values)
    target = _matching(target, checked)
    return f"{target.sql} IN (SELECT value FROM json_each(?))", [*target.params, _dumps(checked)]


def _not_in(target: _Target, values: Any) -> _Compiled:
    sql, params = _in(target, values)
    return f"({target.sql} IS NULL OR NOT {sql})", [*target.params, *params]


def _exists(target: _Target, value: Any) -> _Compiled:
    test = _exists_test(value)
    if target.path is None:
        return f"{target.sql} {test}", list(target.params)
    return f"json_type(t.body, ?) {test}", [target.path]


def _contains(target: _Target, value: Any) -> _Compiled:
    """An array that has ``value`` as an element, or a string that has it as a substring."""
    value = _query_value(value)
    if value is None:
        raise QueryError("$contains needs a value")
    if target.path is None:
        return f"instr({target.sql}, ?) > 0", [*target.params, str(value)]
    return (
        "(CASE json_type(t.body, ?) "
        "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(t.body, ?) WHERE value IS ?) "
        "WHEN 'text' THEN instr(json_extract(t.body, ?), ?) > 0 ELSE 0 END)",
        [target.path, target.path, value, target.path, value if isinstance(value, str) else None],
    )


_OPERATORS: _Operators = {
    "$eq": _equals,
    "$ne": _not_equals,
    "$gt": _comparison(">"),
    "$gte": _comparison(">="),
    "$lt": _comparison("<"),
    "$lte": _comparison("<="),
    "$in": _in,
    "$nin": _not_in,
    "$exists": _exists,
    "$contains": _contains,
}


def _all_of(
    filters: Any, target: Callable[[str], _Target], operators: _Operators, joiner: str = " AND "
) -> _Compiled:
    if not isinstance(filters, (list, tuple)) or not filters:
        raise QueryError("$and and $or take a non-empty list of filters")
    compiled = [_compile_where(f, target, operators) for f in filters]
    return "(" + joiner.join(f"({sql})" for sql, _ in compiled) + ")", [
        p for _, params in compiled for p in params
    ]


def _any_of(filters: Any, target: Callable[[str], _Target], operators: _Operators) -> _Compiled:
    return _all_of(filters, target, operators, " OR ")


def _none_of(where: Any, target: Callable[[str], _Target], operators: _Operators) -> _Compiled:
    sql, params = _compile_where(where, target, operators)
    return f"NOT ({sql})", params


_LOGICAL: dict[str, Callable[[Any, Callable[[str], _Target], _Operators], _Compiled]] = {
    "$and": _all_of,
    "$or": _any_of,
    "$not": _none_of,
}


# On PostgreSQL: the same operators, matching the records SQLite matches. A field
# read from the JSON compares as json_extract's value would in SQLite: null and
# missing alike; numbers by value, true and false being 1 and 0; text by its bytes;
# objects and arrays as their JSON text; and numbers before text, so that "b" > 1
# (sql/postgres: _memstore_class, _memstore_number, _memstore_text). A declared
# field's column is used when every value is of its type, as _matching does.


def _pg_target(target: _Target, values: Iterable[Any]) -> _Target:
    """The target as PostgreSQL compares it with these values: its column when every value
    is of the column's type, else its value as JSON (kind "json")."""
    if target.kind == "json" or target.path is None:  # a meta column: see _pg_bind
        return target
    if all(v is None or _fits(v, target.kind or "text") for v in values):
        return target
    return _pg_body_value(target.path)


def _pg_bind(target: _Target, value: Any) -> Any:
    """A value compared with a column, as SQLite binds it: a meta column (key, created_at,
    ...) is text, and SQLite gives a number compared with it that column's affinity, so it
    is compared as SQLite writes it as text; true and false are 1 and 0."""
    if value is None or isinstance(value, str):
        return value
    if target.path is None:
        return _sqlite_text(value)
    if isinstance(value, bool) and target.kind != "boolean":
        return int(value)
    return float(value) if target.kind == "real" else value


def _pg_number_value(value: Any) -> Any:
    """A number PostgreSQL computed, as SQLite would give it: a whole numeric an int,
    another a float."""
    if isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent  # 0 or more: written without a fraction
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    return value


def _pg_group_value(terms: Sequence[Any]) -> Any:
    """A group's value from its terms (class, number, text): json_extract's in SQLite."""
    kind, number, text = terms
    return None if kind == 0 else _pg_number_value(number) if kind == 1 else text


def _sqlite_text(value: int | float) -> str:
    """A number as SQLite turns it into text: 1 and 1.0 stay apart, 1e300 is 1.0e+300, a
    whole float below 1e17 has all its digits. (A float its shortest form does not give
    back, as 1/3, SQLite writes with 17 digits where this writes the shortest.)"""
    if isinstance(value, int):
        return str(int(value))
    if value.is_integer() and abs(value) < 1e17:
        return f"{int(value)}.0"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + ("e" + exponent if exponent else "")


def _pg_number(value: Any) -> Any:
    """A number (or a bool, as SQLite binds it: 1 or 0) to compare with _memstore_number."""
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, int) else Decimal(repr(value))


def _pg_is(sql: str, params: Sequence[Any], value: Any) -> _Compiled:
    """JSON value ``sql`` IS ``value``, as in SQLite (never NULL)."""
    if value is None:
        return f"({sql} IS NULL OR json_typeof({sql}) = 'null')", [*params, *params]
    if isinstance(value, (int, float)):
        return f"coalesce(_memstore_number({sql}) = ?, false)", [*params, _pg_number(value)]
    return f"coalesce(_memstore_text({sql}) = ?, false)", [*params, value]


def _pg_equals(target: _Target, value: Any) -> _Compiled:
    target = _pg_target(target, [value])
    if isinstance(value, (dict, list)):  # as its JSON text, as json(?) in SQLite
        return _pg_is(_pg_json(target), target.params, _query_value(value, structured=True))
    value = _query_value(value)
    if target.kind != "json":  # = (which an index serves), never NULL as SQLite's IS
        if value is None:
            return f"{target.sql} IS NULL", list(target.params)
        value = _pg_bind(target, value)
        sql = f"({target.sql} = ? AND {target.sql} IS NOT NULL)"
        return sql, [*target.params, value, *target.params]
    sql, params = _pg_is(target.sql, target.params, value)
    written = _pg_written(value) if target.path is not None else None
    if written is None:
        return sql, params
    return f"((strpos(t.body, ?) > 0 OR strpos(t.body, chr(92)) > 0) AND {sql})", [
        written,
        *params,
    ]


def _pg_written(value: Any) -> str | None:
    """How a record's JSON text must hold a text equal to ``value``, if it has no escape
    (no backslash): the text between quotes. A filter on PostgreSQL tests that first (a
    search for bytes, about 0.1 µs a row), before reading the field from the JSON (the
    text parsed twice, about 2 µs): a record without it cannot match. None where a match
    need not be written so: a text JSON would escape, or one that an object's or an
    array's own text could equal (_memstore_text compares those too)."""
    if not isinstance(value, str) or value[:1] in ("{", "[", " "):
        return None
    if any(c in value for c in '"\\') or any(ord(c) < 32 for c in value):
        return None
    return f'"{value}"'


def _pg_json(target: _Target) -> str:
    return target.sql if target.kind == "json" else f"to_json({target.sql})"


def _pg_not_equals(target: _Target, value: Any) -> _Compiled:
    sql, params = _pg_equals(target, value)
    return f"NOT ({sql})", params


def _pg_comparison(symbol: str) -> Callable[[_Target, Any], _Compiled]:
    above = symbol.startswith(">")

    def compile_(target: _Target, value: Any) -> _Compiled:
        if value is None:
            raise QueryError(f"cannot use {symbol} with null")
        value = _query_value(value)
        target = _pg_target(target, [value])
        if target.kind != "json":
            return f"{target.sql} {symbol} ?", [*target.params, _pg_bind(target, value)]
        sql, params = target.sql, list(target.params)
        if isinstance(value, str):  # numbers sort before text
            return (
                f'(CASE _memstore_class({sql}) WHEN 2 THEN _memstore_text({sql}) COLLATE "C" '
                f"{symbol} ? WHEN 1 THEN {'false' if above else 'true'} END)",
                [*params, *params, value],
            )
        return (
            f"(CASE _memstore_class({sql}) WHEN 1 THEN _memstore_number({sql}) {symbol} ? "
            f"WHEN 2 THEN {'true' if above else 'false'} END)",
            [*params, *params, _pg_number(value)],
        )

    return compile_


def _pg_in(target: _Target, values: Any) -> _Compiled:
    checked = _in_values(values)
    target = _pg_target(target, checked)
    if not checked:
        return "false", []
    if target.kind != "json":  # = ANY is NULL where SQLite's IN is (a NULL on either side)
        kind = target.kind or "text"
        array = {"text": "text[]", "integer": "bigint[]", "real": "float8[]"}.get(kind, "boolean[]")
        given = [_pg_bind(target, v) for v in checked]
        return f"{target.sql} = ANY(?::{array})", [*target.params, given]
    numbers = [Decimal(_pg_number(v)) for v in checked if isinstance(v, (int, float))]
    texts = [v for v in checked if isinstance(v, str)]
    sql, params = target.sql, list(target.params)
    # As SQLite's IN: NULL for a NULL value, or for no match when the list holds a NULL.
    otherwise = "NULL" if None in checked else "false"
    return (
        f"(CASE WHEN _memstore_class({sql}) = 0 THEN NULL "
        f"WHEN _memstore_number({sql}) = ANY(?::numeric[]) "
        f"OR _memstore_text({sql}) = ANY(?::text[]) THEN true ELSE {otherwise} END)",
        [*params, *params, numbers, *params, texts],
    )


def _pg_not_in(target: _Target, values: Any) -> _Compiled:
    sql, params = _pg_in(target, values)
    missing, missing_params = _pg_is(_pg_json(target), target.params, None)
    return f"({missing} OR NOT {sql})", [*missing_params, *params]


def _pg_exists(target: _Target, value: Any) -> _Compiled:
    test = _exists_test(value)
    if target.kind == "json" and target.path is None:  # as json_extract(...) IS [NOT] NULL
        return f"(_memstore_class({target.sql}) = 0) {'IS FALSE' if value else 'IS TRUE'}", list(
            target.params
        )
    found = target if target.path is None else _pg_body_value(target.path)
    return f"{found.sql} {test}", list(found.params)


def _pg_contains(target: _Target, value: Any) -> _Compiled:
    value = _query_value(value)
    if value is None:
        raise QueryError("$contains needs a value")
    if target.kind == "json" and target.path is None:  # as instr(json_extract(...), ?) > 0
        return f"strpos(_memstore_text({target.sql}), ?) > 0", [*target.params, str(value)]
    if target.path is None:
        return f"strpos({target.sql}, ?) > 0", [*target.params, str(value)]
    found = _pg_body_value(target.path)
    sql, path = found.sql, list(found.params)
    element, element_params = _pg_is("e.value", [], value)
    # Not text: NULL, as SQLite's instr() with a NULL.
    text = "strpos(" + sql + " #>> '{}', ?) > 0" if isinstance(value, str) else "NULL"
    return (
        f"(CASE json_typeof({sql}) WHEN 'array' THEN EXISTS (SELECT 1 FROM "
        f"json_array_elements({sql}) AS e WHERE {element}) WHEN 'string' THEN {text} "
        "ELSE false END)",
        [*path, *path, *element_params, *([*path, value] if isinstance(value, str) else [])],
    )


_PG_OPERATORS: _Operators = {
    "$eq": _pg_equals,
    "$ne": _pg_not_equals,
    "$gt": _pg_comparison(">"),
    "$gte": _pg_comparison(">="),
    "$lt": _pg_comparison("<"),
    "$lte": _pg_comparison("<="),
    "$in": _pg_in,
    "$nin": _pg_not_in,
    "$exists": _pg_exists,
    "$contains": _pg_contains,
}


def _inflate(*args: Any) -> str | None:
    """SQL function: a compressed checkpoint state as JSON text."""
    (packed,) = args
    return None if packed is None else _zlib().decompress(packed).decode("utf-8")


class _Quantiles:
    """SQL aggregate: the given quantiles (a JSON list of 0..1) of the numeric values, as JSON."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.spec = "[]"

    def step(self, value: Any, spec: str) -> None:
        self.spec = spec
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.values.append(value)

    def final(self) -> str | None:
        if not self.values:
            return None
        values = sorted(self.values)
        result = []
        for q in json.loads(self.spec):
            position = (len(values) - 1) * q
            low, high = math.floor(position), math.ceil(position)
            result.append(values[low] + (values[high] - values[low]) * (position - low))
        return json.dumps(result)


# --------------------------------------------------------------------------
# For tools that read the file with their own SQL (the Datasette plugin, say)
# --------------------------------------------------------------------------


def quote_identifier(identifier: str) -> str:
    """Quote an SQL identifier: every table, column, index and trigger name memstore writes
    goes through here.

    >>> quote_identifier("my table")
    '"my table"'

    Double quotes inside the name are doubled.
    """
    return '"' + identifier.replace('"', '""') + '"'


def field_column(path: str) -> str:
    """The generated column holding a declared field: ``field_column("payload.text")`` is
    ``"payload__text"``."""
    return path.replace(".", "__")


def check_collection_name(name: object) -> str:
    """Return ``name`` if it may name a collection, else raise ValidationError saying why.

    ASCII letters, digits and single underscores, starting with a letter, at
    most 64 characters, not starting with ``sqlite`` or ``memstore_``, nor
    containing ``_fts``.
    """
    if (
        not isinstance(name, str)
        or not _COLLECTION_NAME.match(name)
        or len(name) > MAX_NAME_LENGTH
        or "__" in name
        or name.lower().startswith(("sqlite", "memstore_"))  # sqlite_* names are SQLite's
        or re.search(r"_fts(_|$)", name.lower())
    ):
        raise ValidationError(
            f"invalid collection name {name!r}: use ASCII letters, digits and single "
            f"underscores, starting with a letter, at most {MAX_NAME_LENGTH} characters, "
            "not starting with sqlite or memstore_, nor containing _fts"
        )
    return name


#: Whether messages wait to be indexed for search, or deleted ones to leave the
#: index: one row, 1 or 0. Messages are indexed in batches, not one FTS5 write
#: per message (sql/0008, sql/0013): a tool that searches memstore_messages_fts
#: with its own SQL runs this first and, on 1, the statements of
#: INDEX_PENDING_MESSAGES_SQL in one write transaction.
PENDING_MESSAGES_SQL = (
    "SELECT (SELECT coalesce(max(id), 0) FROM memstore_messages) > indexed_to "
    "OR EXISTS (SELECT 1 FROM memstore_messages_fts_gone) "
    "FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts'"
)
INDEX_PENDING_MESSAGES_SQL = (
    "INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content) "
    "SELECT 'delete', id, content FROM memstore_messages_fts_gone",
    "DELETE FROM memstore_messages_fts_gone",
    "INSERT INTO memstore_messages_fts (rowid, content) SELECT id, content FROM memstore_messages "
    "WHERE id > (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')",
    "UPDATE memstore_fts_progress SET indexed_to = "
    "(SELECT coalesce(max(id), 0) FROM memstore_messages) WHERE fts = 'memstore_messages_fts'",
)


def fts_table(collection: str) -> str:
    """The FTS5 table indexing a collection's ``fts`` paths: ``fts_table("notes")`` is
    ``"notes_fts"``."""
    return collection + "_fts"


#: SQLite's clock in memstore's timestamp format (ISO-8601 UTC, six fractional digits,
#: sorting as text): for tools' own SQL that writes or compares memstore's timestamps.
SQL_NOW = _SQL_NOW


def new_key() -> str:
    """A new time-sortable key, as ``Collection.add`` gives records: a ULID (26
    characters; later keys sort after earlier ones, within a process strictly).

    >>> new_key()
    '01KBN4Y6R7Q9Y5ZV2W8T3M1C0D'
    """
    return _new_key()


def live_clause(alias: str | None = None) -> str:
    """An SQL condition true for a collection's live rows: those not past their TTL.

    >>> f"SELECT t.key FROM notes AS t WHERE {live_clause('t')}"

    Expired rows stay in the table until ``cleanup()`` removes them, and
    memstore's own reads leave them out; a tool's own SQL does the same with
    this. It reads SQLite's clock, in memstore's timestamp format, so any
    SQLite 3.40 evaluates it.
    """
    column = "expires_at" if alias is None else f"{quote_identifier(alias)}.expires_at"
    return f"({column} IS NULL OR {column} > {_SQL_NOW})"


# --------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------


def _literal(text: str) -> str:
    """An SQL string literal, for DDL where values cannot be bound."""
    return "'" + text.replace("'", "''") + "'"


def _json_path(field: str) -> str:
    """A dotted field name as an SQLite JSON path; numeric parts index arrays."""
    if not isinstance(field, str):
        raise QueryError(f"cannot use {field!r:.60} as a field path")
    return _json_path_of(str(field))


@functools.lru_cache(maxsize=4096)  # every query's fields: a few names, again and again
def _json_path_of(field: str) -> str:
    """_json_path's work, for a str."""
    parts = ["$"]
    for segment in field.split("."):
        if segment.isdigit():
            parts.append(f"[{segment}]")
        elif _PLAIN_SEGMENT.match(segment):
            parts.append("." + segment)
        elif segment and '"' not in segment and segment.isprintable():
            parts.append(f'."{segment}"')
        else:
            raise QueryError(f"cannot use {field!r} as a field path")
    return "".join(parts)


def _names(value: str | Sequence[str] | None, option: str) -> list[str]:
    """A field name or a list of them, as order_by and group_by take."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise QueryError(f"{option} takes a field name or a list of them, not {value!r}")


def _check_field_path(path: object) -> str:
    if (
        not isinstance(path, str)
        or not _FIELD_PATH.match(path)
        or "__" in path
        or len(field_column(path)) > MAX_NAME_LENGTH
        or field_column(path).lower() in RESERVED_COLUMNS
        or path.lower().startswith(INTERNAL_PREFIX)
    ):
        raise ValidationError(
            f"invalid field {path!r}: use a dotted path of ASCII identifiers "
            f"(not {', '.join(sorted(RESERVED_COLUMNS))})"
        )
    return path


def _check_columns_distinct(paths: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for path in paths:
        other = seen.setdefault(field_column(path).lower(), path)
        if other != path:
            raise ValidationError(f"fields {other!r} and {path!r} would share a column")


def _normalize_fields(fields: Mapping[str, type | str] | None) -> dict[str, str]:
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise ValidationError("fields must be a dict of {path: type}")
    result = {}
    for path, kind in fields.items():
        _check_field_path(path)
        name = _PYTHON_FIELD_TYPES.get(kind) if isinstance(kind, type) else kind
        if not isinstance(name, str) or name not in FIELD_TYPES:
            raise ValidationError(
                f"field {path!r}: type must be str, int, float or bool "
                f"(or {', '.join(FIELD_TYPES)}), not {kind!r}"
            )
        result[path] = name
    return result


def _normalize_indexes(
    indexes: Sequence[str | Sequence[str] | Mapping[str, Any]] | None,
) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """Index declarations as ((field, ...), unique) pairs, checked."""
    if indexes is None:
        return ()
    if isinstance(indexes, (str, Mapping)) or not isinstance(indexes, Sequence):
        raise ValidationError("indexes must be a list: [('a', 'b'), {'fields': [...], ...}]")
    found = []
    for entry in indexes:
        unique: object = False
        if isinstance(entry, Mapping):
            if set(entry) - {"fields", "unique"}:
                raise ValidationError(
                    f"an index is {{'fields': [...], 'unique': bool}}: {entry!r:.80}"
                )
            fields, unique = entry.get("fields"), entry.get("unique", False)
        else:
            fields = entry
        if isinstance(fields, str):
            fields = (fields,)
        if (
            not isinstance(fields, (list, tuple))
            or not 1 <= len(fields) <= 8
            or not isinstance(unique, bool)
        ):
            raise ValidationError(f"an index takes 1 to 8 field names: {entry!r:.80}")
        for field in fields:
            if not isinstance(field, str) or (
                field.lstrip("-") not in META_COLUMNS and not _FIELD_PATH.match(field.lstrip("-"))
            ):
                raise ValidationError(f"invalid index field {field!r:.60}")
        if len({f.lstrip("-") for f in fields}) != len(fields):
            raise ValidationError(f"an index names each field once: {entry!r:.80}")
        found.append((tuple(fields), unique))
    return tuple(dict.fromkeys(found))


def _index_dicts(indexes: tuple[tuple[tuple[str, ...], bool], ...]) -> list[dict[str, Any]]:
    """Index declarations as the registry, exports and ``Collection.indexes`` show them."""
    return [{"fields": list(fields), "unique": unique} for fields, unique in indexes]


def _normalize_hygiene(hygiene: object) -> dict[str, Any] | None:
    """hygiene=True or {"dedup": "exact" | "near" | None, "threshold": 0.95,
    "policy": "skip" | "merge" | "keep"}."""
    if hygiene is None or hygiene is False:
        return None
    if hygiene is True:
        return {}  # on, with the settings it has (or the defaults)
    if not isinstance(hygiene, Mapping) or set(hygiene) - {"dedup", "policy", "threshold"}:
        raise ValidationError(
            f'hygiene is True or {{"dedup": "exact", "policy": "skip"}}, not {hygiene!r:.80}'
        )
    dedup, policy = hygiene.get("dedup"), hygiene.get("policy", "skip")
    if dedup not in (None, "exact", "near"):
        raise ValidationError(f'hygiene dedup is "exact", "near" or None, not {dedup!r}')
    if policy not in DEDUP_POLICIES:
        raise ValidationError(f"hygiene policy is one of {DEDUP_POLICIES}, not {policy!r}")
    found: dict[str, Any] = {"dedup": dedup, "policy": policy}
    if dedup == "near":
        threshold = _finite(hygiene.get("threshold", 0.95), "threshold")
        if not 0 < threshold <= 1:
            raise ValidationError(f"threshold is a cosine similarity in (0, 1], not {threshold}")
        found["threshold"] = threshold
    elif "threshold" in hygiene:
        raise ValidationError('a threshold is for dedup "near"')
    return found


def _normalize_fts(fts: Sequence[str] | None) -> list[str]:
    if fts is None:
        return []
    if isinstance(fts, str) or not isinstance(fts, Sequence):
        raise ValidationError("fts must be a list of field paths")
    return list(dict.fromkeys(_check_field_path(path) for path in fts))


def _wrong_type(path: str, kind: str, value: object) -> ValidationError:
    return ValidationError(f"field {path!r} must be {kind}, not {type(value).__name__}: {value!r}")


def _fits(value: object, kind: str) -> bool:
    """Whether a value (of a subclass, say a str enum) may be stored in a field of this kind."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    if kind == "integer" and isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        return False  # the column would hold a rounded float, get() the exact int
    return isinstance(value, FIELD_TYPES[kind][1])


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise ValidationError(f"a key must be a str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise ValidationError(
            f"a key must be 1 to {MAX_KEY_LENGTH} characters without NUL, got {len(key)}"
        )
    return key  # a lone surrogate fails when bound, as a ValidationError too


def _strings(values: object, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ValidationError(f"{name} must be a list of strings, not {values!r}")
    if not all(isinstance(v, str) for v in values):
        raise ValidationError(f"{name} must be a list of strings, not {values!r}")
    return list(values)


def _tags(values: object) -> list[str]:
    """Tags (of a thread, a checkpoint): strings without NUL, which PostgreSQL's JSON
    cannot compare (one such tag would fail every search by tags there)."""
    tags = _strings(values, "tags")
    if any("\x00" in tag for tag in tags):
        raise ValidationError(f"a tag cannot hold NUL (U+0000): {tags!r:.80}")
    return tags


def _items(values: Any, name: str) -> Iterable[Any]:
    """An iterable of items (a list, a generator), not a string, a mapping or a scalar."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValidationError(
            f"{name} must be a list (or an iterable) of items, not {values!r:.60}"
        )
    return values


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _timestamp(value: object) -> str:
    """An ISO-8601 UTC timestamp in memstore's format, from text, an aware datetime, or now."""
    if value is None:
        return _iso(_utcnow())
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise ValidationError(f"not an ISO-8601 timestamp: {value!r}") from err
    if not isinstance(value, datetime):
        raise ValidationError(f"a timestamp must be ISO-8601 text or a datetime, not {value!r}")
    if value.tzinfo is None:
        raise ValidationError(f"a timestamp needs a time zone (say +00:00 or Z): {value!r}")
    try:
        return _iso(value.astimezone(UTC))
    except (OverflowError, ValueError) as err:
        raise ValidationError(
            f"timestamp out of range (years 1 to 9999 in UTC): {value!r}"
        ) from err


def _moment(value: object, name: str, error: type[MemstoreError] = QueryError) -> str:
    """A point in time given for ``name`` (as_of, known_at, valid_from, at): an aware
    datetime or ISO-8601 text with a time zone, as memstore's timestamp; ``error`` says
    what is wrong."""
    if value is None:
        raise error(f"{name} needs a time, not None")
    if value in (NEVER_BEFORE, NEVER_AFTER):  # the unbounded ends, as exported
        return str(value)
    try:
        return _timestamp(value)
    except ValidationError as err:
        raise error(f"{name}: {err}") from None


def _moment_or_now(value: object, name: str, error: type[MemstoreError] = QueryError) -> str:
    """``_moment``, with None for now."""
    return _iso(_utcnow()) if value is None else _moment(value, name, error)


def _optional_timestamp(value: object) -> str | None:
    return None if value is None else _timestamp(value)


def _check_field(field: object) -> None:
    if not isinstance(field, str) or not field:
        raise QueryError(f"a field name must be a non-empty string, not {field!r}")


def _check_count(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
        raise ValidationError(f"{name} must be a whole number from 0 to 2**63-1, not {value!r:.60}")


def _check_by(by: object) -> None:
    if by not in ("created", "updated"):
        raise ValidationError(f'by must be "created" or "updated", not {by!r:.60}')


def _check_batch_size(value: object) -> None:
    _check_count(value, "batch_size")
    if value == 0:
        raise ValidationError("batch_size must be at least 1")


#: The units a duration string may have: "90s", "15m", "12h", "7d", "2w".
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*\Z")


def parse_duration(text: str, name: str = "duration") -> timedelta:
    """A duration string as a timedelta: a number and a unit, as in 90s, 15m, 12h, 7d, 2w.

    >>> parse_duration("7d")
    datetime.timedelta(days=7)

    Every duration memstore takes (``ttl``, ``older_than``, ``recency``) may be
    such a string, a timedelta or a number of seconds; the command line takes
    the strings. A bare number in a string ("7") is refused, so that it never
    means seven seconds by surprise.
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(
            f"{name} {text!r:.60} is not a duration: give a number and a unit, "
            "as in 90s, 15m, 12h, 7d or 2w"
        )
    return timedelta(seconds=_seconds(float(match[1]) * DURATION_UNITS[match[2]], name))


def _seconds(value: object, name: str) -> float:
    """A positive duration: a timedelta, a number of seconds or a string such as "7d"."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _finite(value, name)
    elif isinstance(value, str):
        return parse_duration(value, name).total_seconds()
    else:
        raise ValidationError(
            f"{name} must be a timedelta, seconds or a string such as '7d', not {value!r:.60}"
        )
    if not 0 < seconds <= MAX_DURATION.total_seconds():
        raise ValidationError(
            f"{name} must be more than 0 and at most 1000 years "
            f"({MAX_DURATION.total_seconds():.0f} seconds), not {value!r:.60}"
        )
    return seconds


def _finite(value: object, name: str) -> float:
    """A number as a finite float, or a ValidationError (10**400 is too big for one)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValidationError(f"{name} must be a number, not {value!r:.60}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError(f"{name} must be a finite number, not {value!r:.60}")
    return number


def _utf8(text: str) -> bytes:
    """Text as UTF-8; a lone surrogate (which no JSON file may hold) is a ValidationError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValidationError(f"text cannot be stored: {err}") from err


# One encoder for every record: json.dumps with options builds a new one per call.
_STR_TYPE = frozenset({str})
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps(value: Any) -> str:
    """JSON text for a value, refusing what JSON cannot represent (sets, bytes, NaN, cycles,
    keys that are not strings)."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as err:
        raise ValidationError(f"value cannot be stored as JSON: {err}") from err
    try:
        _check_keys(value)
    except RecursionError as err:  # as deep as the encoder could go, but no deeper
        raise ValidationError(f"value cannot be stored as JSON: {err}") from err
    return text


def _check_keys(value: Any) -> None:
    """Refuse dict keys that are not strings. JSON writes None, True and 1 as "null", "true"
    and "1", so {"null": 5, None: "x"} would become an object with one key twice: the
    index would see one value and get() the other. Runs on every write, so each level is
    looked at with C-speed passes over the types of its keys and values (about 1 µs for a
    flat record); _dumps has encoded the value first, so it holds no cycle."""
    kind = type(value)
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        if not _STR_TYPE.issuperset(map(type, value)):
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None or None in value:
                raise ValidationError(
                    f"keys must be strings, not {type(bad).__name__}: {bad!r:.60}"
                )
        children: Iterable[Any] = value.values()
    elif kind is list or isinstance(value, (list, tuple)):
        children = value
    else:
        return
    if not _SCALAR_TYPES.issuperset(map(type, children)):
        for child in children:
            if type(child) not in _SCALAR_TYPES:
                _check_keys(child)


def _zlib() -> Any:
    """zlib, imported when a large checkpoint state first needs it: import memstore stays light."""
    import zlib

    return zlib


def _sha256(data: bytes) -> str:
    import hashlib  # only memoize needs it

    return hashlib.sha256(data).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stamp_after(previous: str) -> str:
    """Now as store time, but a millisecond after ``previous`` (when a record last
    changed) if the clock has not moved past it: a record's versions then follow each
    other in store time whatever the speed of the changes."""
    now = _iso(_utcnow())
    if now > previous:
        return now
    with contextlib.suppress(ValueError):  # another tool's unreadable time: now it is
        return _iso(datetime.fromisoformat(previous) + timedelta(milliseconds=1))
    return now


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC to the millisecond, written with six digits: sorts as text, reads in
    any tool, and is exactly what the SQL defaults (``_SQL_NOW``) write, so that times
    from Python and from SQLite compare as they happened."""
    return moment.isoformat(timespec="milliseconds")[:23] + "000Z"  # faster than strftime


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_key_lock = threading.Lock()
_last_key = [0, 0]  # milliseconds, random part of the last key made


def _new_key() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, strictly increasing in this process."""
    milliseconds = time.time_ns() // 1_000_000
    with _key_lock:
        if milliseconds <= _last_key[0]:
            milliseconds, random_part = _last_key[0], _last_key[1] + 1
        else:
            random_part = int.from_bytes(os.urandom(10), "big")
        _last_key[:] = [milliseconds, random_part]
    value = (milliseconds << 80) | (random_part & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@functools.cache
def _allowing_extra_fields(model: type) -> Any:
    """The model as a subclass keeping fields it does not declare, so they survive a round trip."""
    if not hasattr(model, "model_validate"):
        raise ValidationError(f"model must be a pydantic model class, not {model!r}")
    config = dict(getattr(model, "model_config", {}))
    if config.get("extra") == "allow":
        return model
    config["extra"] = "allow"
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})
