"""Import the file layouts older agent stores write, into a memstore.

    import memstore, memstore_legacy

    with memstore.Store("agent.db") as store:
        report = memstore_legacy.import_(store, "old-store/")

Each layout is data (``LAYOUTS``): the files that identify it, and rules
saying which files become which collection and which key. Records are kept
whole: a value that is not a JSON object becomes ``{"value": ...}``, and a
``_stored_at`` stamp becomes the record's ``created_at``/``updated_at``.
Malformed files are reported by name and skipped; everything else goes in
one transaction, or nothing does, and importing the same files again changes
nothing. ``memstore import DIR`` uses this module for anything that is not a
memstore export.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import memstore

__all__ = ["LAYOUTS", "Layout", "Plan", "Rule", "import_", "read"]


@dataclass(frozen=True)
class Rule:
    """Which files (``pattern``, a glob) become records of which collection, under which key.

    ``collection`` is a name, or ``"{stem}"`` for one named after the file.
    ``key`` is ``"stem"`` (the file's name), ``"parent"`` (its folder's name)
    or ``"entries"`` (the file maps keys to records; with ``lists=True`` a
    list is keyed by position). With ``part=True`` each file is one part of
    its key's record, stored under the file's name.
    """

    pattern: str
    collection: str
    key: Literal["stem", "parent", "entries"]
    part: bool = False
    lists: bool = False


@dataclass(frozen=True)
class Layout:
    """A file layout: any of ``markers`` in a directory means it is this one (none: the
    fallback), and its ``rules`` say what each file becomes."""

    name: str
    markers: tuple[str, ...]
    rules: tuple[Rule, ...]


LAYOUTS = (
    Layout(
        "conversation tree",
        ("conversations", "cache", "agents", "system"),
        (
            Rule("conversations/*/*.json", "conversations", "parent", part=True),
            Rule("cache/*.json", "cache", "stem"),
            Rule("system/*.json", "system", "stem"),
            Rule("agents/*/*.json", "{stem}", "parent"),
        ),
    ),
    Layout(
        "memory files",
        ("memories", "assemblies", "memory_index.json"),
        (
            Rule("memories/*.json", "memories", "stem"),
            Rule("assemblies/*.json", "assemblies", "stem"),
            Rule("memory_index.json", "memory_index", "entries", lists=True),
        ),
    ),
    Layout("collection files", (), (Rule("*.json", "{stem}", "entries"),)),
)


@dataclass
class Plan:
    """What ``read`` found in a directory, before anything is written."""

    layout: str
    collections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def rows(self, collection: str) -> list[dict[str, Any]]:
        """The collection's rows, as ``Collection.import_rows`` takes them."""
        return list(self.collections[collection].values())


def read(directory: str | os.PathLike[str]) -> Plan:
    """Find the directory's layout and read every file it names; write nothing."""
    root = Path(directory)
    if not root.is_dir():
        raise memstore.ValidationError(f"{root} is not a directory to import")
    layout = next(
        lay for lay in LAYOUTS if not lay.markers or any((root / m).exists() for m in lay.markers)
    )
    plan = Plan(layout.name)
    for rule in layout.rules:
        for path in sorted(root.glob(rule.pattern)):
            _apply(rule, path, root, plan)
    return plan


def import_(
    store: memstore.Store,
    directory: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import an older store's files; return a report like ``Store.import_``'s.

    ``{"source", "layout", "dry_run", "collections": {name: records},
    "tables": {}, "skipped": [{"file", "error"}]}``. ``dry_run`` reads and
    reports, and writes nothing. ``progress`` is called with numbers of
    records as they are written.
    """
    plan = read(directory)
    report: dict[str, Any] = {
        "source": os.fspath(directory),
        "layout": plan.layout,
        "dry_run": dry_run,
        "collections": {name: len(rows) for name, rows in plan.collections.items()},
        "tables": {},
        "skipped": plan.skipped,
    }
    if not dry_run:
        with store.transaction():
            for name in plan.collections:
                written = store.collection(name).import_rows(plan.rows(name))
                if progress:
                    progress(written)
    return report


_INVALID = object()


def _apply(rule: Rule, path: Path, root: Path, plan: Plan) -> None:
    """Add the records one file holds to the plan, or say why it is skipped."""
    relative = path.relative_to(root).as_posix()

    def skip(why: str) -> None:
        plan.skipped.append({"file": relative, "error": why})

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        skip(f"not valid JSON: {err}")
        return
    if rule.key == "entries" and not (
        isinstance(data, dict) or (rule.lists and isinstance(data, list))
    ):
        skip("not an object or a list" if rule.lists else "not an object mapping keys to records")
        return
    collection = _safe_name(path.stem) if rule.collection == "{stem}" else rule.collection
    if collection is None:
        skip("no usable collection name")
        return
    rows = plan.collections.setdefault(collection, {})
    for key, value in _entries(rule, path, data):
        if rule.part:
            record = rows.get(key, {}).get("record", {})
            value = {**record, path.stem: value}
        record = value if isinstance(value, dict) else {"value": value}
        when = _legacy_time(record.get("_stored_at"))
        rows[key] = {"key": key, "record": record, "created_at": when, "updated_at": when}


def _entries(rule: Rule, path: Path, data: Any) -> Iterator[tuple[str, Any]]:
    if rule.key == "stem":
        yield path.stem, data
    elif rule.key == "parent":
        yield path.parent.name, data
    elif isinstance(data, dict):
        yield from ((str(key), value) for key, value in data.items())
    else:
        yield from ((str(position), value) for position, value in enumerate(data))


def _safe_name(stem: str) -> str | None:
    """A collection name for a file name (``agent-notes`` is agent_notes), or None."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", stem)).strip("_")
    if name and not name[0].isalpha():
        name = "c_" + name
    try:
        memstore.check_collection_name(name)
    except memstore.ValidationError:
        return None
    return name


def _legacy_time(value: Any) -> str | None:
    """A ``_stored_at`` stamp (ISO text, naive meaning UTC, or seconds) as ISO-8601 UTC."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
