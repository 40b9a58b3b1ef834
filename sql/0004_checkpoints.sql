-- memstore schema, version 4: checkpoints of agent state, with branches.
-- Stock SQLite 3.40 only: see 0001_core.sql.

CREATE TABLE memstore_checkpoints (
    id          TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL,
    branch      TEXT NOT NULL DEFAULT 'main',
    -- NO ACTION: a parent cannot be deleted while a checkpoint points at it.
    parent_id   TEXT REFERENCES memstore_checkpoints (id),
    -- The state as JSON text; or, for large states, zlib-compressed JSON in
    -- state_zlib (then state is NULL). size is the JSON's length in bytes.
    state       TEXT CHECK (state IS NULL OR json_valid(state)),
    state_zlib  BLOB,
    size        INTEGER NOT NULL CHECK (size >= 0),
    metadata    TEXT NOT NULL DEFAULT '{}'
                CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    tags        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CHECK ((state IS NULL) <> (state_zlib IS NULL)),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX memstore_checkpoints__thread_idx
    ON memstore_checkpoints (thread_id, branch, created_at);
CREATE INDEX memstore_checkpoints__parent_idx ON memstore_checkpoints (parent_id);

-- A branch of a thread's checkpoints, started from one checkpoint.
CREATE TABLE memstore_checkpoint_branches (
    thread_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    from_id    TEXT REFERENCES memstore_checkpoints (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (thread_id, name)
);
