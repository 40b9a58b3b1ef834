-- memstore schema, version 12: facts that change over time, and memory hygiene.
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

-- The validity a version had while it was current (temporal collections).
ALTER TABLE memstore_versions ADD COLUMN fact_from TEXT;
ALTER TABLE memstore_versions ADD COLUMN fact_to TEXT;

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
