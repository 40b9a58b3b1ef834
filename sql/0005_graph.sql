-- memstore schema, version 5: graphs of facts (nodes, edges) and profiles.
-- Stock SQLite 3.40 only: see 0001_core.sql.

CREATE TABLE memstore_nodes (
    graph      TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    props      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(props) AND json_type(props) = 'object'),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (graph, id)
);
CREATE INDEX memstore_nodes__kind_idx ON memstore_nodes (graph, kind);

-- Deleting a node deletes its edges. Tools that write with foreign keys off
-- can still leave an edge without an endpoint: Graph.check() finds those.
CREATE TABLE memstore_edges (
    graph      TEXT NOT NULL,
    source     TEXT NOT NULL,
    target     TEXT NOT NULL,
    relation   TEXT NOT NULL,
    props      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(props) AND json_type(props) = 'object'),
    weight     REAL NOT NULL DEFAULT 1.0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (graph, source, relation, target),
    FOREIGN KEY (graph, source) REFERENCES memstore_nodes (graph, id) ON DELETE CASCADE,
    FOREIGN KEY (graph, target) REFERENCES memstore_nodes (graph, id) ON DELETE CASCADE,
    CHECK (source <> target)
);
CREATE INDEX memstore_edges__target_idx ON memstore_edges (graph, target, relation);

CREATE TABLE memstore_profiles (
    graph      TEXT NOT NULL,
    name       TEXT NOT NULL,
    data       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data) AND json_type(data) = 'object'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (graph, name)
);
