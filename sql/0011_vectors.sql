-- memstore schema, version 11: vector memory (Collection.nearest, .hybrid).
-- Stock SQLite 3.40 only: see 0001_core.sql. No loadable extension is needed
-- to read or write these tables.
--
-- A collection declared with vectors={"dim": ..., "model": ...} keeps its
-- records' embeddings here: float32, little-endian, packed in a BLOB (the
-- layout sqlite-vec reads too). Each row says which model made it and its
-- dimension, so vectors of two models are never compared. A record has one
-- vector per model, or one per part (part is '' unless the record is
-- embedded field by field, as LangGraph's store does).
--
-- A record's vectors go with it: each such collection has a trigger
-- "<name>__vectors_delete" that deletes them when any tool deletes the record.

-- The collection's vector declaration: {"dim", "model", "metric", "fields"}.
ALTER TABLE _memstore_collections ADD COLUMN vectors TEXT
    CHECK (vectors IS NULL OR (json_valid(vectors) AND json_type(vectors) = 'object'));

CREATE TABLE memstore_vectors (
    id          INTEGER PRIMARY KEY,
    collection  TEXT NOT NULL,
    -- The record's id (its table's INTEGER PRIMARY KEY).
    record_id   INTEGER NOT NULL,
    model       TEXT NOT NULL CHECK (length(model) > 0),
    part        TEXT NOT NULL DEFAULT '',
    dim         INTEGER NOT NULL CHECK (dim > 0),
    vector      BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = 4 * dim),
    embedded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE UNIQUE INDEX memstore_vectors__record
    ON memstore_vectors (collection, record_id, model, part);

-- Every change to memstore_vectors, by any tool, in commit order: a process
-- holding a collection's vectors in memory reads the changes made since it
-- last looked instead of loading them all again. memstore trims the log; a
-- reader that is behind the trimmed part loads everything.
CREATE TABLE memstore_vector_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    record_id  INTEGER NOT NULL
);
CREATE INDEX memstore_vector_log__collection ON memstore_vector_log (collection, seq);

-- Per collection, the last seq trimmed from the log.
CREATE TABLE memstore_vector_log_trimmed (
    collection TEXT PRIMARY KEY,
    through    INTEGER NOT NULL
);

CREATE TRIGGER memstore_vectors__log_insert AFTER INSERT ON memstore_vectors BEGIN
    INSERT INTO memstore_vector_log (collection, record_id) VALUES (new.collection, new.record_id);
END;
CREATE TRIGGER memstore_vectors__log_update AFTER UPDATE ON memstore_vectors BEGIN
    INSERT INTO memstore_vector_log (collection, record_id) VALUES (old.collection, old.record_id);
    INSERT INTO memstore_vector_log (collection, record_id)
    SELECT new.collection, new.record_id
    WHERE new.collection IS NOT old.collection OR new.record_id IS NOT old.record_id;
END;
CREATE TRIGGER memstore_vectors__log_delete AFTER DELETE ON memstore_vectors BEGIN
    INSERT INTO memstore_vector_log (collection, record_id) VALUES (old.collection, old.record_id);
END;
