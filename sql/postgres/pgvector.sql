-- pgvector, where the database has it (someone allowed to has run CREATE EXTENSION
-- vector in it): applied once per database by memstore (_Postgres._adopt_pgvector),
-- whatever the schema's version; not a numbered step, since a database has it or not. With it, the database
-- ranks a query's candidates (Collection.nearest, hybrid, Graph.nearest) and memstore
-- scores them again exactly, in float64, as its own index does; without it, memstore's
-- numpy index ranks them.

-- A vector's float32 little-endian bytes (memstore_vectors.vector, the file's layout) as
-- pgvector's type, decoded bit by bit (SQL has no cast from bytes to float4): sign,
-- exponent and mantissa, in float8, where each float32 is exact. NaN and infinities
-- cannot be written (memstore refuses them; pgvector's cast too, for other tools).
CREATE FUNCTION _memstore_embedding(b bytea) RETURNS vector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_agg(
        (CASE WHEN e = 0 THEN m * 2::float8 ^ -149
              ELSE (8388608 + m) * 2::float8 ^ (e - 150) END) * (1 - 2 * s)
        ORDER BY i)::vector
    FROM (
        SELECT i, get_byte(b, 4 * i + 3) >> 7 AS s,
            ((get_byte(b, 4 * i + 3) & 127) << 1) | (get_byte(b, 4 * i + 2) >> 7) AS e,
            ((get_byte(b, 4 * i + 2) & 127) << 16) | (get_byte(b, 4 * i + 1) << 8)
                | get_byte(b, 4 * i) AS m
        FROM generate_series(0, length(b) / 4 - 1) AS i
    ) AS bits
$$;

-- Generated from the bytes, so that every tool's writes are ranked right (about 0.1 ms a
-- write for 384 dimensions). The bytes are kept out of the row (EXTERNAL) and the vector
-- in it (MAIN): a row with both inline is past TOAST's 2 kB at 384 dimensions, and the
-- vector, the larger, would go out, to be fetched back for every row a query ranks (5
-- times slower, measured). More than pgvector's 16,000 dimensions: none (memstore's
-- index ranks those).
ALTER TABLE memstore_vectors ALTER COLUMN vector SET STORAGE EXTERNAL;
ALTER TABLE memstore_vectors ADD COLUMN embedding vector
    GENERATED ALWAYS AS (CASE WHEN length(vector) <= 64000 THEN _memstore_embedding(vector) END)
    STORED;
ALTER TABLE memstore_vectors ALTER COLUMN embedding SET STORAGE MAIN;
-- The rows there were are written again, their vectors now in the row (not logged as
-- changes: none is one).
ALTER TABLE memstore_vectors DISABLE TRIGGER USER;
UPDATE memstore_vectors SET vector = vector;
ALTER TABLE memstore_vectors ENABLE TRIGGER USER;

-- Vectors too long for float32 sums (WIDE_ABOVE): their collection is ranked by
-- memstore's index, in float64; this finds whether a collection has any (0.02 ms). The
-- statistics tell the planner how few they are (without them it reads every vector).
CREATE INDEX memstore_vectors__wide ON memstore_vectors (collection, model)
    WHERE vector_norm(embedding) >= '1e18'::float8;
CREATE STATISTICS memstore_vectors__norm ON (vector_norm(embedding)) FROM memstore_vectors;
-- Gathered now if there are vectors (autovacuum gathers them later otherwise: those of an
-- empty table would tell the planner that it stays empty, and writes that look a vector
-- up would read the whole table until then).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM memstore_vectors) THEN
        ANALYZE memstore_vectors;
    END IF;
END
$$;
