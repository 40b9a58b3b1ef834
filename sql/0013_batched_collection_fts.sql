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
-- memstore.py (_upgrade_batched_fts): SQL alone cannot list the collections.

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
