"""The ``memstore`` command: look after a store from the shell.

Each command is a thin shell over memstore's public API: it parses its
arguments, calls the library, and prints the result as lines for people or
as JSON (``--json``) for scripts. ``CLI.md`` is generated from the commands'
own help by ``reference()``, and a test keeps the two in step.

The store is ``--db PATH``, given before or after the command, or
``$MEMSTORE_PATH``. Exit codes are in ``EXIT_CODES``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import memstore

__all__ = ["EXIT_CODES", "cli", "main", "reference"]

EXIT_CODES = """Exit codes: 0 done; 1 failed, or check found problems; 2 usage error;
3 not found; 4 imported, but some files were skipped."""

#: Field types as the command line spells them, and memstore's own names.
FIELD_TYPES = {
    "str": "text",
    "text": "text",
    "int": "integer",
    "integer": "integer",
    "float": "real",
    "real": "real",
    "bool": "boolean",
    "boolean": "boolean",
}

# --------------------------------------------------------------------------
# Errors, exit codes and output
# --------------------------------------------------------------------------


class Failure(click.ClickException):
    """The command ran and failed: exit code 1."""

    exit_code = 1


class Missing(Failure):
    """What the command was asked for does not exist: exit code 3."""

    exit_code = 3


class Group(click.Group):
    """Turns memstore's errors into one-line messages and meaningful exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except memstore.NotFoundError as err:
            raise Missing(str(err)) from err
        except memstore.MemstoreError as err:
            raise Failure(str(err)) from err


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A warning (a field no record has, say) as one line on stderr, not a source line."""
    click.echo(f"Warning: {message}", err=True)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """ "1 record", "2 records", "1 entry" with many="entries"."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def emit(data: Any, as_json: bool, lines: Iterable[str] = ()) -> None:
    """JSON for scripts, or lines for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        for line in lines:
            click.echo(line)


def ndjson(row: Any) -> None:
    click.echo(json.dumps(row, ensure_ascii=False, default=str))


# --------------------------------------------------------------------------
# Argument types: a bad value is a usage error (exit code 2) naming the option
# --------------------------------------------------------------------------

# ParamType is generic in newer clicks only: not subscripted at run time.
if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class Duration(_ParamType):
    """A duration with its unit: 90s, 15m, 12h, 7d, 2w."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:  # the library's own parser: the same strings everywhere
            return memstore.parse_duration(str(value), "the duration")
        except memstore.ValidationError as err:
            self.fail(str(err), param, ctx)


class JsonText(_ParamType):
    """JSON text, parsed."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as err:
            self.fail(f"not valid JSON ({err}): {value[:80]!r}", param, ctx)


class FilterText(JsonText):
    """A filter: a JSON object."""

    name = "filter"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parsed = super().convert(value, param, ctx)
        if not isinstance(parsed, dict):
            self.fail('a filter is a JSON object, as in {"kind": "error"}', param, ctx)
        return parsed


class FieldSpec(_ParamType):
    """PATH or PATH:TYPE, the type one of str, int, float, bool (str when left out)."""

    name = "path[:type]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        path, _, kind = str(value).partition(":")
        kind = kind or "str"
        if kind not in FIELD_TYPES:
            self.fail(f"{value!r}: the type is one of str, int, float, bool", param, ctx)
        return path, FIELD_TYPES[kind]


DURATION = Duration()
PORT = click.IntRange(1, 65535)
FILTER = FilterText()
JSON = JsonText()


# --------------------------------------------------------------------------
# The store: --db before or after the command, or $MEMSTORE_PATH
# --------------------------------------------------------------------------

_DB_KEY = "memstore.db"


def _remember_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_DB_KEY] = value  # meta is shared by the group's and the command's contexts


def db_option(
    help: str = "The store file (also accepted before the command).", **settings: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--db``, on the group or on a command: wherever it is given, open_store finds it."""
    return click.option(
        "--db",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_remember_db,
        help=help,
        **settings,
    )


