-- pgvector, where the server has it: applied once per database by memstore
-- (_Postgres._adopt_pgvector) after CREATE EXTENSION vector, whatever the schema's
-- version; not a numbered step, since a database has it or not. With it, the database
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
-- write for 384 dimensions).
ALTER TABLE memstore_vectors
    ADD COLUMN embedding vector GENERATED ALWAYS AS (_memstore_embedding(vector)) STORED;

-- Vectors too long for float32 sums (WIDE_ABOVE): their collection is ranked by
-- memstore's index, in float64; this finds whether a collection has any.
CREATE INDEX memstore_vectors__wide ON memstore_vectors (collection, model)
    WHERE vector_norm(embedding) >= 1e18::float8;
