"""memstore's Datasette plugin: browse an agent's memory in a browser.

Installed with memstore (entry point ``datasette: memstore``), so a plain
``datasette agent.db`` picks it up; from a checkout, ``datasette agent.db
--plugins-dir plugins``. Works on Datasette 0.65 and 1.0.

- Table pages read well: memstore's internal tables are hidden, collections
  and memory tables get facets and a default sort, JSON cells are pretty
  printed (folded when long). FTS tables are wired by memstore itself.
- /-/memstore: an overview of every collection and memory structure; the landing
  page (``/`` leads there) when a memstore file is open.
- /-/memstore/<db>/threads/<id>: a conversation as a transcript, with usage and branches.
- /-/memstore/<db>/events/<log>: an event log's timeline, a chart by kind.
- /-/memstore/<db>/checkpoints/<thread>: checkpoint history with diffs.
- /-/memstore/search?q=: one search box over every collection, message and event.
- /-/memstore/<db>/similar/<collection>/<key>: the records nearest a record by its
  vectors (needs numpy); each key cell of a collection with vectors links there.
- /-/memstore/<db>/facts/<collection>/<key>: a temporal record's timeline, each fact
  with the period it held and when the store learned it; key cells link there.

Read-only: it adds no write path, and shows (or counts) only the tables the
actor may view. No configuration is needed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
import weakref
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from datasette import hookimpl, hookspecs
from datasette.utils import tilde_encode
from datasette.utils.asgi import Response
from jinja2 import ChoiceLoader, FileSystemLoader
from markupsafe import Markup

import memstore

# Columns holding JSON in memstore's tables, pretty printed in table pages.
JSON_COLUMNS = frozenset(
    {
        "body",
        "payload",
        "state",
        "metadata",
        "tags",
        "props",
        "tool_calls",
        "data",
        "value",
        "fields",
        "fts",
    }
)
FOLD_ABOVE = 240  # characters of pretty JSON past which a cell is folded

# Table settings for memstore's own tables: facets and default sort.
LAYER_TABLES: dict[str, dict[str, Any]] = {
    "memstore_events": {"facets": ["log", "kind"], "sort_desc": "id"},
    "memstore_logs": {"sort": "name"},
    "memstore_threads": {
        "facets": ["status", "user_id", "agent_id"],
        "sort_desc": "last_message_at",
        "label_column": "title",
    },
    "memstore_messages": {"facets": ["role", "model"], "sort_desc": "id"},
    "memstore_merges": {"sort_desc": "id"},
    "memstore_checkpoints": {"facets": ["thread_id", "branch"], "sort_desc": "created_at"},
    "memstore_nodes": {"facets": ["graph", "kind"]},
    "memstore_edges": {"facets": ["graph", "relation"]},
    "memstore_cache": {"facets": ["cache"]},
    "memstore_versions": {"facets": ["collection", "operation"], "sort_desc": "id"},
    # memstore_langgraph's checkpointer (schema 9)
    "memstore_lg_checkpoints": {
        "facets": ["thread_id", "checkpoint_ns"],
        "sort_desc": "created_at",
    },
    "memstore_lg_writes": {"facets": ["thread_id", "channel"], "sort_desc": "created_at"},
    "memstore_lg_blobs": {"facets": ["thread_id", "channel"]},
    # memstore_langchain's byte store (schema 10)
    "memstore_kv": {"facets": ["namespace"], "sort_desc": "updated_at"},
}
KIND_COLORS = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]

# What startup found in each Datasette instance: database name -> table settings.
# Per database, its collections with vectors (as the plugin found them at startup).
_VECTORS: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# Per database, its temporal collections (facts with validity periods).
_TEMPORAL: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_FOUND: weakref.WeakKeyDictionary[Any, dict[str, dict[str, dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)


# --------------------------------------------------------------------------
# Finding memstore databases and configuring their tables
# --------------------------------------------------------------------------


async def _memstore_tables(db: Any) -> dict[str, dict[str, Any]] | None:
    """Table settings for a memstore database, or None for any other database."""
    try:
        app_id = (await db.execute("PRAGMA application_id")).rows[0][0]
        if app_id != memstore.APPLICATION_ID:
            return None
        rows = (await db.execute("SELECT * FROM _memstore_collections ORDER BY name")).rows
        _TEMPORAL[db] = {r["name"] for r in rows if dict(r).get("temporal")}
        rows = [(r["name"], r["fields"], _vector_settings(dict(r))) for r in rows]
        names = {
            r[0]
            for r in (await db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")).rows
        }
    except Exception:
        return None
    tables: dict[str, dict[str, Any]] = {
        "_memstore_collections": {"hidden": True},
        "memstore_fts_progress": {"hidden": True},
        "memstore_messages_fts_gone": {"hidden": True},
        # The words of graphs' nodes and edges, and their index (schema 12).
        "memstore_graph_text": {"hidden": True},
        # Bookkeeping of vector memory, and SQLite's own counter for its AUTOINCREMENT.
        "memstore_vector_log": {"hidden": True},
        "memstore_vector_log_trimmed": {"hidden": True},
        "sqlite_sequence": {"hidden": True},
    }
    for name, fields, *_ in rows:
        declared = json.loads(fields)
        facets = [
            memstore.field_column(p) for p, kind in declared.items() if kind in ("text", "boolean")
        ]
        tables[name] = {"facets": facets, "sort_desc": "updated_at", "label_column": "key"}
    for name, settings in LAYER_TABLES.items():
        if name in names:
            tables[name] = dict(settings)
    _VECTORS[db] = {name for name, _, vectors in rows if vectors}
    return tables


def _vector_settings(row: dict[str, Any]) -> dict[str, Any] | None:
    """A registry row's vectors declaration (files before schema 11 have none)."""
    return json.loads(row["vectors"]) if row.get("vectors") else None


def _is_temporal(datasette: Any, database: str, table: str) -> bool:
    db = datasette.databases.get(database) if _is_memstore(datasette, database) else None
    return db is not None and table in _TEMPORAL.get(db, ())


def _has_vectors(datasette: Any, database: str, table: str) -> bool:
    db = datasette.databases.get(database) if _is_memstore(datasette, database) else None
    return db is not None and table in _VECTORS.get(db, ())


@hookimpl
def startup(datasette: Any) -> Any:
    async def inner() -> None:
        found = {}
        for name, db in datasette.databases.items():
            tables = await _memstore_tables(db)
            if tables is not None:
                found[name] = tables
        _FOUND[datasette] = found
        config = getattr(datasette, "config", None)
        if isinstance(config, dict) and not hasattr(hookspecs, "get_metadata"):
            # Datasette 1.0 reads table settings from its configuration; the
            # user's own settings win over these defaults.
            databases = config.setdefault("databases", {})
            for db_name, tables in found.items():
                db_config = databases.setdefault(db_name, {}).setdefault("tables", {})
                for table, settings in tables.items():
                    db_config[table] = {**settings, **db_config.get(table, {})}

    return inner


if hasattr(hookspecs, "get_metadata"):  # Datasette 0.65: table settings are metadata

    @hookimpl
    def get_metadata(datasette: Any, key: Any, database: Any, table: Any) -> dict[str, Any]:
        found = _FOUND.get(datasette, {})
        return {"databases": {name: {"tables": tables} for name, tables in found.items()}}


