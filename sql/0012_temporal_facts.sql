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
