-- memstore schema, version 7: stable version numbers, and cache settings in the file.
-- Stock SQLite 3.40 only: see 0001_core.sql.

-- Each archived version keeps the number it was given, whatever retention
-- removes later: version n of a record is always the same version.
ALTER TABLE memstore_versions ADD COLUMN version INTEGER CHECK (version IS NULL OR version > 0);
UPDATE memstore_versions SET version = (
    SELECT count(*) FROM memstore_versions AS earlier
    WHERE earlier.collection = memstore_versions.collection
      AND earlier.key = memstore_versions.key
      AND earlier.id <= memstore_versions.id
);
CREATE INDEX memstore_versions__number_idx ON memstore_versions (collection, key, version);

-- The last version number given per record, so numbers are never reused,
-- even after retention removed every archived version.
CREATE TABLE memstore_version_counters (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    last       INTEGER NOT NULL CHECK (last > 0),
    PRIMARY KEY (collection, key)
);
INSERT INTO memstore_version_counters (collection, key, last)
    SELECT collection, key, max(version) FROM memstore_versions GROUP BY collection, key;

-- A cache's default time to live, beside its hit and miss counts: every
-- handle on the cache, in any process, uses the same.
ALTER TABLE memstore_cache_stats ADD COLUMN ttl_seconds REAL
    CHECK (ttl_seconds IS NULL OR ttl_seconds > 0);

-- A thread's message count and last message time, kept in step with its
-- messages by whoever writes them (memstore, or any other tool).
CREATE TRIGGER memstore_messages__count_insert AFTER INSERT ON memstore_messages
BEGIN
    UPDATE memstore_threads SET
        message_count = message_count + 1,
        last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < new.created_at
                               THEN new.created_at ELSE last_message_at END
    WHERE id = new.thread_id;
END;
CREATE TRIGGER memstore_messages__count_delete AFTER DELETE ON memstore_messages
BEGIN
    UPDATE memstore_threads SET message_count = max(message_count - 1, 0)
    WHERE id = old.thread_id;
END;

-- Indexes over several fields, declared with collection(..., indexes=[...]):
-- [{"fields": ["event_type", "-timestamp"], "unique": false}, ...].
ALTER TABLE _memstore_collections ADD COLUMN indexes TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(indexes) AND json_type(indexes) = 'array');