def store_command(
    group: click.Group, name: str | None = None, **settings: Any
) -> Callable[[Callable[..., Any]], click.Command]:
    """A command of ``group`` that works on the store: it takes ``--db`` too, and ``--json``."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        function = click.option("--json", "as_json", is_flag=True, help="Output JSON.")(function)
        function = ask_key_option(db_option()(function))
        command = group.command(name, **settings)(click.pass_context(function))
        # The command's own options first in its --help; --db, --ask-key, --json after them.
        shared = [p for p in command.params if p.name in ("db", "ask_key", "as_json")]
        command.params = [p for p in command.params if p not in shared] + shared
        return command

    return decorate


def existing(store: memstore.Store, name: str) -> memstore.Collection:
    """A collection that must exist already: commands that read never create one."""
    return store[name]


def open_store(ctx: click.Context, *, create: bool = False) -> memstore.Store:
    """The store the command works on. Only commands that write create a file
    (``create=True``); the others refuse a path with no store (exit code 3), so
    that a typo is an error, not a new, empty file."""
    path = ctx.meta.get(_DB_KEY)
    if not path:
        raise click.UsageError("say which store: --db PATH, or set MEMSTORE_PATH", ctx)
    return memstore.Store(path, create=create, key=store_key(ctx, path))


# An encrypted store's key never comes from an argument, which the process list shows
# to every user of the machine: from the environment, or asked for.
KEY_ENV, NEW_KEY_ENV = "MEMSTORE_KEY", "MEMSTORE_NEW_KEY"
_ASK_KEY = "memstore.ask_key"


def _remember_ask(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_ASK_KEY] = True


#: How a PostgreSQL store's path starts (a file's never does).
_POSTGRES_URLS = ("postgresql://", "postgres://")


def store_key(ctx: click.Context, path: str | None) -> memstore.Key | None:
    """The key of the store at ``path``: $MEMSTORE_KEY, else asked for with --ask-key (or
    when the file looks encrypted and a terminal can answer); None for a plain store."""
    if os.environ.get(KEY_ENV):
        return memstore.Key.from_env(KEY_ENV)
    if path is None or path.startswith(_POSTGRES_URLS):
        return None
    if ctx.meta.get(_ASK_KEY) or (sys.stdin.isatty() and memstore.looks_encrypted(path)):
        return ask_key(f"Key of {path}")
    return None


def ask_key(prompt: str, *, confirm: bool = False, env: str = KEY_ENV) -> memstore.Key:
    """A key from ``env``, else typed at the terminal (hidden), else the first line of
    stdin (a pipe: ``pass show agent | memstore --ask-key info``)."""
    if os.environ.get(env):
        return memstore.Key.from_env(env)
    if sys.stdin.isatty():
        typed = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    else:
        typed = sys.stdin.readline().rstrip("\r\n")
    if not typed:
        raise Failure(f"no key given: set ${env}, or type it when asked")
    return memstore.Key(typed)


def ask_key_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--ask-key``, on the group or on a command: store_key asks for the key."""
    return click.option(
        "--ask-key",
        is_flag=True,
        expose_value=False,
        callback=_remember_ask,
        help="Ask for the store's key (hidden; or read a line of stdin) when $MEMSTORE_KEY is "
        "not set.",
    )(function)


@click.group(cls=Group, epilog=EXIT_CODES)
@db_option(
    "The store file; default: $MEMSTORE_PATH. Also accepted after the command.",
    envvar="MEMSTORE_PATH",
)
@ask_key_option
@click.version_option(memstore.__version__, prog_name="memstore")
def cli() -> None:
    """memstore: durable memory for AI agents in one SQLite file."""


def main(argv: Sequence[str] | None = None) -> None:
    """The ``memstore`` command (see ``memstore --help``)."""
    cli.main(args=argv, prog_name="memstore")


# --------------------------------------------------------------------------
# Looking at a store
# --------------------------------------------------------------------------


@store_command(cli)
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the store, or upgrade its schema."""
    with open_store(ctx, create=True) as store:
        data = {"path": store.shown_path, "schema_version": store.schema_version}
    emit(data, as_json, [f"{data['path']}: memstore schema version {data['schema_version']}"])


@store_command(cli)
def info(ctx: click.Context, as_json: bool) -> None:
    """Sizes, schema version, collections (oldest and newest rows) and memory layers."""
    with open_store(ctx) as store:
        data = store.stats()
    lines = [
        f"{data['path']}: {plural(data['bytes'], 'byte')}, "
        f"WAL {plural(data['wal_bytes'], 'byte')}, {plural(data['free_bytes'], 'byte')} free, "
        f"schema version {data['schema_version']} "
        f"(memstore {data['memstore_version']})"
    ]
    for name, c in data["collections"].items():
        lines.append(
            f"  {name}: {plural(c['records'], 'record')} ({c['expired']:,} expired), "
            f"oldest {c['oldest'] or '-'}, newest {c['newest'] or '-'}"
        )
    lines += [f"  {table}: {plural(n, 'row')}" for table, n in data["layers"].items() if n]
    emit(data, as_json, lines)


cli.add_command(info, "stats")


@store_command(cli)
def collections(ctx: click.Context, as_json: bool) -> None:
    """List the collections and their record counts."""
    with open_store(ctx) as store:
        data = {name: store.collection(name).count() for name in store.collections()}
    emit(data, as_json, [f"{name}\t{count}" for name, count in data.items()])


@cli.group()
def collection() -> None:
    """Create, show or drop a collection."""


def _declaration(c: memstore.Collection) -> dict[str, Any]:
    return {"name": c.name, **c.stats()}


def _describe(data: dict[str, Any]) -> list[str]:
    fields = ", ".join(f"{path} ({kind})" for path, kind in data["fields"].items())
    ttl = data["ttl_seconds"]
    return [
        f"{data['name']}: {plural(data['records'], 'record')} ({data['expired']:,} expired)",
        f"  indexed fields: {fields or '-'}",
        f"  full-text search: {', '.join(data['fts']) or '-'}",
        "  indexes: "
        + (
            "; ".join(
                ("unique " if i["unique"] else "") + ", ".join(i["fields"]) for i in data["indexes"]
            )
            or "-"
        ),
        f"  time to live: {_duration_text(ttl) if ttl else '-'}",
        f"  version history: {'kept' if data['history'] else 'not kept'}",
    ]


def _duration_text(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@store_command(collection, "create")
@click.argument("name")
@click.option(
    "--field",
    "fields",
    multiple=True,
    type=FieldSpec(),
    help="An indexed field: PATH or PATH:TYPE, TYPE one of str, int, float, bool. Repeatable.",
)
@click.option(
    "--fts", multiple=True, help="A field path to index for full-text search. Repeatable."
)
@click.option("--ttl", type=DURATION, help="The records' default time to live: 12h, 30d.")
@click.option(
    "--history/--no-history", default=None, help="Keep every record's earlier versions, or stop."
)
@click.option(
    "--index",
    "indexes",
    multiple=True,
    help="An index over fields used together: a,-b (- for descending). Repeatable.",
)
@click.option("--unique", multiple=True, help="A unique index: a,b. Repeatable.")
def collection_create(
    ctx: click.Context,
    name: str,
    fields: tuple[tuple[str, str], ...],
    fts: tuple[str, ...],
    ttl: timedelta | None,
    history: bool | None,
    indexes: tuple[str, ...],
    unique: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a collection, or add fields, search paths and indexes to an existing one.

    \b
    memstore collection create events --field event_type:str --field duration:float \\
        --fts text --ttl 30d --index event_type,-created_at
    """
    declared = [{"fields": spec.split(","), "unique": False} for spec in indexes]
    declared += [{"fields": spec.split(","), "unique": True} for spec in unique]
    with open_store(ctx, create=True) as store:
        created = name not in store
        c = store.collection(
            name,
            fields=dict(fields),
            fts=list(fts),
            ttl=ttl,
            history=history,
            indexes=declared or None,
        )
        data = _declaration(c)
    verb = "created" if created else "updated"
    emit({**data, "created": created}, as_json, [f"{verb} collection {name}", *_describe(data)[1:]])


