-- memstore schema, version 12: facts that change over time, memory hygiene, and
-- graphs that can be searched.
-- Stock SQLite 3.40 only: see 0001_core.sql.
--
-- A collection declared temporal=True gives each record a validity period in
-- world time, [valid_from, valid_to), in columns of its own table (added when
-- it is declared; '0001-01-01...' and '9999-12-31...' mean no bound, so that
-- "valid at t" is two comparisons an index can serve). Superseding a fact
-- keeps the old one as a row of the same table, closed at the change and
-- marked with the key it was a fact of (fact_of), so that search, vectors and
-- filters see it for as_of queries; store time comes from created_at,
-- updated_at and the version history, which keeps each version's validity.

ALTER TABLE _memstore_collections ADD COLUMN temporal INTEGER NOT NULL DEFAULT 0
    CHECK (temporal IN (0, 1));

-- The validity a version had while it was current (temporal collections), and
-- the key it was a fact of when it was a superseded fact's row.
ALTER TABLE memstore_versions ADD COLUMN fact_from TEXT;
ALTER TABLE memstore_versions ADD COLUMN fact_to TEXT;
ALTER TABLE memstore_versions ADD COLUMN fact_of TEXT;

-- Graph edges hold in world time too: [valid_from, valid_to), unbounded by default.
ALTER TABLE memstore_edges ADD COLUMN valid_from TEXT NOT NULL
    DEFAULT '0001-01-01T00:00:00.000000Z';
ALTER TABLE memstore_edges ADD COLUMN valid_to TEXT NOT NULL
    DEFAULT '9999-12-31T23:59:59.999999Z';

-- Memory hygiene, declared per collection with hygiene=...: {"dedup": "exact" |
-- null, "policy": "skip" | "merge" | "keep"}; such a collection's table gets the
-- columns pinned, forgotten_at, access_count, last_accessed and content_hash.
ALTER TABLE _memstore_collections ADD COLUMN hygiene TEXT
    CHECK (hygiene IS NULL OR (json_valid(hygiene) AND json_type(hygiene) = 'object'));