def _is_memstore(datasette: Any, database: str | None) -> bool:
    return database in _FOUND.get(datasette, {})


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    """Before a table search (``?_search=``), index what memstore left waiting for the
    full-text index (it indexes in batches), so Datasette's own search sees every row."""

    def wrap(app: Any) -> Any:
        async def searched(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") == "http" and b"_search" in scope.get("query_string", b""):
                for name in list(_FOUND.get(datasette, {})):
                    with contextlib.suppress(Exception):  # a database gone: search goes on
                        await _index_pending(datasette.get_database(name))
            await app(scope, receive, send)

        return searched

    return wrap


# --------------------------------------------------------------------------
# Table pages: JSON cells
# --------------------------------------------------------------------------


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Any:
    if column == "key" and isinstance(value, str) and table:
        links = []
        fact_of = None
        base = f"/-/memstore/{quote(database, safe='')}"
        if _has_vectors(datasette, database, table):
            href = f"{base}/similar/{quote(table, safe='')}/{quote(value, safe='')}"
            links.append(
                Markup('<a class="memstore-similar" href="{}">similar</a>').format(
                    datasette.urls.path(href)
                )
            )
        if _is_temporal(datasette, database, table):
            # A superseded fact's row (its key: the subject's, char(31), a ULID) links to
            # its subject's timeline.
            columns = row.keys()  # a sqlite3.Row: `in` would look at its values
            fact_of = row["fact_of"] if "fact_of" in columns else None
            subject = fact_of or value
            href = f"{base}/facts/{quote(table, safe='')}/{quote(subject, safe='')}"
            links.append(
                Markup('<a class="memstore-similar" href="{}">timeline</a>').format(
                    datasette.urls.path(href)
                )
            )
        if links:
            shown = f"{fact_of} · superseded {value.rsplit(chr(31), 1)[-1]}" if fact_of else value
            return Markup("{} {}").format(shown, Markup(" ").join(links))
    if column not in JSON_COLUMNS or not isinstance(value, str) or not table:
        return None
    if not _is_memstore(datasette, database) or value[:1] not in ("{", "["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return _json_html(parsed)


def _json_pre(value: Any) -> tuple[str, Markup]:
    """Pretty JSON, and as an escaped <pre> block."""
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    return pretty, Markup('<pre class="memstore-json">{}</pre>').format(pretty)


def _json_html(value: Any) -> Markup:
    """Pretty JSON, escaped; folded into a <details> when long."""
    pretty, block = _json_pre(value)
    if len(pretty) <= FOLD_ABOVE:
        return block
    summary = json.dumps(value, ensure_ascii=False)[:80] + "…"
    return Markup("<details><summary>{}</summary>{}</details>").format(summary, block)


# On a memstore database's page, collections come first, then memstore's own
# tables: Datasette lists tables alphabetically, which interleaves them.
ORDER_TABLES_JS = """
(function () {
  var collections = %s;
  var divs = Array.prototype.slice.call(document.querySelectorAll(".db-table"));
  if (!divs.length || divs.some(function (d) { return d.parentNode !== divs[0].parentNode; })) {
    return;
  }
  var isCollection = function (div) {
    var link = div.querySelector("h3 a");
    return !!link && collections.indexOf(link.textContent.trim()) !== -1;
  };
  var ours = divs.filter(isCollection);
  var rest = divs.filter(function (d) { return !isCollection(d); });
  var heading = function (text) {
    var p = document.createElement("p");
    p.className = "memstore-group";
    p.textContent = text;
    return p;
  };
  var parent = divs[0].parentNode, marker = document.createComment("memstore");
  parent.insertBefore(marker, divs[0]);
  var group = document.createDocumentFragment();
  if (ours.length) {
    group.appendChild(heading("Collections"));
    ours.forEach(function (d) { group.appendChild(d); });
    if (rest.length) { group.appendChild(heading("Memory layers and other tables")); }
  }
  rest.forEach(function (d) { group.appendChild(d); });
  parent.replaceChild(group, marker);
})();
"""


@hookimpl
def extra_body_script(view_name: str, database: str | None, datasette: Any) -> Any:
    if view_name != "database" or not _is_memstore(datasette, database):
        return None

    async def inner() -> str:
        db = datasette.get_database(database)
        names = [r[0] for r in (await db.execute("SELECT name FROM _memstore_collections")).rows]
        return ORDER_TABLES_JS % json.dumps(sorted(names)).replace("</", "<\\/")

    return inner


@hookimpl
def extra_css_urls(datasette: Any) -> list[str]:
    return [datasette.urls.path("/-/memstore/memstore.css")]


CSS = """
pre.memstore-json { white-space: pre-wrap; margin: 0; font-size: 0.85em; max-width: 60em; }
.memstore-scroll { max-width: 100%; overflow-x: auto; }
.memstore-grid time { white-space: nowrap; }
.memstore-grid { border-collapse: collapse; margin-bottom: 1.5em; }
.memstore-grid th, .memstore-grid td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd;
  text-align: left; vertical-align: top; }
.memstore-grid tr.total td { font-weight: bold; border-top: 2px solid #999; }
.memstore-usage td:not(:first-child), .memstore-usage th:not(:first-child) { text-align: right; }
.memstore-results mark { background: #fff3a3; padding: 0 0.1em; }
.memstore-msg { border-left: 4px solid #999; padding: 0.4em 0.8em; margin: 0.6em 0; }
.memstore-msg.role-user { border-color: #4e79a7; background: #f3f7fb; }
.memstore-msg.role-assistant { border-color: #59a14f; background: #f4faf3; }
.memstore-msg.role-system { border-color: #bab0ac; background: #f7f7f7; }
.memstore-msg.role-tool { border-color: #f28e2b; background: #fdf6ee; }
.memstore-msg .meta { color: #666; font-size: 0.85em; }
.memstore-msg .content { white-space: pre-wrap; }
.memstore-msg details.tool-calls summary { cursor: pointer; color: #444; font-size: 0.9em; }
.memstore-status { padding: 0 0.4em; border-radius: 3px; font-size: 0.85em; background: #eee; }
.memstore-status.active { background: #dff0d8; } .memstore-status.merged { background: #d9edf7; }
.memstore-status.abandoned { background: #f2dede; }
.memstore-tree li.current > a { font-weight: bold; }
ul.memstore-tree, .memstore-tree ul { list-style: none; padding-left: 0; margin: 0.3em 0; }
ul.memstore-tree ul, .memstore-tree ul ul { padding-left: 1.2em; margin-left: 0.4em;
  border-left: 2px solid #ccc; }
.memstore-diff .added { color: #2e7d32; } .memstore-diff .removed { color: #c62828; }
.memstore-diff .changed { color: #8a6d00; }
.memstore-chart { width: 100%; }
.memstore-chart svg { display: block; width: 100%; height: auto; }
.memstore-legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.3em 1.2em; }
.memstore-legend .swatch { display: inline-block; width: 0.8em; height: 0.8em;
  margin-right: 0.3em; vertical-align: baseline; }
.memstore-group { margin: 1.2em 0 0.2em; font-size: 0.85em; text-transform: uppercase;
  letter-spacing: 0.05em; color: #666; }
@media (max-width: 600px) {
  .memstore-grid th, .memstore-grid td { padding: 0.2em 0.35em; font-size: 0.85em; }
  .memstore-usage .unit { display: none; }
}
"""


# --------------------------------------------------------------------------
# Permissions, the same on Datasette 0.65 and 1.0
# --------------------------------------------------------------------------


async def _can_view(datasette: Any, actor: Any, database: str, table: str | None = None) -> bool:
    if hasattr(datasette, "allowed"):  # Datasette 1.0
        from datasette.resources import DatabaseResource, TableResource

        if table is None:
            resource = DatabaseResource(database)
            return bool(
                await datasette.allowed(action="view-database", resource=resource, actor=actor)
            )
        resource = TableResource(database, table)
        return bool(await datasette.allowed(action="view-table", resource=resource, actor=actor))
    permissions: list[Any] = ["view-instance", ("view-database", database)]
    if table is not None:
        permissions.insert(0, ("view-table", (database, table)))
    visible, _ = await datasette.check_visibility(actor, permissions=permissions)
    return bool(visible)


async def _visible_databases(datasette: Any, request: Any) -> list[str]:
    return [
        name
        for name in _FOUND.get(datasette, {})
        if await _can_view(datasette, request.actor, name)
    ]


def _memory_view(*tables: str) -> Any:
    """A read-only page of one memstore database, shown only to actors who may see ``tables``.

    The handler is called as ``handler(datasette, request, database, db)``.
    """

    def wrap(handler: Any) -> Any:
        async def view(datasette: Any, request: Any) -> Response:
            refused = _only_get(request)
            if refused:
                return refused
            database = request.url_vars["database"]
            db = await _require(datasette, request, database, *tables)
            if db is None:
                return await _missing(
                    datasette, request, "Not found", f"No memstore database {database} to show."
                )
            return await handler(datasette, request, database, db)

        return view

    return wrap


async def _require(datasette: Any, request: Any, database: str, *tables: str) -> Any:
    """The database, if it is a memstore database the actor may see with these tables."""
    if not _is_memstore(datasette, database) or not await _can_view(
        datasette, request.actor, database
    ):
        return None
    for table in tables:
        if not await _can_view(datasette, request.actor, database, table):
            return None
    return datasette.get_database(database)


# --------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parent / "memstore_templates"


async def _render(
    datasette: Any, request: Any, name: str, context: dict[str, Any], *, status: int = 200
) -> Response:
    """Render one of memstore's templates, which extend Datasette's own base.html."""
    if hasattr(datasette, "get_jinja_environment"):  # Datasette 1.0
        base = datasette.get_jinja_environment(request)
    else:
        base = datasette.jinja_env
    env = base.overlay(loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES)), base.loader]))
    template = env.get_template(f"memstore_{name}.html")
    context = {"urls": datasette.urls, "q": None, "when": when, **context}
    html = await datasette.render_template(template, context, request=request)
    return Response.html(html, status=status)


