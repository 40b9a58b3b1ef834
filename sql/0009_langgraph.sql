-- memstore schema, version 9: LangGraph's checkpoints (memstore_langgraph.MemstoreSaver).
-- Stock SQLite 3.40 only: see 0001_core.sql.
--
-- LangGraph hands a checkpointer its state already serialized by its own
-- serde (type + bytes, msgpack by default), so values are BLOBs with their
-- serde type beside them. A checkpoint is stored without its channel values:
-- each channel's value is written once per version (memstore_lg_blobs) and
-- shared by every checkpoint that has that version, so a checkpoint that
-- changes one channel writes one value, not the whole state.

CREATE TABLE memstore_lg_checkpoints (
    thread_id            TEXT NOT NULL,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    -- LangGraph's ids are uuid6: they sort in the order checkpoints were made.
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type                 TEXT NOT NULL,
    checkpoint           BLOB NOT NULL,
    -- The checkpoint's metadata (source, step, parents, run_id, the run's own
    -- keys), for filtering and browsing.
    metadata             TEXT NOT NULL DEFAULT '{}'
                         CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    -- Channel to version (as text) of the values this checkpoint uses: which
    -- memstore_lg_blobs rows are still needed after a delete.
    channel_versions     TEXT NOT NULL DEFAULT '{}'
                         CHECK (json_valid(channel_versions)),
    run_id               TEXT GENERATED ALWAYS AS (json_extract(metadata, '$.run_id')) VIRTUAL,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX memstore_lg_checkpoints__run_idx ON memstore_lg_checkpoints (run_id)
    WHERE run_id IS NOT NULL;

CREATE TABLE memstore_lg_blobs (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    -- 'empty' (and no blob) for a channel that had no value at that version.
    type          TEXT NOT NULL,
    blob          BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);

-- Writes of the tasks of a step, pending until the next checkpoint.
CREATE TABLE memstore_lg_writes (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    -- The write's place in its task's list; negative for LangGraph's special
    -- channels (error, interrupt, ...), which a later write replaces.
    idx           INTEGER NOT NULL,
    task_path     TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    type          TEXT NOT NULL,
    value         BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
