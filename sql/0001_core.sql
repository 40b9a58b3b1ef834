-- memstore schema, version 1: the collection registry.
--
-- Applied by memstore.py inside one transaction together with
-- `PRAGMA user_version = 1`. Everything in this directory must run on stock
-- SQLite 3.40 (Python 3.11's sqlite3, the sqlite3 CLI, Datasette 0.65): JSON
-- as TEXT (never the binary form), no functions newer than 3.40 in any schema object.
--
-- Each collection is a table of its own, created by memstore.py from the row
-- described here; see Collection in memstore.py for its layout.

CREATE TABLE _memstore_collections (
    -- The collection's name, which is also its table's name.
    name        TEXT PRIMARY KEY COLLATE NOCASE,
    -- Declared fields: {"json.path": "text" | "integer" | "real" | "boolean"}.
    -- Each is a generated column with an index on the collection's table.
    fields      TEXT NOT NULL DEFAULT '{}'
                CHECK (json_valid(fields) AND json_type(fields) = 'object'),
    -- JSON paths indexed for full-text search, in the "<name>_fts" table.
    fts         TEXT NOT NULL DEFAULT '[]'
                CHECK (json_valid(fts) AND json_type(fts) = 'array'),
    -- Default time-to-live of a record, in seconds; NULL for none.
    ttl_seconds REAL CHECK (ttl_seconds IS NULL OR ttl_seconds > 0),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