async def _missing(datasette: Any, request: Any, title: str, message: str) -> Response:
    """A 404 page in Datasette's layout, with the way back to the overview."""
    context = {"title": title, "message": message}
    return await _render(datasette, request, "missing", context, status=404)


def when(stamp: str | None) -> Markup:
    """An ISO-8601 UTC timestamp as people read it, to the second; the exact one on hover."""
    if not stamp:
        return Markup("")
    shown = stamp.replace("T", " ")[:19]
    if stamp.endswith("Z") or stamp.endswith("+00:00"):
        shown += " UTC"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(stamp, stamp, shown)


def _only_get(request: Any) -> Response | None:
    """This plugin has no write path: anything but GET and HEAD is refused."""
    if request.method not in ("GET", "HEAD"):
        return Response.text("memstore's pages are read-only", status=405)
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


async def _sizes(db: Any) -> dict[str, int]:
    """Bytes on disk per table, with its indexes and FTS tables (dbstat, where SQLite has it)."""
    try:
        rows = (
            await db.execute(
                "SELECT s.name, m.tbl_name, sum(s.pgsize) FROM dbstat AS s "
                "LEFT JOIN sqlite_master AS m ON m.name = s.name GROUP BY s.name"
            )
        ).rows
    except Exception:
        return {}
    sizes: dict[str, int] = {}
    for name, table, size in rows:
        owner = table or name
        for suffix in ("_fts_data", "_fts_idx", "_fts_docsize", "_fts_config", "_fts"):
            if owner.endswith(suffix):
                owner = owner[: -len(suffix)]
                break
        sizes[owner] = sizes.get(owner, 0) + (size or 0)
    return sizes


async def overview(datasette: Any, request: Any) -> Response:
    refused = _only_get(request)
    if refused:
        return refused
    databases = []
    for name in await _visible_databases(datasette, request):
        db = datasette.get_database(name)
        path = db.path or ""
        sizes = await _sizes(db)
        info = {
            "name": name,
            "path": path,
            "schema_version": (await db.execute("PRAGMA user_version")).rows[0][0],
            "file_size": _size(os.path.getsize(path) if path and os.path.exists(path) else None),
            "wal_size": _size(
                os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
            ),
            "collections": [],
            "structures": [],
        }
        registry = (await db.execute("SELECT * FROM _memstore_collections ORDER BY name")).rows
        for row in registry:
            cname, fields, fts = row["name"], row["fields"], row["fts"]
            ttl, history, vectors = row["ttl_seconds"], row["history"], _vector_settings(dict(row))
            if not await _can_view(datasette, request.actor, name, cname):
                continue
            stats = (
                await db.execute(
                    f"SELECT count(*), max(updated_at) FROM {memstore.quote_identifier(cname)}"
                )
            ).rows[0]
            retention = [f"TTL {_duration(ttl)}"] if ttl else []
            if history:
                retention.append("keeps history")
            info["collections"].append(
                {
                    "name": cname,
                    "rows": stats[0],
                    "last_write": stats[1],
                    "size": _size(sizes.get(cname)),
                    "retention": ", ".join(retention) or "none",
                    "fields": ", ".join(f"{k} ({v})" for k, v in json.loads(fields).items()),
                    "fts": ", ".join(json.loads(fts)),
                    "vectors": await _vector_summary(db, cname, vectors),
                }
            )
        info["structures"] = await _structures(datasette, request, name, db, sizes)
        databases.append(info)
    return await _render(
        datasette, request, "overview", {"title": "Agent memory", "databases": databases}
    )


async def _vector_summary(db: Any, collection: str, vectors: dict[str, Any] | None) -> str:
    """A collection's vectors: its model, dimension and how many."""
    if not vectors:
        return ""
    (count,) = (
        await db.execute(
            "SELECT count(*) FROM memstore_vectors WHERE collection = ? AND model = ? AND dim = ?",
            [collection, vectors["model"], vectors["dim"]],
        )
    ).rows[0]
    return f"{count:,} of {vectors['dim']} dims ({vectors['model']}, {vectors['metric']})"


