-- memstore schema, version 13: collections are indexed for search in batches.
-- Stock SQLite 3.40 only: see 0001_core.sql.
--
-- As messages are since version 8: a put no longer writes the FTS5 index (about
-- half of a single put's time), its row waits past its collection's mark in
-- memstore_fts_progress (fts: "<collection>_fts"), and whoever searches, checks
-- or closes the file indexes the waiting rows first, in one statement
-- (memstore.index_pending() does it for every index, from any connection); a
-- handle also does it every 100 writes. A collection's FTS triggers keep the
-- index right for the rows up to the mark, whoever writes them; without its
-- row in memstore_fts_progress, a collection is indexed row by row as before.
--
-- The collections' triggers and marks are made by the upgrade step in
-- memstore.py (_upgrade_schema_13): SQL alone cannot list the collections. The
-- same step rewrites the CHECKs on a message's role and a thread's status as
-- comparisons: an IN list of three values or more made SQLite build a
-- temporary b-tree for every row written, and SQL cannot change a CHECK.

-- A collection may go without the indexes on created_at and updated_at
-- (Store.collection(..., time_indexes=False)): each index is one more page
-- written by every put (a quarter of a single put's time at 100,000 records),
-- and a collection read by key and by its own indexes never uses them.
-- Retention by age and orders by those times then scan the table.
ALTER TABLE _memstore_collections ADD COLUMN time_indexes INTEGER NOT NULL DEFAULT 1
    CHECK (time_indexes IN (0, 1));

-- A message is no longer indexed by its creation time: every append and every
-- undo wrote that index's page too (one page in six of an append), and no read
-- of memstore's uses it. A thread's messages are read by (thread_id,
-- position); a thread's age is its last_message_at; the explorer takes the
-- newest message by id.
DROP INDEX memstore_messages__created_idx;

-- Messages deleted after they were indexed leave the index in batches too: an
-- FTS5 delete writes a segment of its own (5 of the 8.4 WAL pages an undo
-- wrote). The delete trigger keeps the message's id and text in
-- memstore_messages_fts_gone, and the catch-up (INDEX_PENDING_MESSAGES_SQL)
-- takes them all out of the index at once, before it indexes what is new.
-- Searches join the index to memstore_messages, so a message waiting here is
-- found by none meanwhile. A new message given the id of one waiting here (SQLite
-- reuses the largest id after it is deleted) takes the old one out first.
CREATE TABLE memstore_messages_fts_gone (
    id      INTEGER PRIMARY KEY,
    content TEXT
);

DROP TRIGGER memstore_messages__fts_delete;
CREATE TRIGGER memstore_messages__fts_delete AFTER DELETE ON memstore_messages
WHEN old.id <= (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')
BEGIN
    INSERT INTO memstore_messages_fts_gone (id, content) VALUES (old.id, old.content)
    ON CONFLICT (id) DO NOTHING;
END;

DROP TRIGGER memstore_messages__fts_insert;
CREATE TRIGGER memstore_messages__fts_insert AFTER INSERT ON memstore_messages
WHEN new.id <= (SELECT indexed_to FROM memstore_fts_progress WHERE fts = 'memstore_messages_fts')
BEGIN
    INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content)
    SELECT 'delete', id, content FROM memstore_messages_fts_gone WHERE id = new.id;
    DELETE FROM memstore_messages_fts_gone WHERE id = new.id;
    INSERT INTO memstore_messages_fts (rowid, content) VALUES (new.id, new.content);
END;
