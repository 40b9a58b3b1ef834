-- memstore schema, version 6: TTL caches and opt-in version history.
-- Stock SQLite 3.40 only: see 0001_core.sql.

CREATE TABLE memstore_cache (
    cache      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL CHECK (json_valid(value)),
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    expires_at TEXT,
    PRIMARY KEY (cache, key)
);
CREATE INDEX memstore_cache__expires_idx ON memstore_cache (cache, expires_at)
    WHERE expires_at IS NOT NULL;

-- Hits and misses, added up from every process's counts.
CREATE TABLE memstore_cache_stats (
    cache  TEXT PRIMARY KEY,
    hits   INTEGER NOT NULL DEFAULT 0 CHECK (hits >= 0),
    misses INTEGER NOT NULL DEFAULT 0 CHECK (misses >= 0)
);

-- Version history of collections declared with history=True: the previous
-- record on every update and delete, written by triggers, so changes made
-- with other tools are kept too.
ALTER TABLE _memstore_collections ADD COLUMN history INTEGER NOT NULL DEFAULT 0
    CHECK (history IN (0, 1));

CREATE TABLE memstore_versions (
    id          INTEGER PRIMARY KEY,
    collection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    body        TEXT NOT NULL CHECK (json_valid(body)),
    -- When this version became current, and when it stopped being.
    valid_from  TEXT NOT NULL,
    archived_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    operation   TEXT NOT NULL CHECK (operation IN ('update', 'delete'))
);
CREATE INDEX memstore_versions__key_idx ON memstore_versions (collection, key, id);
CREATE INDEX memstore_versions__archived_idx ON memstore_versions (collection, archived_at);