#: The similar-records page compares a record with at most this many vectors.
SIMILAR_LIMIT = 200_000


async def similar_view(datasette: Any, request: Any) -> Response:
    """The records nearest one record by its vectors (cosine), computed here with numpy."""
    refused = _only_get(request)
    if refused:
        return refused
    database = request.url_vars["database"]
    # The route sees the raw path: keys may hold "/" and anything else, quoted.
    collection, key = unquote(request.url_vars["collection"]), unquote(request.url_vars["key"])
    db = await _require(datasette, request, database, collection, "memstore_vectors")
    rows = (
        []
        if db is None
        else (
            await db.execute("SELECT * FROM _memstore_collections WHERE name = ?", [collection])
        ).rows
    )
    vectors = _vector_settings(dict(rows[0])) if rows else None
    if db is None or vectors is None:
        return await _missing(
            datasette, request, "Not found", f"No collection {collection} with vectors here."
        )
    table = memstore.quote_identifier(collection)
    found = (await db.execute(f"SELECT id, body FROM {table} WHERE key = ?", [key])).rows
    if not found:
        return await _missing(datasette, request, "Not found", f"No record {key} in {collection}.")
    context: dict[str, Any] = {
        "title": f"Similar to {key}",
        "database": database,
        "collection": collection,
        "key": key,
        "record": _json_html(json.loads(found[0]["body"])),
        "vectors": vectors,
        "hits": [],
        "note": "",
    }
    try:
        import numpy as np
    except ImportError:
        context["note"] = "Comparing vectors needs numpy: pip install 'agent-memstore[vectors]'."
        return await _render(datasette, request, "similar", context)
    where = "WHERE collection = ? AND model = ? AND dim = ?"
    params = [collection, vectors["model"], vectors["dim"]]
    (count,) = (await db.execute(f"SELECT count(*) FROM memstore_vectors {where}", params)).rows[0]
    if count > SIMILAR_LIMIT:
        context["note"] = (
            f"{count:,} vectors are more than this page compares ({SIMILAR_LIMIT:,}); "
            "use Collection.nearest."
        )
        return await _render(datasette, request, "similar", context)
    stored = (
        await db.execute(f"SELECT record_id, vector FROM memstore_vectors {where}", params)
    ).rows
    own = [bytes(r[1]) for r in stored if r[0] == found[0]["id"]]
    if not own:
        context["note"] = "This record has no vector."
        return await _render(datasette, request, "similar", context)
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in stored), "<f4").reshape(-1, vectors["dim"])
    ids = np.array([r[0] for r in stored], np.int64)
    lengths = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))  # faster than linalg.norm
    best: dict[int, float] = {}
    for blob in own:  # a record in parts: each part's neighbours, best part wins
        q = np.frombuffer(blob, "<f4")
        norms = lengths * float(np.linalg.norm(q))
        scores = np.divide(matrix @ q, norms, out=np.zeros(len(ids)), where=norms > 0)
        for i in np.argsort(-scores, kind="stable")[:50]:
            rid = int(ids[i])
            if rid != found[0]["id"] and float(scores[i]) > best.get(rid, -2.0):
                best[rid] = float(scores[i])
    top = sorted(best.items(), key=lambda item: -item[1])[:10]
    keys = {
        r[0]: r[1]
        for r in (
            await db.execute(
                f"SELECT id, key FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                [json.dumps([rid for rid, _ in top])],
            )
        ).rows
    }
    base = datasette.urls.path(
        f"/-/memstore/{quote(database, safe='')}/similar/{quote(collection, safe='')}/"
    )
    context["hits"] = [
        {"key": keys[rid], "similarity": score, "similar": base + quote(keys[rid], safe="")}
        for rid, score in top
        if rid in keys
    ]
    return await _render(datasette, request, "similar", context)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


async def _structures(
    datasette: Any, request: Any, database: str, db: Any, sizes: dict[str, int]
) -> list[dict[str, Any]]:
    """The memory layers' tables with counts, last writes and links into the views."""
    base = datasette.urls.path(f"/-/memstore/{quote(database, safe='')}")
    found = []
    specs = [
        (
            "Event logs",
            "memstore_events",
            "recorded_at",
            "SELECT log, count(*) FROM memstore_events GROUP BY log ORDER BY log",
            "events",
        ),
        (
            "Conversations",
            "memstore_threads",
            "last_message_at",
            "SELECT id, coalesce(title, id) FROM memstore_threads "
            "ORDER BY last_message_at DESC LIMIT 10",
            "threads",
        ),
        ("Messages", "memstore_messages", "created_at", None, None),
        (
            "Checkpoints",
            "memstore_checkpoints",
            "created_at",
            "SELECT thread_id, count(*) FROM memstore_checkpoints GROUP BY thread_id "
            "ORDER BY max(created_at) DESC LIMIT 10",
            "checkpoints",
        ),
        ("Graph nodes", "memstore_nodes", "updated_at", None, None),
        ("Graph edges", "memstore_edges", "updated_at", None, None),
        ("Cache entries", "memstore_cache", "created_at", None, None),
        ("Record versions", "memstore_versions", "archived_at", None, None),
        ("LangGraph checkpoints", "memstore_lg_checkpoints", "created_at", None, None),
        ("Key-value bytes", "memstore_kv", "updated_at", None, None),
    ]
    for label, table, stamp, links_sql, view in specs:
        if not await _can_view(datasette, request.actor, database, table):
            continue
        # Messages have no index on their time (sql/0013): the newest is the last by id.
        newest = (
            f"(SELECT {stamp} FROM {table} ORDER BY id DESC LIMIT 1)"
            if table == "memstore_messages"
            else f"max({stamp})"
        )
        rows, last = (await db.execute(f"SELECT count(*), {newest} FROM {table}")).rows[0]
        links = []
        if links_sql and view:
            for key, text in (await db.execute(links_sql)).rows:
                links.append(
                    {
                        "href": f"{base}/{view}/{quote(str(key), safe='')}",
                        "label": f"{text}" if view == "threads" else f"{key} ({text})",
                    }
                )
        note = ""
        if table == "memstore_messages":
            tokens, cost = (
                await db.execute("SELECT total(total_tokens), total(cost) FROM memstore_messages")
            ).rows[0]
            note = f"{tokens:,.0f} tokens, cost {cost:.4f}"
        if table == "memstore_cache":
            hits, misses = (
                await db.execute("SELECT total(hits), total(misses) FROM memstore_cache_stats")
            ).rows[0]
            note = f"{hits:,.0f} hits, {misses:,.0f} misses"
        found.append(
            {
                "label": label,
                "table": table,
                "rows": rows,
                "last_write": last,
                "size": _size(sizes.get(table)),
                "links": links,
                "note": note,
            }
        )
    return found