@store_command(collection, "show")
@click.argument("name")
def collection_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a collection's records, fields, search paths, TTL and history (exit code 3 if none)."""
    with open_store(ctx) as store:
        data = _declaration(existing(store, name))
    emit(data, as_json, _describe(data))


@store_command(collection, "drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def collection_drop(ctx: click.Context, name: str, yes: bool, as_json: bool) -> None:
    """Delete a collection and every record in it (exit code 3 if there is none)."""
    with open_store(ctx) as store:
        count = existing(store, name).count()
        if not yes:
            click.confirm(
                f"Delete collection {name} and its {plural(count, 'record')}?", abort=True
            )
        store.drop_collection(name)
    emit(
        {"dropped": name, "records": count},
        as_json,
        [f"dropped {name} ({plural(count, 'record')})"],
    )


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def _ndjson_rows(lines: Iterable[str], key_field: str | None) -> Iterable[Any]:
    """Records from NDJSON lines: {"key", "record"} objects, or records holding their key."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise click.UsageError(f"stdin line {number} is not valid JSON: {err}") from None
        if key_field:
            if not isinstance(row, dict) or key_field not in row:
                raise click.UsageError(f"stdin line {number} has no {key_field!r} field")
            yield row
        elif isinstance(row, dict) and "key" in row and "record" in row:
            yield row["key"], row["record"]
        else:
            raise click.UsageError(
                f'stdin line {number} is not {{"key": ..., "record": ...}}: '
                "give --key-field to name the field holding each record's key"
            )


@store_command(cli)
@click.argument("collection_name", metavar="COLLECTION")
@click.argument("key", required=False)
@click.argument("record", required=False, type=JSON)
@click.option("--key-field", help="With NDJSON on stdin: the field holding each key.")
@click.option("--ttl", type=DURATION, help="Time to live: 90s, 15m, 12h, 7d.")
@click.option(
    "--create",
    is_flag=True,
    help="Create the collection (and the store file) if there is none.",
)
def put(
    ctx: click.Context,
    collection_name: str,
    key: str | None,
    record: Any,
    key_field: str | None,
    ttl: timedelta | None,
    create: bool,
    as_json: bool,
) -> None:
    """Store a record (JSON, or stdin), or with no KEY, NDJSON records from stdin.

    NDJSON lines are {"key": ..., "record": {...}} (as query and export
    write them), or records whose --key-field holds the key. The collection
    must exist (exit code 3 otherwise) unless --create is given: a mistyped
    name never makes a new collection.
    """
    if key is not None and record is None:
        record = JSON.convert(sys.stdin.read(), None, ctx)
    with open_store(ctx, create=create) as store:
        target = store.collection(collection_name, create=create)
        if key is not None:
            target.put(key, record, ttl=ttl)
            count = 1
        else:
            count = target.put_many(_ndjson_rows(sys.stdin, key_field), key=key_field, ttl=ttl)
    emit(
        {"stored": count},
        as_json,
        [f"stored {key}" if key else f"stored {plural(count, 'record')}"],
    )


@store_command(cli)
@click.argument("collection_name", metavar="COLLECTION")
@click.argument("key")
def get(ctx: click.Context, collection_name: str, key: str, as_json: bool) -> None:
    """Print a record as JSON (exit code 3 when there is none)."""
    with open_store(ctx) as store:
        record = existing(store, collection_name).get(key)
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@store_command(cli)
@click.argument("collection_name", metavar="COLLECTION")
@click.option("--where", type=FILTER, help='A filter as JSON: {"kind": "error", "n": {"$gt": 3}}.')
@click.option("--order-by", multiple=True, help="A field, -field for descending. Repeatable.")
@click.option("--limit", type=click.IntRange(min=0))
@click.option("--offset", type=click.IntRange(min=0), default=0)
def query(
    ctx: click.Context,
    collection_name: str,
    where: dict[str, Any] | None,
    order_by: tuple[str, ...],
    limit: int | None,
    offset: int,
    as_json: bool,
) -> None:
    """Print matching records as NDJSON: {"key", "record", "created_at", ...} per line."""
    with open_store(ctx) as store:
        rows = existing(store, collection_name).rows(
            where, order_by=list(order_by) or None, limit=limit, offset=offset
        )
        found = (row._asdict() for row in rows)
        if as_json:
            emit(list(found), True)
        else:
            for row in found:
                ndjson(row)


@store_command(cli)
@click.argument("collection_name", metavar="COLLECTION")
@click.argument("text")
@click.option("--where", type=FILTER, help="A filter as JSON, as for query.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def search(
    ctx: click.Context,
    collection_name: str,
    text: str,
    where: dict[str, Any] | None,
    limit: int,
    as_json: bool,
) -> None:
    """Full-text search; print hits as NDJSON: {"key", "score", "rank", "snippet", "record"}.

    score is the BM25 relevance (higher is better), rank FTS5's raw rank (its negation)."""
    with open_store(ctx) as store:
        hits = existing(store, collection_name).search(text, where=where, limit=limit)
    found = [
        {"key": h.key, "score": h.score, "rank": h.rank, "snippet": h.snippet, "record": h.record}
        for h in hits
    ]
    if as_json:
        emit(found, True)
    else:
        for hit in found:
            ndjson(hit)


@store_command(cli)
@click.argument("collection_name", metavar="COLLECTION")
@click.argument("keys", nargs=-1)
@click.option("--where", type=FILTER, help="Delete every record matching this filter (JSON).")
def delete(
    ctx: click.Context,
    collection_name: str,
    keys: tuple[str, ...],
    where: dict[str, Any] | None,
    as_json: bool,
) -> None:
    """Delete records by key, or by --where; exit code 3 if none of the KEYS existed."""
    if bool(keys) == (where is not None):
        raise click.UsageError("give KEYS or --where", ctx)
    with open_store(ctx) as store:
        target = existing(store, collection_name)
        if where is not None:
            count = target.delete_where(where)
        else:
            with store.transaction():
                count = sum(target.delete(key) for key in keys)
            if not count:
                raise memstore.NotFoundError(
                    f"none of {', '.join(keys)} is in {collection_name}"
                    if len(keys) > 1
                    else f"{keys[0]} is not in {collection_name}"
                )
    emit({"deleted": count}, as_json, [f"deleted {plural(count, 'record')}"])


# --------------------------------------------------------------------------
# Moving data in and out
# --------------------------------------------------------------------------


@store_command(cli)
@click.argument("directory", type=click.Path())
@click.option("--collection", "names", multiple=True, help="Only this collection. Repeatable.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["memstore", "reference"]),
    default="memstore",
    show_default=True,
    help="reference: the graph as the reference MCP memory server's JSONL file (DIRECTORY is "
    "then that file).",
)
@click.option("--scope", default="default", show_default=True, help="With reference: whose graph.")
@click.option(
    "--plaintext", is_flag=True, help="Export an encrypted store (the files are plain JSON)."
)
def export(
    ctx: click.Context,
    directory: str,
    names: tuple[str, ...],
    form: str,
    scope: str,
    plaintext: bool,
    as_json: bool,
) -> None:
    """Write the store (or some collections) as JSONL files with a manifest."""
    if form == "reference":
        memstore_mcp = _mcp_module()
        with open_store(ctx) as store:
            counts = memstore_mcp.export_reference(
                store, directory, scope=scope, plaintext=plaintext
            )
        emit(
            counts,
            as_json,
            [f"exported {counts['entities']:,} entities, {counts['relations']:,} relations"],
        )
        return
    if os.path.isfile(directory):
        raise click.BadParameter(f"{directory!r} is a file", ctx, param_hint="DIRECTORY")
    with open_store(ctx) as store:
        stats = store.stats()
        total = sum(
            c["records"] + c["expired"]
            for name, c in stats["collections"].items()
            if not names or name in names
        )
        if not names:
            total += sum(stats["layers"].values())
        with click.progressbar(length=total, label="exporting", file=sys.stderr) as bar:
            manifest = store.export(
                directory,
                collections=list(names) or None,
                progress=bar.update,
                plaintext=plaintext,
            )
    rows = sum(e["rows"] for part in ("collections", "tables") for e in manifest[part].values())
    emit(manifest, as_json, [f"exported {plural(rows, 'row')} to {directory}"])


@store_command(cli, "import")
@click.argument("source", type=click.Path(exists=True))
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
@click.option(
    "--scope", default="default", show_default=True, help="A memory.jsonl file: whose graph."
)
def import_command(
    ctx: click.Context, source: str, dry_run: bool, scope: str, as_json: bool
) -> None:
    """Import an export directory, the file layouts older stores use (see the README), or a
    reference MCP memory server's memory.jsonl (into the scope's graph)."""
    if os.path.isfile(source):
        memstore_mcp = _mcp_module()
        if not memstore_mcp.looks_like_reference_file(source):
            raise click.BadParameter(
                f"{source!r} is not a memory server's JSONL file", ctx, param_hint="SOURCE"
            )
        with open_store(ctx, create=not dry_run) as store:
            if dry_run:
                with contextlib.suppress(memstore_mcp.DryRun), store.transaction():
                    counts = memstore_mcp.import_reference(store, source, scope=scope)
                    raise memstore_mcp.DryRun
            else:
                counts = memstore_mcp.import_reference(store, source, scope=scope)
        verb = "would import" if dry_run else "imported"
        emit(
            {"layout": "reference memory file", **counts, "dry_run": dry_run},
            as_json,
            [f"{verb} {counts['entities']:,} entities, {counts['relations']:,} relations"],
        )
        return
    with open_store(ctx, create=True) as store:
        if (Path(source) / "manifest.json").exists():
            importer: Callable[..., dict[str, Any]] = store.import_
        else:
            import memstore_legacy

            importer = functools.partial(memstore_legacy.import_, store)
        report = importer(source, dry_run=True)
        if not dry_run:
            total = sum(report["collections"].values()) + sum(report["tables"].values())
            with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
                report = importer(source, progress=bar.update)
    counts = {**report["collections"], **report["tables"]}
    verb = "would import" if dry_run else "imported"
    lines = [
        f"{report['layout']}: {verb} "
        + (", ".join(f"{n:,} {name}" for name, n in counts.items()) or "nothing")
    ]
    lines += [f"skipped {s['file']}: {s['error']}" for s in report["skipped"]]
    emit(report, as_json, lines)
    if report["skipped"]:
        ctx.exit(4)


@store_command(cli)
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--compact", is_flag=True, help="VACUUM INTO: a smaller, defragmented copy.")
@click.option(
    "--plaintext", is_flag=True, help="Of an encrypted store: a plain copy (else encrypted)."
)
def backup(ctx: click.Context, dest: str, compact: bool, plaintext: bool, as_json: bool) -> None:
    """Back up the store while it is in use; the copy is checked before success. The copy
    of an encrypted store is encrypted with its key."""
    with (
        open_store(ctx) as store,
        click.progressbar(length=100, label="backing up", file=sys.stderr) as bar,
    ):
        shown = [0]

        def advance(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            bar.update(percent - shown[0])
            shown[0] = percent

        result = store.backup(dest, compact=compact, progress=advance, plaintext=plaintext)
    emit(
        result, as_json, [f"backed up to {dest} ({plural(result['bytes'], 'byte')}), integrity ok"]
    )


@cli.command()
@click.argument("source")
@click.argument("destination")
@click.option("--plaintext", is_flag=True, help="Copy an encrypted file's records to PostgreSQL.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@ask_key_option
@click.pass_context
def copy(ctx: click.Context, source: str, destination: str, plaintext: bool, as_json: bool) -> None:
    """Copy a store to another, file or PostgreSQL URL (postgresql://...), either way.

    File to file is a backup. Otherwise the collections are copied with their
    records, keys and timestamps, in one transaction: all or nothing, so a
    copy that stops can be run again. The copy is checked before success.
    An encrypted SOURCE file is read with $MEMSTORE_KEY (or --ask-key); from
    PostgreSQL, the key encrypts the DESTINATION file.
    """
    if not source.startswith(_POSTGRES_URLS):
        key = store_key(ctx, source)
    elif os.environ.get(KEY_ENV) or ctx.meta.get(_ASK_KEY):  # a new file's: typed twice
        key = ask_key(f"New key for {destination}", confirm=True)
    else:
        key = None
    with click.progressbar(length=100, label="copying", file=sys.stderr) as bar:
        shown = [0]

        def advance(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            bar.update(percent - shown[0])
            shown[0] = percent

        result = memstore.copy(source, destination, progress=advance, key=key, plaintext=plaintext)
    counts = ", ".join(f"{name} {n:,}" for name, n in result["collections"].items())
    emit(result, as_json, [f"copied {plural(result['rows'], 'record')} ({counts or 'none'})"])


@store_command(cli)
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
def restore(ctx: click.Context, source: str, as_json: bool) -> None:
    """Replace the store with a backup, after checking the backup."""
    with open_store(ctx, create=True) as store:
        result = store.restore(source)
    emit(result, as_json, [f"restored {result['path']} from {source}"])


# --------------------------------------------------------------------------
# Maintenance
# --------------------------------------------------------------------------


@store_command(cli)
@click.option("--full", is_flag=True, help="Check every page (integrity_check), not quickly.")
def check(ctx: click.Context, full: bool, as_json: bool) -> None:
    """Look for problems; exit code 1 when there are any."""
    with open_store(ctx) as store:
        problems = store.check(full=full)
    emit({"problems": problems}, as_json, problems or ["ok"])
    if problems:
        ctx.exit(1)


@store_command(cli)
def repair(ctx: click.Context, as_json: bool) -> None:
    """Rebuild FTS indexes, recreate missing indexes and triggers, fix the registry."""
    with open_store(ctx) as store:
        done = store.repair()
        left = store.check()
    emit(
        {"repaired": done, "problems": left},
        as_json,
        [*done, *(f"still wrong: {p}" for p in left)] or ["nothing to repair"],
    )
    if left:
        ctx.exit(1)


@store_command(cli)
@click.option("--older-than", type=DURATION, help="Also remove what is older: 90s, 15m, 12h, 7d.")
@click.option(
    "--by",
    type=click.Choice(["created", "updated"]),
    default="created",
    show_default=True,
    help="Which time of a record --older-than looks at.",
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    help="Keep only the newest N of each collection, event log and thread's checkpoints.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def cleanup(
    ctx: click.Context,
    older_than: timedelta | None,
    by: str,
    keep_last: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Apply retention everywhere: expired records and cache entries, and age or count when
    given (collections, event logs, conversations, checkpoints)."""
    with (
        open_store(ctx) as store,
        click.progressbar(length=1, label="cleaning up", file=sys.stderr) as bar,
    ):

        def advance(done: int, total: int) -> None:
            bar.length = total
            bar.update(1)

        removed = store.cleanup(
            older_than=older_than,
            by=by,  # type: ignore[arg-type]
            keep_last=keep_last,
            dry_run=dry_run,
            progress=advance,
        )
    verb = "would be removed" if dry_run else "removed"
    emit(
        {"dry_run": dry_run, "removed": removed, "total": sum(removed.values())},
        as_json,
        [f"{part}: {n:,} {verb}" for part, n in removed.items()] or ["nothing to clean up"],
    )


@store_command(cli)
def vacuum(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the file to reclaim free pages."""
    with open_store(ctx) as store:
        data = store.vacuum()
    emit(data, as_json, [f"{data['before']:,} -> {data['after']:,} bytes"])


@store_command(cli)
def optimize(ctx: click.Context, as_json: bool) -> None:
    """Refresh query planner statistics and merge full-text index segments."""
    with open_store(ctx) as store:
        data = store.optimize()
    emit(
        data,
        as_json,
        [f"optimized ({plural(data['fts_indexes'], 'full-text index', 'full-text indexes')})"],
    )


@store_command(cli, "checkpoint-wal")
def checkpoint_wal(ctx: click.Context, as_json: bool) -> None:
    """Copy the WAL into the file and truncate it (exit code 1 if readers held part of it)."""
    with open_store(ctx) as store:
        data = store.checkpoint_wal()
    note = " (busy: readers held some; try again)" if data["busy"] else ""
    emit(
        data,
        as_json,
        [f"checkpointed {data['checkpointed']} of {plural(data['wal_pages'], 'page')}{note}"],
    )
    if data["busy"]:
        ctx.exit(1)


@store_command(cli)
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Upgrade the schema, after backing the file up next to it (exit code 3 if no file)."""
    path = ctx.meta.get(_DB_KEY)
    if not path:
        raise click.UsageError("say which store: --db PATH, or set MEMSTORE_PATH", ctx)
    data = memstore.migrate(path, key=store_key(ctx, path))
    done = f" (backup: {data['backup']})" if data["backup"] else " (nothing to do)"
    emit(data, as_json, [f"schema version {data['from']} -> {data['to']}{done}"])


# --------------------------------------------------------------------------
# Encryption
# --------------------------------------------------------------------------


@store_command(cli)
def encrypt(ctx: click.Context, as_json: bool) -> None:
    """Encrypt a plain store in place with $MEMSTORE_KEY (or a key typed twice).

    The encrypted file is written beside the plain one and takes its place in
    one step: a crash leaves one or the other, whole. Nothing may have the
    store open meanwhile.
    """
    path = _store_path(ctx)
    key = ask_key(f"New key for {path}", confirm=True)
    data = memstore.encrypt(path, key)
    emit(data, as_json, [f"encrypted {path}"])


@store_command(cli)
@click.argument("dest", type=click.Path(dir_okay=False))
def decrypt(ctx: click.Context, dest: str, as_json: bool) -> None:
    """Write a plain copy of an encrypted store to DEST (key: $MEMSTORE_KEY, or typed)."""
    path = _store_path(ctx)
    data = memstore.decrypt(path, dest, ask_key(f"Key of {path}"))
    emit(data, as_json, [f"wrote a plain copy of {path} to {dest}"])


@store_command(cli)
def rekey(ctx: click.Context, as_json: bool) -> None:
    """Change an encrypted store's key: from $MEMSTORE_KEY to $MEMSTORE_NEW_KEY (or typed).

    As encrypt: a new file takes the old one's place in one step.
    """
    path = _store_path(ctx)
    key = ask_key(f"Key of {path}")
    new_key = ask_key(f"New key for {path}", confirm=True, env=NEW_KEY_ENV)
    data = memstore.rekey(path, key, new_key)
    emit(data, as_json, [f"changed the key of {path}"])


def _store_path(ctx: click.Context) -> str:
    """The store file a command works on, which must exist."""
    path = ctx.meta.get(_DB_KEY)
    if not path:
        raise click.UsageError("say which store: --db PATH, or set MEMSTORE_PATH", ctx)
    if not os.path.isfile(path):
        raise memstore.NotFoundError(f"no store at {path}")
    return str(path)


# --------------------------------------------------------------------------
# Tenants
# --------------------------------------------------------------------------


@cli.group()
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="The tenants' directory.",
)
@click.option(
    "--max-size", type=click.IntRange(min=memstore.MIN_QUOTA), help="Each tenant's quota, in bytes."
)
@click.pass_context
def tenants(ctx: click.Context, directory: str, max_size: int | None) -> None:
    """One store per tenant in a directory."""
    ctx.obj = ctx.with_resource(memstore.Tenants(directory, max_size=max_size))


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.pass_obj
def tenants_list(group: memstore.Tenants, as_json: bool) -> None:
    """List the tenants."""
    names = group.list()
    emit(names, as_json, names)


@tenants.command("create")
@click.argument("tenant_id")
@click.pass_obj
def tenants_create(group: memstore.Tenants, tenant_id: str) -> None:
    """Create a tenant's store."""
    group.open(tenant_id)
    click.echo(f"created {group.path(tenant_id)}")


@tenants.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.pass_obj
def tenants_stats(group: memstore.Tenants, as_json: bool) -> None:
    """Size, collections and records per tenant."""
    data = group.stats()
    emit(
        data,
        as_json,
        [
            f"{t}: {plural(d['bytes'], 'byte')}, {plural(d['collections'], 'collection')}, "
            f"{plural(d['records'], 'record')}"
            for t, d in data.items()
        ],
    )


@tenants.command("erase")
@click.argument("tenant_id")
@click.pass_obj
def tenants_erase(group: memstore.Tenants, tenant_id: str) -> None:
    """Delete a tenant, file and all (exit code 3 if there was none)."""
    if not group.erase(tenant_id):
        raise memstore.NotFoundError(f"no tenant {tenant_id!r}")
    click.echo(f"erased {tenant_id}")


# --------------------------------------------------------------------------
# The MCP server
# --------------------------------------------------------------------------


def _mcp_module() -> Any:
    try:
        import memstore_mcp
    except ImportError as err:
        raise Failure(f"the MCP server needs the mcp extra: pip install '.[mcp]' ({err})") from err
    return memstore_mcp


@cli.command("mcp")
@db_option()
@click.option(
    "--http",
    "http",
    metavar="[HOST:]PORT",
    help="Serve Streamable HTTP on HOST:PORT (loopback when HOST is left out), not stdio.",
)
@click.option(
    "--profile",
    type=click.Choice(["memstore", "reference"]),
    default="memstore",
    show_default=True,
    help="memstore's tools, or the reference memory server's nine.",
)
@click.option("--scope", help="Whose memories: default $MEMSTORE_MCP_SCOPE, the client's root.")
@click.option("--read-only", is_flag=True, help="Offer only the tools that read.")
@ask_key_option
@click.pass_context
def mcp_command(
    ctx: click.Context, http: str | None, profile: str, scope: str | None, read_only: bool
) -> None:
    """Serve the store to MCP clients (stdio by default): memory tools for any agent."""
    memstore_mcp = _mcp_module()
    path = ctx.meta.get(_DB_KEY)
    if not path:
        raise click.UsageError("say which store: --db PATH, or set MEMSTORE_PATH", ctx)
    address = memstore_mcp.parse_http(http) if http else None
    if scope is not None:
        memstore_mcp.check_scope(scope)
    if address is not None:
        _check_port(address[1], address[0])
        shown = memstore.without_password(path)
        click.echo(f"Serving {shown} at http://{address[0]}:{address[1]}/mcp", err=True)
    key = store_key(ctx, path)
    memstore_mcp.serve(
        path, profile=profile, scope=scope, read_only=read_only, http=address, key=key
    )


# --------------------------------------------------------------------------
# Browsing in Datasette
# --------------------------------------------------------------------------


@cli.command()
@click.argument("path", default="memstore-demo.db", type=click.Path(dir_okay=False))
@click.option("--port", default=8001, type=PORT, show_default=True, help="Port to serve on.")
@click.option("--build-only", is_flag=True, help="Build the store, do not serve it.")
@click.option("--rebuild", is_flag=True, help="Build the store anew if it exists.")
def demo(path: str, port: int, build_only: bool, rebuild: bool) -> None:
    """Build a demo agent memory store and browse it in Datasette."""
    import memstore_demo

    if not build_only:
        _check_port(port)  # before building, not after
    if rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    if os.path.exists(path):
        click.echo(f"Using the demo store {path} (--rebuild to make it anew)")
    else:
        memstore_demo.build(path)
        click.echo(f"Built the demo store {path}")
    if not build_only:
        serve(path, port)


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--port", default=8001, type=PORT, show_default=True, help="Port to serve on.")
@click.option(
    "--decrypted-copy",
    is_flag=True,
    help="Of an encrypted store: serve a plain copy, in a private temporary directory "
    "deleted when the server stops.",
)
@db_option("The store file, if PATH is not given.")
@ask_key_option
@click.pass_context
def browse(ctx: click.Context, path: str | None, port: int, decrypted_copy: bool) -> None:
    """Browse a store (PATH, --db or $MEMSTORE_PATH) in Datasette, with memstore's explorer.

    Datasette reads files with Python's sqlite3 module, which cannot decrypt: an
    encrypted store is browsed only as a decrypted copy, when --decrypted-copy
    says so (a snapshot: later writes do not show).
    """
    path = path or ctx.meta.get(_DB_KEY)
    if not path:
        raise click.UsageError("say which store: PATH, --db PATH, or set MEMSTORE_PATH", ctx)
    if not os.path.isfile(path):
        raise click.BadParameter(f"{path!r} does not exist", ctx, param_hint="PATH")
    if not memstore.looks_encrypted(path):
        serve(path, port)
        return
    if not decrypted_copy:
        raise Failure(
            f"{path} is encrypted, and Datasette reads files with Python's sqlite3 module, "
            "which cannot decrypt: `memstore browse --decrypted-copy` serves a plain copy "
            "(in a private temporary directory, deleted when the server stops), "
            "`memstore decrypt DEST` writes one to keep"
        )
    key = store_key(ctx, path) or ask_key(f"Key of {path}")
    folder = tempfile.mkdtemp(prefix="memstore-browse-")  # only its owner may enter it
    try:
        copy = os.path.join(folder, os.path.basename(path))
        memstore.decrypt(path, copy, key)
        click.echo(f"A decrypted copy of {path}, deleted when the server stops:")
        serve(copy, port)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Stop(Exception):
    """SIGTERM reached the command: stop the server and exit."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


def _check_port(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port another program holds, before announcing it, and suggest a free one."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server binds: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return
        except OSError as err:
            reason = err.strerror or str(err)
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        free = spare.getsockname()[1]
    raise Failure(f"cannot serve on port {port} ({reason}): try --port {free}")


def _die_with_parent() -> None:
    """In the server's process: stop when the memstore command dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(path: str, port: int) -> None:
    """Run Datasette on the store until Ctrl-C (SIGINT) or SIGTERM; either stops it."""
    if importlib.util.find_spec("datasette") is None:
        raise Failure("Datasette is not installed: pip install 'agent-memstore[explorer]'")
    _check_port(port)
    command = [sys.executable, "-m", "datasette", "serve", path]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    registered = {e.value for e in importlib.metadata.entry_points(group="datasette")}
    if "memstore_datasette" not in registered:  # a checkout, not an install
        command += ["--plugins-dir", str(Path(__file__).resolve().parent.parent / "plugins")]
    click.echo(f"Serving {path} at http://127.0.0.1:{port}/-/memstore (Ctrl-C stops)")
    linux = sys.platform.startswith("linux")
    server = subprocess.Popen(command, preexec_fn=_die_with_parent if linux else None)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        code = server.wait()
    except (KeyboardInterrupt, _Stop):
        code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.poll() is None:  # stopped by a signal to this process alone
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if code:
        raise Failure(f"datasette exited with status {code}")


# --------------------------------------------------------------------------
# The reference in CLI.md
# --------------------------------------------------------------------------


def reference() -> str:
    """CLI.md: every command's ``--help``, as Markdown (``tests/test_cli.py`` checks)."""
    out = [
        "# The `memstore` command\n",
        "Generated from the commands' own `--help` by `memstore_cli.reference()`;",
        "a test fails when the two differ. Regenerate with",
        "`python -c 'import memstore_cli; print(memstore_cli.reference(), end=\"\")' > CLI.md`.\n",
    ]

    def walk(command: click.Command, names: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(
            command, info_name=names[-1], parent=parent, terminal_width=88, max_content_width=88
        )
        out.append(f"{'#' * (len(names) + 1)} `{' '.join(names)}`\n")
        out.append("```\n" + command.get_help(ctx) + "\n```\n")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not (name == "stats" and sub is info):
                    walk(sub, [*names, name], ctx)

    walk(cli, ["memstore"], None)
    out.append("`memstore stats` is another name for `memstore info`.\n")
    return "\n".join(out)


if __name__ == "__main__":
    main()
