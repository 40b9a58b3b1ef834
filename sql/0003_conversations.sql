-- memstore schema, version 3: conversations, their messages and token usage,
-- branches and merges. Stock SQLite 3.40 only: see 0001_core.sql.

CREATE TABLE memstore_threads (
    id              TEXT PRIMARY KEY,
    title           TEXT,
    user_id         TEXT,
    agent_id        TEXT,
    tags            TEXT NOT NULL DEFAULT '[]'
                    CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    metadata        TEXT NOT NULL DEFAULT '{}'
                    CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    last_message_at TEXT,
    -- Messages in the thread's whole history, shared ones of a branch included.
    message_count   INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    -- A branch shares its parent's history up to and including branch_point.
    parent_id       TEXT REFERENCES memstore_threads (id),
    branch_point    INTEGER CHECK (branch_point IS NULL OR branch_point >= 0),
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'merged', 'abandoned')),
    status_reason   TEXT,
    merged_into     TEXT REFERENCES memstore_threads (id) ON DELETE SET NULL,
    status_at       TEXT,
    CHECK ((parent_id IS NULL) = (branch_point IS NULL))
);
CREATE INDEX memstore_threads__user_idx ON memstore_threads (user_id, last_message_at);
CREATE INDEX memstore_threads__agent_idx ON memstore_threads (agent_id, last_message_at);
CREATE INDEX memstore_threads__last_idx ON memstore_threads (last_message_at);
CREATE INDEX memstore_threads__parent_idx ON memstore_threads (parent_id);

CREATE TABLE memstore_messages (
    id            INTEGER PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL CHECK (position > 0),
    role          TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    -- Text, or JSON text when content_type is 'json'.
    content       TEXT,
    content_type  TEXT NOT NULL DEFAULT 'text' CHECK (content_type IN ('text', 'json')),
    name          TEXT,
    tool_calls    TEXT CHECK (tool_calls IS NULL OR json_valid(tool_calls)),
    metadata      TEXT NOT NULL DEFAULT '{}'
                  CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    input_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    total_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (total_tokens >= 0),
    model         TEXT,
    cost          REAL NOT NULL DEFAULT 0 CHECK (cost >= 0),
    -- For a message a merge copied: the message it copies (its usage stays there).
    merged_from   INTEGER REFERENCES memstore_messages (id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    UNIQUE (thread_id, position)
);
CREATE INDEX memstore_messages__model_idx ON memstore_messages (model);
CREATE INDEX memstore_messages__created_idx ON memstore_messages (created_at);
CREATE INDEX memstore_messages__merged_idx ON memstore_messages (merged_from);

CREATE TABLE memstore_merges (
    id             INTEGER PRIMARY KEY,
    branch_id      TEXT NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE,
    into_id        TEXT NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE,
    first_position INTEGER,
    last_position  INTEGER,
    message_count  INTEGER NOT NULL CHECK (message_count >= 0),
    merged_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX memstore_merges__branch_idx ON memstore_merges (branch_id);
CREATE INDEX memstore_merges__into_idx ON memstore_merges (into_id);

CREATE VIRTUAL TABLE memstore_messages_fts USING fts5(
    content, content="memstore_messages", content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER memstore_messages__fts_insert AFTER INSERT ON memstore_messages
BEGIN
    INSERT INTO memstore_messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER memstore_messages__fts_delete AFTER DELETE ON memstore_messages
BEGIN
    INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER memstore_messages__fts_update AFTER UPDATE OF content ON memstore_messages
BEGIN
    INSERT INTO memstore_messages_fts (memstore_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
    INSERT INTO memstore_messages_fts (rowid, content) VALUES (new.id, new.content);
END;