@_memory_view("memstore_threads", "memstore_messages")
async def thread_view(datasette: Any, request: Any, database: str, db: Any) -> Response:
    thread_id = request.url_vars["thread"]
    threads = (
        await db.execute(
            "SELECT id, title, user_id, agent_id, tags, status, status_reason, parent_id, "
            "branch_point, merged_into, created_at, last_message_at, message_count "
            "FROM memstore_threads WHERE id = ?",
            (thread_id,),
        )
    ).rows
    if not threads:
        return await _missing(
            datasette, request, "No such conversation", f"No thread {thread_id} in {database}."
        )
    t = threads[0]
    ranges = (await db.execute(memstore.HISTORY_RANGES_SQL, (thread_id,))).rows
    clause, params = memstore.history_clause([tuple(r) for r in ranges])
    rows = (
        await db.execute(
            "SELECT m.id, m.thread_id, m.position, m.role, m.content, m.content_type, m.name, "
            "m.tool_calls, m.total_tokens, m.model, m.cost, m.created_at, m.merged_from "
            f"FROM memstore_messages AS m WHERE {clause} ORDER BY m.position",
            params,
        )
    ).rows
    messages = []
    for r in rows:
        content = r["content"]
        if content is not None and r["content_type"] == "json":
            content_html: Any = _json_html(json.loads(content))
        else:
            content_html = content
        messages.append(
            {
                "thread_id": r["thread_id"],
                "position": r["position"],
                "role": r["role"],
                "name": r["name"],
                "created_at": r["created_at"],
                "merged": r["merged_from"] is not None,
                "total_tokens": r["total_tokens"],
                "model": r["model"],
                "cost": r["cost"],
                "content_html": content_html,
                "tool_calls": _tool_calls(r["tool_calls"]),
                "row_url": datasette.urls.row(database, "memstore_messages", str(r["id"])),
            }
        )
    usage_rows = (
        await db.execute(
            "SELECT coalesce(model, '(none)'), count(*), total(input_tokens), "
            "total(output_tokens), "
            "total(total_tokens), total(cost) FROM memstore_messages WHERE thread_id = ? "
            "GROUP BY model ORDER BY model",
            (thread_id,),
        )
    ).rows
    usage = [
        {
            "model": u[0],
            "messages": u[1],
            "input": int(u[2]),
            "output": int(u[3]),
            "total": int(u[4]),
            "cost": u[5],
        }
        for u in usage_rows
    ]
    totals = {
        "model": "all",
        "messages": sum(u["messages"] for u in usage),
        "input": sum(u["input"] for u in usage),
        "output": sum(u["output"] for u in usage),
        "total": sum(u["total"] for u in usage),
        "cost": sum(u["cost"] for u in usage),
    }
    facts = [
        ("status", t["status"] + (f" ({t['status_reason']})" if t["status_reason"] else "")),
        ("user", t["user_id"] or "-"),
        ("agent", t["agent_id"] or "-"),
        ("tags", ", ".join(json.loads(t["tags"])) or "-"),
        ("created", when(t["created_at"])),
        ("last message", when(t["last_message_at"]) or "-"),
        ("messages", t["message_count"]),
    ]
    if t["parent_id"]:
        facts.append(("branch of", f"{t['parent_id']} at #{t['branch_point']}"))
    return await _render(
        datasette,
        request,
        "thread",
        {
            "title": f"Conversation: {t['title'] or thread_id}",
            "database": database,
            "thread_id": thread_id,
            "facts": facts,
            "messages": messages,
            "usage": [*usage, totals] if len(usage) > 1 else usage or [totals],
            "tree": await _branch_tree(datasette, db, database, thread_id),
            "messages_query": urlencode({"thread_id": thread_id, "_sort": "position"}),
        },
    )


def _tool_calls(text: str | None) -> dict[str, Any] | None:
    """A message's tool calls: their names for the folded summary, and the JSON."""
    if not text:
        return None
    calls = json.loads(text)
    names = [
        str(call.get("name") or call.get("function", {}).get("name") or "?")
        if isinstance(call, dict)
        else "?"
        for call in (calls if isinstance(calls, list) else [calls])
    ]
    return {"names": ", ".join(names), "count": len(names), "html": _json_pre(calls)[1]}


async def _branch_tree(datasette: Any, db: Any, database: str, thread_id: str) -> Markup:
    """The thread's branch tree, from its root, as nested lists of links."""
    root = thread_id
    for _ in range(1000):  # a branch chain is short; the bound guards a hand-made cycle
        parent = (
            await db.execute("SELECT parent_id FROM memstore_threads WHERE id = ?", (root,))
        ).rows
        if not parent or parent[0][0] is None:
            break
        root = parent[0][0]
    family = (
        await db.execute(
            "WITH RECURSIVE family(id) AS (SELECT ? UNION SELECT t.id FROM memstore_threads AS t "
            "JOIN family ON t.parent_id = family.id) SELECT t.id, t.title, t.parent_id, "
            "t.branch_point, t.status, t.merged_into, t.message_count FROM memstore_threads AS t "
            "JOIN family ON t.id = family.id ORDER BY t.created_at",
            (root,),
        )
    ).rows
    children: dict[Any, list[Any]] = {}
    for row in family:
        children.setdefault(row["parent_id"], []).append(row)
    base = datasette.urls.path(f"/-/memstore/{quote(database, safe='')}/threads/")

    def node(row: Any) -> Markup:
        label = row["title"] or row["id"]
        extra = f" at #{row['branch_point']}" if row["parent_id"] else ""
        merged = f" into {row['merged_into']}" if row["merged_into"] else ""
        item = Markup(
            '<li class="{}"><a href="{}">{}</a>{} <span class="memstore-status {}">{}{}</span> '
            "{} messages"
        ).format(
            "current" if row["id"] == thread_id else "",
            base + quote(row["id"], safe=""),
            label,
            extra,
            row["status"],
            row["status"],
            merged,
            row["message_count"],
        )
        kids = children.get(row["id"], [])
        if kids:
            item += Markup("<ul>") + Markup("").join(node(k) for k in kids) + Markup("</ul>")
        return item + Markup("</li>")

    roots = [row for row in family if row["id"] == root]
    return Markup("<ul>") + Markup("").join(node(r) for r in roots) + Markup("</ul>")


# Time buckets for the timeline as (label, prefix length of an ISO timestamp,
# seconds; None for calendar months). The first that gives at most 60 wins.
BUCKETS: list[tuple[str, int, int | None]] = [
    ("minute", 16, 60),
    ("10 minutes", 15, 600),
    ("hour", 13, 3600),
    ("day", 10, 86400),
    ("month", 7, None),
]
MAX_BUCKETS = 60


