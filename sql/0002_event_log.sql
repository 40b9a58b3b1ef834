-- memstore schema, version 2: append-only event logs.
--
-- Tables whose names start with memstore_ hold the memory layers' data and
-- are meant to be read in any SQLite tool; collection names cannot take the
-- prefix. Stock SQLite 3.40 only: see 0001_core.sql.

-- One row per log: its name and the last sequence number handed out, so
-- numbers stay gap-free and never restart, even after retention.
CREATE TABLE memstore_logs (
    name       TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

CREATE TABLE memstore_events (
    id          INTEGER PRIMARY KEY,
    log         TEXT NOT NULL REFERENCES memstore_logs (name) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          TEXT NOT NULL,
    payload     TEXT NOT NULL CHECK (json_valid(payload)),
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    UNIQUE (log, seq),
    UNIQUE (log, event_id)
);
CREATE INDEX memstore_events__kind_idx ON memstore_events (log, kind, seq);
CREATE INDEX memstore_events__at_idx ON memstore_events (log, at);

-- Events are immutable, whoever tries to change one.
CREATE TRIGGER memstore_events__immutable BEFORE UPDATE ON memstore_events
BEGIN
    SELECT RAISE(ABORT, 'memstore events are immutable');
END;

CREATE TABLE memstore_event_snapshots (
    log        TEXT NOT NULL REFERENCES memstore_logs (name) ON DELETE CASCADE,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    state      TEXT NOT NULL CHECK (json_valid(state)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (log, seq)
);

-- Full-text search over kinds and payloads, kept in step by triggers.
CREATE VIRTUAL TABLE memstore_events_fts USING fts5(
    kind, payload, content="memstore_events", content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER memstore_events__fts_insert AFTER INSERT ON memstore_events
BEGIN
    INSERT INTO memstore_events_fts (rowid, kind, payload) VALUES (new.id, new.kind, new.payload);
END;
CREATE TRIGGER memstore_events__fts_delete AFTER DELETE ON memstore_events
BEGIN
    INSERT INTO memstore_events_fts (memstore_events_fts, rowid, kind, payload)
    VALUES ('delete', old.id, old.kind, old.payload);
END;