-- Graphs that can be searched: the words of each node (its id, kind and the text
-- values of its props) and of each edge (its relation and the text of its props),
-- kept by triggers whoever writes (renames included), in a table with an INTEGER
-- PRIMARY KEY (so that VACUUM, which renumbers implicit rowids, cannot move the
-- index's rows), indexed by memstore_graph_fts (external content).
CREATE TABLE memstore_graph_text (
    id       INTEGER PRIMARY KEY,
    graph    TEXT NOT NULL,
    -- 'node', or 'edge'
    item     TEXT NOT NULL CHECK (item IN ('node', 'edge')),
    -- the node's id, or the edge's source
    ref      TEXT NOT NULL,
    -- an edge's relation and target; '' for a node (an edge's are never empty)
    relation TEXT NOT NULL DEFAULT '',
    target   TEXT NOT NULL DEFAULT '',
    words    TEXT NOT NULL,
    UNIQUE (graph, item, ref, relation, target)
);
CREATE VIRTUAL TABLE memstore_graph_fts USING fts5(
    words, content="memstore_graph_text", content_rowid="id",
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER memstore_graph_text__fts_insert AFTER INSERT ON memstore_graph_text
BEGIN
    INSERT INTO memstore_graph_fts (rowid, words) VALUES (new.id, new.words);
END;
CREATE TRIGGER memstore_graph_text__fts_delete AFTER DELETE ON memstore_graph_text
BEGIN
    INSERT INTO memstore_graph_fts (memstore_graph_fts, rowid, words)
    VALUES ('delete', old.id, old.words);
END;
CREATE TRIGGER memstore_graph_text__fts_update AFTER UPDATE OF words ON memstore_graph_text
BEGIN
    INSERT INTO memstore_graph_fts (memstore_graph_fts, rowid, words)
    VALUES ('delete', old.id, old.words);
    INSERT INTO memstore_graph_fts (rowid, words) VALUES (new.id, new.words);
END;

CREATE TRIGGER memstore_nodes__text_insert AFTER INSERT ON memstore_nodes
BEGIN
    INSERT INTO memstore_graph_text (graph, item, ref, words)
    VALUES (new.graph, 'node', new.id, new.id || ' ' || new.kind || ' ' || coalesce(
        (SELECT group_concat(value, ' ') FROM json_tree(new.props) WHERE type = 'text'), ''))
    ON CONFLICT (graph, item, ref, relation, target) DO UPDATE SET words = excluded.words;
END;
CREATE TRIGGER memstore_nodes__text_update AFTER UPDATE OF graph, id, kind, props
ON memstore_nodes
BEGIN
    UPDATE memstore_graph_text SET graph = new.graph, ref = new.id,
        words = new.id || ' ' || new.kind || ' ' || coalesce(
        (SELECT group_concat(value, ' ') FROM json_tree(new.props) WHERE type = 'text'), '')
    WHERE graph = old.graph AND item = 'node' AND ref = old.id;
END;
CREATE TRIGGER memstore_nodes__text_delete AFTER DELETE ON memstore_nodes
BEGIN
    DELETE FROM memstore_graph_text WHERE graph = old.graph AND item = 'node' AND ref = old.id;
END;

CREATE TRIGGER memstore_edges__text_insert AFTER INSERT ON memstore_edges
BEGIN
    INSERT INTO memstore_graph_text (graph, item, ref, relation, target, words)
    VALUES (new.graph, 'edge', new.source, new.relation, new.target,
        replace(new.relation, '_', ' ') || ' ' || coalesce(
        (SELECT group_concat(value, ' ') FROM json_tree(new.props) WHERE type = 'text'), ''))
    ON CONFLICT (graph, item, ref, relation, target) DO UPDATE SET words = excluded.words;
END;
CREATE TRIGGER memstore_edges__text_update AFTER UPDATE OF graph, source, relation, target, props
ON memstore_edges
BEGIN
    UPDATE memstore_graph_text SET graph = new.graph, ref = new.source,
        relation = new.relation, target = new.target,
        words = replace(new.relation, '_', ' ') || ' ' || coalesce(
        (SELECT group_concat(value, ' ') FROM json_tree(new.props) WHERE type = 'text'), '')
    WHERE graph = old.graph AND item = 'edge'
      AND ref = old.source AND relation = old.relation AND target = old.target;
END;
CREATE TRIGGER memstore_edges__text_delete AFTER DELETE ON memstore_edges
BEGIN
    DELETE FROM memstore_graph_text WHERE graph = old.graph AND item = 'edge'
      AND ref = old.source AND relation = old.relation AND target = old.target;
END;

INSERT INTO memstore_graph_text (graph, item, ref, words)
SELECT graph, 'node', id, id || ' ' || kind || ' ' || coalesce(
    (SELECT group_concat(value, ' ') FROM json_tree(props) WHERE type = 'text'), '')
FROM memstore_nodes;
INSERT INTO memstore_graph_text (graph, item, ref, relation, target, words)
SELECT graph, 'edge', source, relation, target,
    replace(relation, '_', ' ') || ' ' || coalesce(
    (SELECT group_concat(value, ' ') FROM json_tree(props) WHERE type = 'text'), '')
FROM memstore_edges;

-- What the store held at a time (known_at) for the graph and for vectors: each
-- replaced or deleted node and edge, kept by triggers whoever writes, with the
-- store time it was current, [known_from, known_to).
CREATE TABLE memstore_node_versions (
    id         INTEGER PRIMARY KEY,
    graph      TEXT NOT NULL,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    props      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    known_from TEXT NOT NULL,
    known_to   TEXT NOT NULL
);
CREATE INDEX memstore_node_versions__known ON memstore_node_versions (graph, known_to);
CREATE TABLE memstore_edge_versions (
    id         INTEGER PRIMARY KEY,
    graph      TEXT NOT NULL,
    source     TEXT NOT NULL,
    target     TEXT NOT NULL,
    relation   TEXT NOT NULL,
    props      TEXT NOT NULL,
    weight     REAL NOT NULL,
    created_at TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_to   TEXT NOT NULL,
    known_from TEXT NOT NULL,
    known_to   TEXT NOT NULL
);
CREATE INDEX memstore_edge_versions__known ON memstore_edge_versions (graph, known_to);

-- A change stops the old version at the new updated_at, or at SQLite's now when
-- the writer left updated_at alone (and then moves updated_at there too, so that
-- the new version starts when the old one stopped).
CREATE TRIGGER memstore_nodes__history_update AFTER UPDATE ON memstore_nodes
WHEN old.graph IS NOT new.graph OR old.id IS NOT new.id OR old.kind IS NOT new.kind
    OR old.props IS NOT new.props
BEGIN
    INSERT INTO memstore_node_versions
        (graph, node, kind, props, created_at, known_from, known_to)
    VALUES (old.graph, old.id, old.kind, old.props, old.created_at, old.updated_at,
        CASE WHEN new.updated_at IS old.updated_at
             THEN strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') ELSE new.updated_at END);
    UPDATE memstore_nodes SET updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
    WHERE new.updated_at IS old.updated_at AND graph = new.graph AND id = new.id;
END;
CREATE TRIGGER memstore_nodes__history_delete AFTER DELETE ON memstore_nodes
BEGIN
    INSERT INTO memstore_node_versions
        (graph, node, kind, props, created_at, known_from, known_to)
    VALUES (old.graph, old.id, old.kind, old.props, old.created_at, old.updated_at,
        strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'));
END;
CREATE TRIGGER memstore_edges__history_update AFTER UPDATE ON memstore_edges
WHEN old.graph IS NOT new.graph OR old.source IS NOT new.source
    OR old.target IS NOT new.target OR old.relation IS NOT new.relation
    OR old.props IS NOT new.props OR old.weight IS NOT new.weight
    OR old.valid_from IS NOT new.valid_from OR old.valid_to IS NOT new.valid_to
BEGIN
    INSERT INTO memstore_edge_versions (graph, source, target, relation, props, weight,
        created_at, valid_from, valid_to, known_from, known_to)
    VALUES (old.graph, old.source, old.target, old.relation, old.props, old.weight,
        old.created_at, old.valid_from, old.valid_to, old.updated_at,
        CASE WHEN new.updated_at IS old.updated_at
             THEN strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') ELSE new.updated_at END);
    UPDATE memstore_edges SET updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
    WHERE new.updated_at IS old.updated_at AND graph = new.graph AND source = new.source
      AND relation = new.relation AND target = new.target;
END;
CREATE TRIGGER memstore_edges__history_delete AFTER DELETE ON memstore_edges
BEGIN
    INSERT INTO memstore_edge_versions (graph, source, target, relation, props, weight,
        created_at, valid_from, valid_to, known_from, known_to)
    VALUES (old.graph, old.source, old.target, old.relation, old.props, old.weight,
        old.created_at, old.valid_from, old.valid_to, old.updated_at,
        strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'));
END;

-- The vectors a record of a temporal collection had while a replaced version of it
-- was current (its version number in memstore_versions), copied by the collection's
-- "<name>__history_vectors_update" and "_delete" triggers before the change, so that
-- nearest and hybrid can read what the store held at a time.
CREATE TABLE memstore_version_vectors (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    model      TEXT NOT NULL,
    part       TEXT NOT NULL DEFAULT '',
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = 4 * dim),
    PRIMARY KEY (collection, key, version, model, part)
);
CREATE TRIGGER memstore_versions__vectors_delete AFTER DELETE ON memstore_versions
BEGIN
    DELETE FROM memstore_version_vectors WHERE collection = old.collection
        AND key = old.key AND version = old.version;
END;

-- A graph's vectors (of nodes and edges) are memstore_vectors rows of the collection
-- "graph:" and the graph's name (no collection's name has a colon), keyed by the
-- item's row here; they go with the node or edge, whoever deletes it.
CREATE TRIGGER memstore_graph_text__vectors_delete AFTER DELETE ON memstore_graph_text
BEGIN
    DELETE FROM memstore_vectors WHERE collection = 'graph:' || old.graph AND record_id = old.id;
END;