@_memory_view("memstore_events")
async def events_view(datasette: Any, request: Any, database: str, db: Any) -> Response:
    log = request.url_vars["log"]
    first, last, total, lo, hi = (
        await db.execute(
            "SELECT min(at), max(at), count(*), min(seq), max(seq) FROM memstore_events "
            "WHERE log = ?",
            (log,),
        )
    ).rows[0]
    if not total:
        return await _missing(
            datasette, request, "No such event log", f"No events in log {log} in {database}."
        )
    label, width, buckets = _buckets(first, last)
    counts = (
        await db.execute(
            f"SELECT substr(at, 1, {width}) AS bucket, kind, count(*) FROM memstore_events "
            "WHERE log = ? GROUP BY bucket, kind ORDER BY bucket, kind",
            (log,),
        )
    ).rows
    latest = (
        await db.execute(
            "SELECT id, seq, at, kind, event_id, payload FROM memstore_events WHERE log = ? "
            "ORDER BY seq DESC LIMIT 50",
            (log,),
        )
    ).rows
    table_url = datasette.urls.table(database, "memstore_events")
    found = [(r[0], r[1], r[2]) for r in counts]
    kinds = sorted({k for _, k, _ in found})
    colors = {k: KIND_COLORS[i % len(KIND_COLORS)] for i, k in enumerate(kinds)}
    buckets = sorted(set(buckets) | {b for b, _, _ in found})  # times other tools wrote oddly
    return await _render(
        datasette,
        request,
        "timeline",
        {
            "title": f"Event log: {log}",
            "database": database,
            "total": total,
            "first_seq": lo,
            "last_seq": hi,
            "first": first,
            "last": last,
            "bucket_label": label,
            "events_query": urlencode({"log": log, "_sort_desc": "seq"}),
            "chart": _timeline_svg(buckets, found, colors, table_url, log),
            "legend": [
                {
                    "kind": k,
                    "color": colors[k],
                    "count": sum(n for _, kind, n in found if kind == k),
                    "href": f"{table_url}?{urlencode({'log': log, 'kind': k})}",
                }
                for k in kinds
            ],
            "latest": [
                {
                    "seq": e["seq"],
                    "at": e["at"],
                    "kind": e["kind"],
                    "event_id": e["event_id"],
                    "payload_html": _json_html(json.loads(e["payload"])),
                    "row_url": datasette.urls.row(database, "memstore_events", str(e["id"])),
                }
                for e in latest
            ],
        },
    )


