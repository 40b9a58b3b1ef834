-- memstore schema, version 8: appending a message writes fewer pages.
-- Stock SQLite 3.40 only: see 0001_core.sql.
--
-- Every index a row is in is one more page to write per transaction. Indexes
-- that hold mostly NULLs become partial: a message without a model, a thread
-- without a user, has no entry at all. A lookup of a value (model = ?, the
-- foreign key's merged_from = ?, Datasette's facets, which skip NULLs) uses
-- them as before.
DROP INDEX memstore_messages__model_idx;
CREATE INDEX memstore_messages__model_idx ON memstore_messages (model)
    WHERE model IS NOT NULL;
DROP INDEX memstore_messages__merged_idx;
CREATE INDEX memstore_messages__merged_idx ON memstore_messages (merged_from)
    WHERE merged_from IS NOT NULL;
DROP INDEX memstore_threads__user_idx;
CREATE INDEX memstore_threads__user_idx ON memstore_threads (user_id, last_message_at)
    WHERE user_id IS NOT NULL;
DROP INDEX memstore_threads__agent_idx;
CREATE INDEX memstore_threads__agent_idx ON memstore_threads (agent_id, last_message_at)
    WHERE agent_id IS NOT NULL;

-- Messages are indexed for search in batches, not one FTS5 write per message:
-- that write cost more than the message itself (about 6.5 of 16.5 WAL pages
-- per append). memstore_fts_progress says up to which message id the index
-- is complete: every message with an id up to indexed_to is in the index,
-- none after it is. Whoever searches, checks or closes the file first indexes
-- the messages past it, in one statement (memstore.INDEX_PENDING_MESSAGES_SQL);
-- add_message does the same every 100 messages, so the index is never far
-- behind.
CREATE TABLE memstore_fts_progress (
    fts        TEXT PRIMARY KEY,
    indexed_to INTEGER NOT NULL CHECK (indexed_to >= 0)
);
INSERT INTO memstore_fts_progress (fts, indexed_to)
    SELECT 'memstore_messages_fts', coalesce(max(id), 0) FROM memstore_messages;

-- The triggers keep the index right for the rows it covers, whoever writes
-- them. A new row normally gets an id past the mark and waits; one that gets
-- an id the mark has passed (an explicit id, or SQLite giving max(id) + 1
-- again after the newest rows were deleted) is indexed at once.
DROP TRIGGER memstore_messages__fts_insert;
CREATE TRIGGER memstore_messages__fts_insert AFTER INSERT ON memstore_messages
WHEN new.id <= (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')
BEGIN
    INSERT INTO memstore_messages_fts (rowid, content) VALUES (new.id, new.content);
END;

DROP TRIGGER memstore_messages__fts_delete;
CREATE TRIGGER memstore_messages__fts_delete AFTER DELETE ON memstore_messages
WHEN old.id <= (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')
BEGIN
    INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
END;

DROP TRIGGER memstore_messages__fts_update;
CREATE TRIGGER memstore_messages__fts_update AFTER UPDATE OF content ON memstore_messages
WHEN old.id <= (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')
BEGIN
    INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
    INSERT INTO memstore_messages_fts (rowid, content) VALUES (new.id, new.content);
END;
