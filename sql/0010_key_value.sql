-- memstore schema, version 10: byte values under string keys, per namespace
-- (memstore_langchain.MemstoreByteStore: LangChain's BaseStore[str, bytes]).
-- Stock SQLite 3.40 only: see 0001_core.sql.
--
-- What is stored is the caller's bytes (embeddings, pickled or JSON
-- documents), so a BLOB, with its size beside it for browsing.

CREATE TABLE memstore_kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (namespace, key)
);