def _parse_time(stamp: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _buckets(first: str, last: str) -> tuple[str, int, list[str]]:
    """The bucket size for a span of time, and every bucket in it, empty ones too.

    A bucket is a prefix of ISO timestamps (what ``substr(at, 1, width)`` gives).
    """
    start, end = _parse_time(first), _parse_time(last)
    if start is None or end is None:
        return "day", 10, []
    span = (end - start).total_seconds()
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    for label, width, step in BUCKETS:
        if step is None:
            keys = []
            for n in range(min(months, 10 * MAX_BUCKETS)):
                year, month = divmod(start.month - 1 + n, 12)
                keys.append(f"{start.year + year:04}-{month + 1:02}")
            return label, width, keys
        if span / step < MAX_BUCKETS:
            origin = start.timestamp() - start.timestamp() % step
            count = int((end.timestamp() - origin) // step) + 1
            return (
                label,
                width,
                [
                    datetime.fromtimestamp(origin + i * step, UTC).strftime("%Y-%m-%dT%H:%M:%S")[
                        :width
                    ]
                    for i in range(count)
                ],
            )
    raise AssertionError("the month bucket always fits")


def _bucket_label(bucket: str) -> str:
    """A bucket (a prefix of ISO timestamps) as people read it: 2026-11-21T09:3 is 09:30."""
    if len(bucket) > 13:  # minutes or tens of minutes: the time, within a day
        return bucket[11:].ljust(5, "0")
    if len(bucket) == 13:  # hours: the day too, as a span of hours can cross midnight
        return f"{bucket[5:10]} {bucket[11:]}:00"
    return bucket


def _ticks(tallest: int) -> list[int]:
    """Gridline values from 0 past ``tallest``: steps of 1, 2 or 5 times a power of ten,
    at most six lines."""
    steps = (m * 10**e for e in range(18) for m in (1, 2, 5))
    step = next(s for s in steps if tallest / s <= 5)
    return list(range(0, tallest + step, step))


def _timeline_svg(
    buckets: list[str],
    counts: list[tuple[str, str, int]],
    colors: dict[str, str],
    table_url: str,
    log: str,
) -> Markup:
    """A stacked bar chart of events per time bucket and kind, on a real time axis.

    Every bucket of the span has its slot, empty ones too; gridlines and the
    zero line give the scale; each bar links to its rows. It scales to the
    page's width (the legend is HTML beside it, so it always fits).
    """
    width, height = 1000, 260
    left, right, top, bottom = 44, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    per_bucket: dict[str, int] = {}
    for b, _, n in counts:
        per_bucket[b] = per_bucket.get(b, 0) + n
    ticks = _ticks(max(1, *per_bucket.values()))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(buckets), 1)
    bar = max(1.0, slot * 0.8)
    baseline = top + plot_h
    parts = [
        Markup(
            '<svg class="memstore-timeline" role="img" aria-label="events over time by kind" '
            'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" '
            'preserveAspectRatio="xMinYMin meet">'
        ).format(width, height)
    ]
    for value in ticks:
        y = baseline - value * scale
        parts.append(
            Markup(
                '<line class="{}" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="{}"></line>'
                '<text x="{}" y="{:.1f}" font-size="12" text-anchor="end">{}</text>'
            ).format(
                "zero" if value == 0 else "grid",
                left,
                width - right,
                y,
                y,
                "#333" if value == 0 else "#ddd",
                left - 6,
                y + 4,
                value,
            )
        )
    position = {b: i for i, b in enumerate(buckets)}
    stacked: dict[str, float] = {}
    for b, k, n in counts:
        x = left + position[b] * slot + (slot - bar) / 2
        h = n * scale
        y = baseline - stacked.get(b, 0) - h
        stacked[b] = stacked.get(b, 0) + h
        href = f"{table_url}?{urlencode({'log': log, 'kind': k, 'at__startswith': b})}"
        parts.append(
            Markup(
                '<a href="{}"><rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
                "<title>{} {}: {}</title></rect></a>"
            ).format(href, x, y, bar, h, colors[k], _bucket_label(b), k, n)
        )
    every = max(1, math.ceil(len(buckets) / 10))
    for i, b in enumerate(buckets):
        x = left + (i + 0.5) * slot
        if i % every == 0:
            parts.append(
                Markup(
                    '<line x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}" stroke="#333"></line>'
                    '<text x="{:.1f}" y="{}" font-size="12" text-anchor="middle">{}</text>'
                ).format(x, x, baseline, baseline + 5, x, baseline + 20, _bucket_label(b))
            )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


@_memory_view("memstore_checkpoints")
async def checkpoints_view(datasette: Any, request: Any, database: str, db: Any) -> Response:
    thread_id = request.url_vars["thread"]
    rows = (
        await db.execute(
            "SELECT id, branch, parent_id, state, state_zlib, size, tags, created_at "
            "FROM memstore_checkpoints WHERE thread_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 200",
            (thread_id,),
        )
    ).rows
    if not rows:
        return await _missing(
            datasette, request, "No checkpoints", f"No checkpoints for {thread_id} in {database}."
        )
    states = {r["id"]: _state(r["state"], r["state_zlib"]) for r in rows}
    checkpoints = []
    for r in rows:
        parent = r["parent_id"]
        if parent is not None and parent not in states:
            found = (
                await db.execute(
                    "SELECT state, state_zlib FROM memstore_checkpoints WHERE id = ?", (parent,)
                )
            ).rows
            states[parent] = _state(found[0][0], found[0][1]) if found else {}
        before = states.get(parent, {}) if parent else {}
        checkpoints.append(
            {
                "id": r["id"],
                "branch": r["branch"],
                "parent_id": parent,
                "created_at": r["created_at"],
                "size": _size(r["size"]),
                "compressed": r["state_zlib"] is not None,
                "tags": json.loads(r["tags"]),
                "diff_html": _diff_html(memstore.state_diff(before, states[r["id"]])),
                "row_url": datasette.urls.row(
                    database, "memstore_checkpoints", tilde_encode(r["id"])
                ),
            }
        )
    return await _render(
        datasette,
        request,
        "checkpoints",
        {
            "title": f"Checkpoints: {thread_id}",
            "database": database,
            "checkpoints": checkpoints,
            "branches": sorted({c["branch"] for c in checkpoints}),
            "tree": await _checkpoint_tree(db, thread_id),
            "table_query": urlencode({"thread_id": thread_id}),
        },
    )


async def _checkpoint_tree(db: Any, thread_id: str) -> Markup:
    """A thread's checkpoint branches as nested lists: each under the branch it grew from."""
    counts = (
        await db.execute(
            "SELECT branch, count(*), max(created_at), (SELECT l.id FROM memstore_checkpoints "
            "AS l WHERE l.thread_id = c.thread_id AND l.branch = c.branch "
            "ORDER BY l.created_at DESC, l.id DESC LIMIT 1) FROM memstore_checkpoints AS c "
            "WHERE thread_id = ? GROUP BY branch",
            (thread_id,),
        )
    ).rows
    latest = {branch: head for branch, _, _, head in counts}
    forks = {
        name: (from_id, from_branch)
        for name, from_id, from_branch in (
            await db.execute(
                "SELECT b.name, b.from_id, f.branch FROM memstore_checkpoint_branches AS b "
                "LEFT JOIN memstore_checkpoints AS f ON f.id = b.from_id WHERE b.thread_id = ?",
                (thread_id,),
            )
        ).rows
    }
    info = {branch: (n, last) for branch, n, last, _ in counts}
    names = sorted(set(info) | set(forks), key=lambda b: (b != "main", info.get(b, (0, ""))[1]))
    children: dict[str | None, list[str]] = {}
    for name in names:
        parent = forks.get(name, (None, None))[1]
        children.setdefault(parent if parent in info and parent != name else None, []).append(name)
    shown: set[str] = set()

    def node(name: str) -> Markup:
        shown.add(name)
        count, last = info.get(name, (0, None))
        head = (
            Markup('<a href="#c-{}">{}</a>').format(latest[name], name)
            if name in latest
            else Markup("{}").format(name)
        )
        item = Markup("<li>{}").format(head)
        from_id = forks.get(name, (None, None))[0]
        if from_id:
            item += Markup(' from <a href="#c-{}"><code>{}</code></a>').format(from_id, from_id)
        item += Markup(" &middot; {} checkpoint{}").format(count, "" if count == 1 else "s")
        if last:
            item += Markup(", latest {}").format(when(last))
        kids = [k for k in children.get(name, []) if k not in shown]
        if kids:
            item += Markup("<ul>") + Markup("").join(node(k) for k in kids) + Markup("</ul>")
        return item + Markup("</li>")

    roots = [name for name in children.get(None, [])]
    return (
        Markup('<ul class="memstore-tree">')
        + Markup("").join(node(r) for r in roots)
        + Markup("</ul>")
    )


def _state(text: str | None, packed: bytes | None) -> Any:
    """A checkpoint's state: JSON text, or zlib-compressed JSON for a large one."""
    if packed is not None:
        return json.loads(zlib.decompress(packed).decode("utf-8"))
    return json.loads(text or "null")


def _diff_html(diff: dict[str, Any]) -> Markup:
    items = []
    for kind, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
        for path, value in diff[kind].items():
            shown = (
                f"{json.dumps(value['old'], ensure_ascii=False)} → "
                f"{json.dumps(value['new'], ensure_ascii=False)}"
                if kind == "changed"
                else json.dumps(value, ensure_ascii=False)
            )
            if len(shown) > 200:
                shown = shown[:200] + "…"
            items.append(
                Markup('<li class="{}">{} <code>{}</code> {}</li>').format(kind, sign, path, shown)
            )
    if not items:
        return Markup("<p>No change from its parent.</p>")
    return Markup("<ul>") + Markup("").join(items) + Markup("</ul>")


# Snippet markers no text contains: the snippet is escaped, then they become <mark>.
_OPEN, _CLOSE = "\x02", "\x03"


async def search_view(datasette: Any, request: Any) -> Response:
    refused = _only_get(request)
    if refused:
        return refused
    q = (request.args.get("q") or "").strip()
    hits: list[dict[str, Any]] = []
    error = None
    databases = await _visible_databases(datasette, request)
    if q:
        try:
            for database in databases:
                db = datasette.get_database(database)
                hits += await _search_database(datasette, request, database, db, q)
        except Exception as err:  # FTS5 syntax the query cannot be run with
            error = str(err)
            hits = []
            words = memstore.fts_words(q, every=True)  # its words, operators left out
            for database in databases if words else []:
                db = datasette.get_database(database)
                hits += await _search_database(datasette, request, database, db, words)
    return await _render(
        datasette,
        request,
        "search",
        {
            "title": "Search all memory",
            "q": q,
            "hits": hits,
            "error": error,
            "several_databases": len(databases) > 1,
        },
    )


async def _index_pending(db: Any) -> None:
    """Index what memstore left waiting for full-text search (messages and collection
    rows: it indexes them in batches), so the search sees every one; a database Datasette
    may not write to is searched as it is."""
    try:
        await db.execute(memstore.PENDING_MESSAGES_SQL)
    except Exception:  # a file from before schema 13, which memstore has not opened since
        return  # (it brings a file to its schema when it opens it): searched as it is
    if not db.is_mutable:
        return

    def index(conn: sqlite3.Connection) -> None:
        with conn:
            memstore.index_pending(conn)

    with contextlib.suppress(Exception):  # a file another writer holds: search what is there
        await db.execute_write_fn(index, block=True)


def _highlight(snippet: str | None) -> Markup:
    """A snippet with its matches marked; everything else escaped."""
    escaped = Markup.escape(snippet or "")
    return Markup(str(escaped).replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>"))


async def _search_database(
    datasette: Any, request: Any, database: str, db: Any, match: str
) -> list[dict[str, Any]]:
    found = []
    marks = f"'{_OPEN}', '{_CLOSE}', '…', 12"
    await _index_pending(db)  # what memstore indexes in batches: every row found
    registry = (
        await db.execute("SELECT name FROM _memstore_collections WHERE fts <> '[]' ORDER BY name")
    ).rows
    for (name,) in registry:
        if not await _can_view(datasette, request.actor, database, name):
            continue
        fts = memstore.quote_identifier(memstore.fts_table(name))
        rows = (
            await db.execute(
                f"SELECT t.id, t.key, snippet({fts}, -1, {marks}) FROM {fts} "
                f"JOIN {memstore.quote_identifier(name)} AS t ON t.id = {fts}.rowid "
                f"WHERE {fts} MATCH ? ORDER BY {fts}.rank LIMIT 10",
                (match,),
                log_sql_errors=False,  # a bad query is the user's; the page says why
            )
        ).rows
        found += [
            {
                "database": database,
                "where": f"collection {name}",
                "label": key,
                "href": datasette.urls.row(database, name, str(row_id)),
                "snippet": _highlight(snip),
            }
            for row_id, key, snip in rows
        ]
    base = datasette.urls.path(f"/-/memstore/{quote(database, safe='')}")
    if await _can_view(datasette, request.actor, database, "memstore_messages"):
        rows = (
            await db.execute(
                "SELECT m.thread_id, m.position, m.role, "
                f"snippet(memstore_messages_fts, 0, {marks}) "
                "FROM memstore_messages_fts JOIN memstore_messages AS m "
                "ON m.id = memstore_messages_fts.rowid WHERE memstore_messages_fts MATCH ? "
                "ORDER BY memstore_messages_fts.rank LIMIT 20",
                (match,),
                log_sql_errors=False,  # a bad query is the user's; the page says why
            )
        ).rows
        found += [
            {
                "database": database,
                "where": "conversation",
                "label": f"{thread} #{position} ({role})",
                "href": f"{base}/threads/{quote(thread, safe='')}#m{position}",
                "snippet": _highlight(snip),
            }
            for thread, position, role, snip in rows
        ]
    if await _can_view(datasette, request.actor, database, "memstore_events"):
        rows = (
            await db.execute(
                "SELECT e.id, e.log, e.seq, e.kind, "
                f"snippet(memstore_events_fts, -1, {marks}) FROM memstore_events_fts "
                "JOIN memstore_events AS e ON e.id = memstore_events_fts.rowid "
                "WHERE memstore_events_fts MATCH ? ORDER BY memstore_events_fts.rank LIMIT 20",
                (match,),
                log_sql_errors=False,  # a bad query is the user's; the page says why
            )
        ).rows
        found += [
            {
                "database": database,
                "where": f"event log {log}",
                "label": f"{log} seq {seq} ({kind})",
                "href": datasette.urls.row(database, "memstore_events", str(row_id)),
                "snippet": _highlight(snip),
            }
            for row_id, log, seq, kind, snip in rows
        ]
    return found


_NEVER = ("0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z")


async def facts_view(datasette: Any, request: Any) -> Response:
    """A temporal record's timeline: every fact about its key, when each held in the
    world, and when the store learned and replaced each version."""
    refused = _only_get(request)
    if refused:
        return refused
    database = request.url_vars["database"]
    collection, key = unquote(request.url_vars["collection"]), unquote(request.url_vars["key"])
    db = await _require(datasette, request, database, collection)
    if db is None or not _is_temporal(datasette, database, collection):
        return await _missing(
            datasette, request, "Not found", f"No temporal collection {collection} here."
        )
    table = memstore.quote_identifier(collection)
    rows = (
        await db.execute(
            f"SELECT body, valid_from, valid_to, created_at, updated_at, fact_of FROM {table} "
            "WHERE coalesce(fact_of, key) = ? ORDER BY valid_from, id",
            [key],
        )
    ).rows
    if not rows:
        return await _missing(datasette, request, "Not found", f"No record {key} in {collection}.")
    facts = [
        {
            "record": _json_html(json.loads(r["body"])),
            "valid_from": None if r["valid_from"] == _NEVER[0] else r["valid_from"],
            "valid_to": None if r["valid_to"] == _NEVER[1] else r["valid_to"],
            "stored": r["created_at"],
            "changed": r["updated_at"],
            "superseded": r["fact_of"] is not None,
        }
        for r in rows
    ]
    versions = []
    if await _can_view(datasette, request.actor, database, "memstore_versions"):
        versions = [
            {
                "version": v["version"],
                "record": _json_html(json.loads(v["body"])),
                "from": v["valid_from"],
                "until": v["archived_at"],
                "operation": v["operation"],
                "valid_from": None if v["fact_from"] in (None, _NEVER[0]) else v["fact_from"],
                "valid_to": None if v["fact_to"] in (None, _NEVER[1]) else v["fact_to"],
            }
            for v in (
                await db.execute(
                    "SELECT version, body, valid_from, archived_at, operation, fact_from, fact_to "
                    "FROM memstore_versions WHERE collection = ? AND key = ? ORDER BY id",
                    [collection, key],
                )
            ).rows
        ]
    context = {
        "title": f"Timeline of {key}",
        "database": database,
        "collection": collection,
        "facts": facts,
        "versions": versions,
    }
    return await _render(datasette, request, "facts", context)


async def css_view(request: Any) -> Response:
    return _only_get(request) or Response(CSS, content_type="text/css; charset=utf-8")


async def landing_view(datasette: Any, request: Any) -> Response:
    return Response.redirect(datasette.urls.path("/-/memstore"))


def _memstore_files(datasette: Any) -> bool:
    """Whether a memstore file is open (its header says so: PRAGMA application_id)."""
    for db in datasette.databases.values():
        path = getattr(db, "path", None)
        if not path or not os.path.isfile(path):
            continue
        with open(path, "rb") as file:
            header = file.read(72)
        if len(header) == 72 and int.from_bytes(header[68:72], "big") == memstore.APPLICATION_ID:
            return True
    return False


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    # With a memstore file open, the overview is the landing page; it links to each
    # database's own page, which lists every table (collections first).
    landing = [(r"^/$", landing_view)] if _memstore_files(datasette) else []
    return [
        *landing,
        (r"^/-/memstore$", overview),
        (r"^/-/memstore/memstore\.css$", css_view),
        (r"^/-/memstore/search$", search_view),
        (r"^/-/memstore/(?P<database>[^/]+)/threads/(?P<thread>.+)$", thread_view),
        (r"^/-/memstore/(?P<database>[^/]+)/events/(?P<log>.+)$", events_view),
        (r"^/-/memstore/(?P<database>[^/]+)/checkpoints/(?P<thread>.+)$", checkpoints_view),
        (
            r"^/-/memstore/(?P<database>[^/]+)/facts/(?P<collection>[^/]+)/(?P<key>.+)$",
            facts_view,
        ),
        (
            r"^/-/memstore/(?P<database>[^/]+)/similar/(?P<collection>[^/]+)/(?P<key>.+)$",
            similar_view,
        ),
    ]


@hookimpl
def menu_links(datasette: Any) -> list[dict[str, str]]:
    return [{"href": datasette.urls.path("/-/memstore"), "label": "Agent memory"}]


def _installed_copy_registered() -> bool:
    """Whether this is a second copy of the plugin: ``--plugins-dir plugins`` beside an
    installed memstore, whose entry point Datasette registered first."""
    from datasette.plugins import pm

    installed = sys.modules.get("memstore_datasette")
    return (
        installed is not None
        and getattr(installed, "__file__", None) != globals().get("__file__")
        and pm.is_registered(installed)
    )


if _installed_copy_registered():
    # Datasette would run every hook twice (two menu links, two scripts); this copy's
    # hooks are unmarked so that pluggy registers none of them.
    for _hook in [value for value in list(globals().values()) if callable(value)]:
        if hasattr(_hook, "datasette_impl"):
            delattr(_hook, "datasette_impl")
