-- memstore schema on PostgreSQL, version 13: where PostgreSQL's chain starts.
--
-- memstore first ran on PostgreSQL at schema version 13, so a new database is
-- brought straight to it by this file; later versions add a file to each chain
-- (sql/NNNN_*.sql for SQLite, sql/postgres/NNNN_*.sql here), applied by the same
-- runner (memstore._migrate), each with its version record in one transaction.
-- tests/test_postgres_schema.py compares what the two chains create.
--
-- The values are the file's: records are JSON text, timestamps ISO-8601 text in
-- UTC with six fractional digits, so that they compare and sort alike on both
-- engines; text that memstore orders by is in the "C" collation, SQLite's byte order.
--
-- Every layer is here. Until memstore's first release with PostgreSQL, this file may change in
-- place (no PostgreSQL store exists from before it); after, a layer comes in a file
-- of its own.

-- The schema version: SQLite's PRAGMA user_version.
CREATE TABLE _memstore_schema (
    version integer NOT NULL
);

-- Collection names ignore case, as SQLite's NOCASE does for their ASCII letters.
CREATE COLLATION memstore_nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

-- SQLite's strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'): now, as memstore writes times, to
-- the millisecond as memstore's own clock is (a finer one here would put a version
-- written later in the same millisecond before the one it replaces).
CREATE FUNCTION _memstore_now() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"000Z"')
$$;

CREATE TABLE _memstore_collections (
    name         text COLLATE memstore_nocase PRIMARY KEY,
    fields       text NOT NULL DEFAULT '{}' CHECK (json_typeof(fields::json) = 'object'),
    fts          text NOT NULL DEFAULT '[]' CHECK (json_typeof(fts::json) = 'array'),
    ttl_seconds  double precision CHECK (ttl_seconds IS NULL OR ttl_seconds > 0),
    created_at   text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    updated_at   text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    history      boolean NOT NULL DEFAULT false,
    indexes      text NOT NULL DEFAULT '[]' CHECK (json_typeof(indexes::json) = 'array'),
    vectors      text,
    temporal     boolean NOT NULL DEFAULT false,
    hygiene      text,
    time_indexes boolean NOT NULL DEFAULT true
);

-- A collection's touch trigger (BEFORE UPDATE OF body): a record another tool changes
-- without moving updated_at gets now, as SQLite's AFTER UPDATE trigger gives it.
CREATE FUNCTION _memstore_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    new.updated_at := _memstore_now();
    RETURN new;
END
$$;

-- A collection's TTL trigger (BEFORE INSERT, only on a collection with a default TTL):
-- a record another tool inserts without an expiry gets the collection's.
CREATE FUNCTION _memstore_ttl() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ttl double precision;
BEGIN
    SELECT ttl_seconds INTO ttl FROM _memstore_collections WHERE name = TG_TABLE_NAME;
    IF ttl IS NOT NULL THEN
        new.expires_at := to_char(
            (new.created_at::timestamptz + ttl * interval '1 second') AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS.MS"000Z"'
        );
    END IF;
    RETURN new;
END
$$;

-- A JSON value as SQLite's json_extract gives it, for filters and orders to match and
-- sort records as they do on SQLite (memstore's _PG_OPERATORS): its class (0: null or
-- missing, 1: a number, 2: text), its number (true and false are 1 and 0) and its
-- text (an object or array is its JSON text). SQLite sorts by class, then value.
CREATE FUNCTION _memstore_class(value json) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE json_typeof(value)
        WHEN 'number' THEN 1 WHEN 'boolean' THEN 1
        WHEN 'string' THEN 2 WHEN 'object' THEN 2 WHEN 'array' THEN 2
        ELSE 0 END
$$;

CREATE FUNCTION _memstore_number(value json) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE json_typeof(value)
        WHEN 'number' THEN (value #>> '{}')::numeric
        WHEN 'boolean' THEN CASE WHEN (value #>> '{}')::boolean THEN 1 ELSE 0 END
        END
$$;

CREATE FUNCTION _memstore_text(value json) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE json_typeof(value)
        WHEN 'string' THEN value #>> '{}'
        WHEN 'object' THEN value::text WHEN 'array' THEN value::text
        END
$$;

-- The text search configuration of collections' full-text search: words as PostgreSQL's
-- 'simple' parser finds them, lower case, without diacritics (unaccent, when the server
-- has it), as SQLite's tokenizer unicode61 remove_diacritics 2 gives them; no stemming
-- and no stop words on either engine.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS unaccent;
    CREATE TEXT SEARCH CONFIGURATION memstore (COPY = simple);
    ALTER TEXT SEARCH CONFIGURATION memstore
        ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
        WITH unaccent, simple;
EXCEPTION WHEN OTHERS THEN  -- no unaccent here: words keep their diacritics
    CREATE TEXT SEARCH CONFIGURATION memstore (COPY = simple);
END
$$;

-- TTL caches (SQLite's sql/0006 and sql/0007): entries, and each cache's hit and miss
-- counts and default time to live.
CREATE TABLE memstore_cache (
    cache      text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      text NOT NULL CHECK (value::json IS NOT NULL),
    size       bigint NOT NULL CHECK (size >= 0),
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    expires_at text COLLATE "C",
    PRIMARY KEY (cache, key)
);
CREATE INDEX memstore_cache__expires_idx ON memstore_cache (cache, expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE memstore_cache_stats (
    cache       text COLLATE "C" PRIMARY KEY,
    hits        bigint NOT NULL DEFAULT 0 CHECK (hits >= 0),
    misses      bigint NOT NULL DEFAULT 0 CHECK (misses >= 0),
    ttl_seconds double precision CHECK (ttl_seconds IS NULL OR ttl_seconds > 0)
);

-- Append-only event logs (SQLite's sql/0002): a row per log with the last sequence
-- number handed out (its row lock, taken by the append that bumps it, keeps numbers
-- gap-free and in commit order under any number of connections), the events with
-- their words for search, and snapshots of replayed states.
CREATE TABLE memstore_logs (
    name       text COLLATE "C" PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now()
);

CREATE TABLE memstore_events (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    log          text COLLATE "C" NOT NULL REFERENCES memstore_logs (name) ON DELETE CASCADE,
    seq          bigint NOT NULL CHECK (seq > 0),
    event_id     text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    at           text COLLATE "C" NOT NULL,
    payload      text NOT NULL CHECK (payload::json IS NOT NULL),
    recorded_at  text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    fts_document tsvector GENERATED ALWAYS AS
                 (to_tsvector('memstore'::regconfig, kind || ' ' || payload)) STORED,
    UNIQUE (log, seq),
    UNIQUE (log, event_id)
);
CREATE INDEX memstore_events__kind_idx ON memstore_events (log, kind, seq);
CREATE INDEX memstore_events__at_idx ON memstore_events (log, at);
CREATE INDEX memstore_events__fts_idx ON memstore_events USING gin (fts_document);

-- Events are immutable, whoever tries to change one (a constraint's error, as SQLite's
-- RAISE(ABORT) is).
CREATE FUNCTION _memstore_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'memstore events are immutable' USING ERRCODE = 'check_violation';
END
$$;
CREATE TRIGGER memstore_events__immutable BEFORE UPDATE ON memstore_events
    FOR EACH ROW EXECUTE FUNCTION _memstore_immutable();

CREATE TABLE memstore_event_snapshots (
    log        text COLLATE "C" NOT NULL REFERENCES memstore_logs (name) ON DELETE CASCADE,
    seq        bigint NOT NULL CHECK (seq >= 0),
    state      text NOT NULL CHECK (state::json IS NOT NULL),
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (log, seq)
);

-- Version history of collections declared with history=True (SQLite's sql/0006,
-- 0007 and 0012): the previous record on every change and delete, archived by the
-- collection's triggers (_memstore_archive), so changes made with other tools are
-- kept too; numbers from memstore_version_counters, never reused.
CREATE TABLE memstore_versions (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    collection  text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    body        text NOT NULL CHECK (body::json IS NOT NULL),
    valid_from  text COLLATE "C" NOT NULL,
    archived_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    operation   text NOT NULL CHECK (operation = 'update' OR operation = 'delete'),
    version     bigint CHECK (version IS NULL OR version > 0),
    fact_from   text COLLATE "C",
    fact_to     text COLLATE "C",
    fact_of     text COLLATE "C"
);
CREATE INDEX memstore_versions__key_idx ON memstore_versions (collection, key, id);
CREATE INDEX memstore_versions__archived_idx ON memstore_versions (collection, archived_at);
CREATE INDEX memstore_versions__number_idx ON memstore_versions (collection, key, version);

CREATE TABLE memstore_version_counters (
    collection text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    last       bigint NOT NULL CHECK (last > 0),
    PRIMARY KEY (collection, key)
);

-- A collection's history triggers (AFTER UPDATE OF body when it changed, AFTER
-- DELETE; a temporal collection's, with the argument 'temporal', on its validity too,
-- keeping the fact's period and subject): the old row becomes the next version of its key. It stopped being current
-- when the new one started: the new row's updated_at (which the touch trigger has
-- moved to now if the writer left it), or now for a delete.
CREATE FUNCTION _memstore_archive() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
BEGIN
    INSERT INTO memstore_version_counters (collection, key, last)
    VALUES (TG_TABLE_NAME, old.key, 1)
    ON CONFLICT (collection, key) DO UPDATE SET last = memstore_version_counters.last + 1
    RETURNING last INTO number;
    IF TG_NARGS = 0 THEN
        INSERT INTO memstore_versions
            (collection, key, version, body, valid_from, archived_at, operation)
        VALUES (
            TG_TABLE_NAME, old.key, number, old.body, old.updated_at,
            CASE WHEN TG_OP = 'UPDATE' THEN new.updated_at ELSE _memstore_now() END,
            lower(TG_OP)
        );
    ELSE  -- 'temporal': a fact's validity while it was current, and its subject
        INSERT INTO memstore_versions (collection, key, version, body, valid_from,
            archived_at, operation, fact_from, fact_to, fact_of)
        VALUES (
            TG_TABLE_NAME, old.key, number, old.body, old.updated_at,
            CASE WHEN TG_OP = 'UPDATE' THEN new.updated_at ELSE _memstore_now() END,
            lower(TG_OP), old.valid_from, old.valid_to, old.fact_of
        );
    END IF;
    RETURN NULL;
END
$$;

-- Checkpoints of agent threads (SQLite's sql/0004): a state per checkpoint, whole. On
-- PostgreSQL states are never zlib-compressed by memstore (state_zlib stays NULL): the
-- server compresses large values itself, and filters can read them. A checkpoint's
-- parent link is checked at commit, so that a copy may write children before parents.
CREATE TABLE memstore_checkpoints (
    id          text COLLATE "C" PRIMARY KEY,
    thread_id   text COLLATE "C" NOT NULL,
    branch      text COLLATE "C" NOT NULL DEFAULT 'main',
    parent_id   text COLLATE "C" REFERENCES memstore_checkpoints (id)
                DEFERRABLE INITIALLY DEFERRED,
    state       text CHECK (state IS NULL OR state::json IS NOT NULL),
    state_zlib  bytea,
    size        bigint NOT NULL CHECK (size >= 0),
    metadata    text NOT NULL DEFAULT '{}' CHECK (json_typeof(metadata::json) = 'object'),
    tags        text NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tags::jsonb) = 'array'),
    created_at  text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    CHECK ((state IS NULL) <> (state_zlib IS NULL)),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX memstore_checkpoints__thread_idx
    ON memstore_checkpoints (thread_id, branch, created_at);
CREATE INDEX memstore_checkpoints__parent_idx ON memstore_checkpoints (parent_id);

CREATE TABLE memstore_checkpoint_branches (
    thread_id  text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    from_id    text COLLATE "C" REFERENCES memstore_checkpoints (id) ON DELETE SET NULL
               DEFERRABLE INITIALLY DEFERRED,
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (thread_id, name)
);

-- Every change to the registry, by memstore or another tool, is announced to the
-- connections that listen (each Store's): their collection handles take the
-- declaration again before their next write (memstore's Collection._fresh).
CREATE FUNCTION _memstore_declared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('memstore_declarations', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER _memstore_collections__declared
    AFTER INSERT OR UPDATE OR DELETE ON _memstore_collections
    FOR EACH STATEMENT EXECUTE FUNCTION _memstore_declared();

-- Conversations (SQLite's sql/0003, 0007, 0008 and 0013): threads and their branches,
-- messages with token usage and their words for search, and merges. A thread's and a
-- message's links are checked at commit, so that a copy may write them in any order.
CREATE TABLE memstore_threads (
    id              text COLLATE "C" PRIMARY KEY,
    title           text COLLATE "C",
    user_id         text COLLATE "C",
    agent_id        text COLLATE "C",
    tags            text NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tags::jsonb) = 'array'),
    metadata        text NOT NULL DEFAULT '{}' CHECK (json_typeof(metadata::json) = 'object'),
    created_at      text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    last_message_at text COLLATE "C",
    -- Messages in the thread's whole history, shared ones of a branch included.
    message_count   bigint NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    -- A branch shares its parent's history up to and including branch_point.
    parent_id       text COLLATE "C" REFERENCES memstore_threads (id)
                    DEFERRABLE INITIALLY DEFERRED,
    branch_point    bigint CHECK (branch_point IS NULL OR branch_point >= 0),
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'merged', 'abandoned')),
    status_reason   text,
    merged_into     text COLLATE "C" REFERENCES memstore_threads (id) ON DELETE SET NULL
                    DEFERRABLE INITIALLY DEFERRED,
    status_at       text COLLATE "C",
    CHECK ((parent_id IS NULL) = (branch_point IS NULL))
);
CREATE INDEX memstore_threads__user_idx ON memstore_threads (user_id, last_message_at)
    WHERE user_id IS NOT NULL;
CREATE INDEX memstore_threads__agent_idx ON memstore_threads (agent_id, last_message_at)
    WHERE agent_id IS NOT NULL;
CREATE INDEX memstore_threads__last_idx ON memstore_threads (last_message_at);
CREATE INDEX memstore_threads__parent_idx ON memstore_threads (parent_id);

CREATE TABLE memstore_messages (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    thread_id     text COLLATE "C" NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE
                  DEFERRABLE INITIALLY DEFERRED,
    position      bigint NOT NULL CHECK (position > 0),
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    -- Text, or JSON text when content_type is 'json'.
    content       text,
    content_type  text NOT NULL DEFAULT 'text' CHECK (content_type IN ('text', 'json')),
    name          text,
    tool_calls    text CHECK (tool_calls IS NULL OR tool_calls::json IS NOT NULL),
    metadata      text NOT NULL DEFAULT '{}' CHECK (json_typeof(metadata::json) = 'object'),
    input_tokens  bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    total_tokens  bigint NOT NULL DEFAULT 0 CHECK (total_tokens >= 0),
    model         text COLLATE "C",
    cost          double precision NOT NULL DEFAULT 0 CHECK (cost >= 0),
    -- For a message a merge copied: the message it copies (its usage stays there).
    merged_from   bigint REFERENCES memstore_messages (id) ON DELETE SET NULL
                  DEFERRABLE INITIALLY DEFERRED,
    created_at    text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    fts_document  tsvector GENERATED ALWAYS AS
                  (to_tsvector('memstore'::regconfig, coalesce(content, ''))) STORED,
    UNIQUE (thread_id, position)
);
CREATE INDEX memstore_messages__model_idx ON memstore_messages (model) WHERE model IS NOT NULL;
CREATE INDEX memstore_messages__merged_idx ON memstore_messages (merged_from)
    WHERE merged_from IS NOT NULL;
CREATE INDEX memstore_messages__fts_idx ON memstore_messages USING gin (fts_document);

CREATE TABLE memstore_merges (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    branch_id      text COLLATE "C" NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE
                   DEFERRABLE INITIALLY DEFERRED,
    into_id        text COLLATE "C" NOT NULL REFERENCES memstore_threads (id) ON DELETE CASCADE
                   DEFERRABLE INITIALLY DEFERRED,
    first_position bigint,
    last_position  bigint,
    message_count  bigint NOT NULL CHECK (message_count >= 0),
    merged_at      text COLLATE "C" NOT NULL DEFAULT _memstore_now()
);
CREATE INDEX memstore_merges__branch_idx ON memstore_merges (branch_id);
CREATE INDEX memstore_merges__into_idx ON memstore_merges (into_id);

-- A thread's message count and last message time follow its messages, whoever writes
-- them (SQLite's memstore_messages__count_insert and __count_delete).
CREATE FUNCTION _memstore_count_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE memstore_threads SET
            message_count = message_count + 1,
            last_message_at = CASE WHEN last_message_at IS NULL
                                        OR last_message_at < new.created_at
                                   THEN new.created_at ELSE last_message_at END
        WHERE id = new.thread_id;
    ELSE
        UPDATE memstore_threads SET message_count = greatest(message_count - 1, 0)
        WHERE id = old.thread_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_messages__count_insert AFTER INSERT ON memstore_messages
    FOR EACH ROW EXECUTE FUNCTION _memstore_count_message();
CREATE TRIGGER memstore_messages__count_delete AFTER DELETE ON memstore_messages
    FOR EACH ROW EXECUTE FUNCTION _memstore_count_message();

-- Where the next message of a thread goes: its status, and the last position of its
-- history (its own last message, or its branch point); no row when there is no such
-- thread. The thread's row is locked first, so that appends to one thread from any
-- number of connections wait for each other and take gap-free positions: the second
-- statement reads with a snapshot taken after the lock (under READ COMMITTED, a
-- function's statements each take their own), so it sees the messages the previous
-- holder committed. One statement could not: its snapshot predates the wait.
CREATE FUNCTION _memstore_last_position(thread text, OUT status text, OUT last bigint)
RETURNS SETOF record LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM memstore_threads AS t WHERE t.id = thread FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT t.status, greatest(coalesce(t.branch_point, 0), coalesce(
        (SELECT max(m.position) FROM memstore_messages AS m WHERE m.thread_id = t.id), 0))
    FROM memstore_threads AS t WHERE t.id = thread;
END
$$;

-- Graphs of facts (SQLite's sql/0005 and 0012): nodes, edges that hold in world time
-- [valid_from, valid_to), profiles; the words of each node and edge for search; and
-- every replaced or deleted node and edge with the store time it was current
-- [known_from, known_to), kept by triggers whoever writes.
CREATE TABLE memstore_nodes (
    graph      text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    kind       text COLLATE "C" NOT NULL,
    props      text NOT NULL DEFAULT '{}' CHECK (json_typeof(props::json) = 'object'),
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    updated_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (graph, id)
);
CREATE INDEX memstore_nodes__kind_idx ON memstore_nodes (graph, kind);

-- Deleting a node deletes its edges (at once: PostgreSQL defers only the check).
CREATE TABLE memstore_edges (
    graph      text COLLATE "C" NOT NULL,
    source     text COLLATE "C" NOT NULL,
    target     text COLLATE "C" NOT NULL,
    relation   text COLLATE "C" NOT NULL,
    props      text NOT NULL DEFAULT '{}' CHECK (json_typeof(props::json) = 'object'),
    weight     double precision NOT NULL DEFAULT 1.0,
    created_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    updated_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    valid_from text COLLATE "C" NOT NULL DEFAULT '0001-01-01T00:00:00.000000Z',
    valid_to   text COLLATE "C" NOT NULL DEFAULT '9999-12-31T23:59:59.999999Z',
    PRIMARY KEY (graph, source, relation, target),
    FOREIGN KEY (graph, source) REFERENCES memstore_nodes (graph, id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (graph, target) REFERENCES memstore_nodes (graph, id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    CHECK (source <> target)
);
CREATE INDEX memstore_edges__target_idx ON memstore_edges (graph, target, relation);

CREATE TABLE memstore_profiles (
    graph      text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    data       text NOT NULL DEFAULT '{}' CHECK (json_typeof(data::json) = 'object'),
    updated_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (graph, name)
);

-- The words of a node (its id, kind and the text values of its props) and of an edge
-- (its relation and the text of its props), kept by the triggers below.
CREATE TABLE memstore_graph_text (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    graph        text COLLATE "C" NOT NULL,
    -- 'node', or 'edge'
    item         text NOT NULL CHECK (item IN ('node', 'edge')),
    -- the node's id, or the edge's source
    ref          text COLLATE "C" NOT NULL,
    -- an edge's relation and target; '' for a node (an edge's are never empty)
    relation     text COLLATE "C" NOT NULL DEFAULT '',
    target       text COLLATE "C" NOT NULL DEFAULT '',
    words        text NOT NULL,
    fts_document tsvector GENERATED ALWAYS AS (to_tsvector('memstore'::regconfig, words)) STORED,
    UNIQUE (graph, item, ref, relation, target)
);
CREATE INDEX memstore_graph_text__fts_idx ON memstore_graph_text USING gin (fts_document);

-- The text values in a JSON value, depth first, joined by spaces (SQLite's
-- group_concat over json_tree's 'text' rows); NULL when there are none.
CREATE FUNCTION _memstore_words(value json) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    found text[] := '{}';
    inner_value json;
BEGIN
    CASE json_typeof(value)
    WHEN 'string' THEN
        RETURN value #>> '{}';
    WHEN 'object' THEN
        FOR inner_value IN SELECT j.value FROM json_each(value) AS j LOOP
            found := found || _memstore_words(inner_value);
        END LOOP;
    WHEN 'array' THEN
        FOR inner_value IN SELECT json_array_elements(value) LOOP
            found := found || _memstore_words(inner_value);
        END LOOP;
    ELSE
        RETURN NULL;
    END CASE;
    RETURN nullif(array_to_string(found, ' '), '');
END
$$;

-- A node's or edge's row there follows it: made with it, moved and given its new
-- words when it changes (keeping its id), gone with it.
CREATE FUNCTION _memstore_node_text() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    node_words text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM memstore_graph_text AS g
        WHERE g.graph = old.graph AND g.item = 'node' AND g.ref = old.id;
        RETURN NULL;
    END IF;
    node_words := new.id || ' ' || new.kind || ' '
        || coalesce(_memstore_words(new.props::json), '');
    IF TG_OP = 'UPDATE' THEN
        UPDATE memstore_graph_text AS g SET graph = new.graph, ref = new.id, words = node_words
        WHERE g.graph = old.graph AND g.item = 'node' AND g.ref = old.id;
    ELSE
        INSERT INTO memstore_graph_text (graph, item, ref, words)
        VALUES (new.graph, 'node', new.id, node_words)
        ON CONFLICT (graph, item, ref, relation, target) DO UPDATE SET words = excluded.words;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION _memstore_edge_text() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    edge_words text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM memstore_graph_text AS g WHERE g.graph = old.graph AND g.item = 'edge'
            AND g.ref = old.source AND g.relation = old.relation AND g.target = old.target;
        RETURN NULL;
    END IF;
    edge_words := replace(new.relation, '_', ' ') || ' '
        || coalesce(_memstore_words(new.props::json), '');
    IF TG_OP = 'UPDATE' THEN
        UPDATE memstore_graph_text AS g SET graph = new.graph, ref = new.source,
            relation = new.relation, target = new.target, words = edge_words
        WHERE g.graph = old.graph AND g.item = 'edge'
            AND g.ref = old.source AND g.relation = old.relation AND g.target = old.target;
    ELSE
        INSERT INTO memstore_graph_text (graph, item, ref, relation, target, words)
        VALUES (new.graph, 'edge', new.source, new.relation, new.target, edge_words)
        ON CONFLICT (graph, item, ref, relation, target) DO UPDATE SET words = excluded.words;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_nodes__text_insert AFTER INSERT ON memstore_nodes
    FOR EACH ROW EXECUTE FUNCTION _memstore_node_text();
CREATE TRIGGER memstore_nodes__text_update AFTER UPDATE OF graph, id, kind, props
    ON memstore_nodes FOR EACH ROW EXECUTE FUNCTION _memstore_node_text();
CREATE TRIGGER memstore_nodes__text_delete AFTER DELETE ON memstore_nodes
    FOR EACH ROW EXECUTE FUNCTION _memstore_node_text();
CREATE TRIGGER memstore_edges__text_insert AFTER INSERT ON memstore_edges
    FOR EACH ROW EXECUTE FUNCTION _memstore_edge_text();
CREATE TRIGGER memstore_edges__text_update AFTER UPDATE OF graph, source, relation, target, props
    ON memstore_edges FOR EACH ROW EXECUTE FUNCTION _memstore_edge_text();
CREATE TRIGGER memstore_edges__text_delete AFTER DELETE ON memstore_edges
    FOR EACH ROW EXECUTE FUNCTION _memstore_edge_text();

CREATE TABLE memstore_node_versions (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    graph      text COLLATE "C" NOT NULL,
    node       text COLLATE "C" NOT NULL,
    kind       text COLLATE "C" NOT NULL,
    props      text NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    known_from text COLLATE "C" NOT NULL,
    known_to   text COLLATE "C" NOT NULL
);
CREATE INDEX memstore_node_versions__known ON memstore_node_versions (graph, known_to);
CREATE TABLE memstore_edge_versions (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    graph      text COLLATE "C" NOT NULL,
    source     text COLLATE "C" NOT NULL,
    target     text COLLATE "C" NOT NULL,
    relation   text COLLATE "C" NOT NULL,
    props      text NOT NULL,
    weight     double precision NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    valid_from text COLLATE "C" NOT NULL,
    valid_to   text COLLATE "C" NOT NULL,
    known_from text COLLATE "C" NOT NULL,
    known_to   text COLLATE "C" NOT NULL
);
CREATE INDEX memstore_edge_versions__known ON memstore_edge_versions (graph, known_to);

-- A change (BEFORE UPDATE, when the node or edge changed) that leaves updated_at alone
-- moves it to now, so that the new version starts when the old one stopped; then
-- (AFTER UPDATE, AFTER DELETE) the old version is kept until the new updated_at, or
-- now for a delete.
CREATE FUNCTION _memstore_graph_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF new.updated_at IS NOT DISTINCT FROM old.updated_at THEN
        new.updated_at := _memstore_now();
    END IF;
    RETURN new;
END
$$;
CREATE FUNCTION _memstore_node_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memstore_node_versions
        (graph, node, kind, props, created_at, known_from, known_to)
    VALUES (old.graph, old.id, old.kind, old.props, old.created_at, old.updated_at,
        CASE WHEN TG_OP = 'UPDATE' THEN new.updated_at ELSE _memstore_now() END);
    RETURN NULL;
END
$$;
CREATE FUNCTION _memstore_edge_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memstore_edge_versions (graph, source, target, relation, props, weight,
        created_at, valid_from, valid_to, known_from, known_to)
    VALUES (old.graph, old.source, old.target, old.relation, old.props, old.weight,
        old.created_at, old.valid_from, old.valid_to, old.updated_at,
        CASE WHEN TG_OP = 'UPDATE' THEN new.updated_at ELSE _memstore_now() END);
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_nodes__history_touch BEFORE UPDATE ON memstore_nodes FOR EACH ROW
    WHEN ((old.graph, old.id, old.kind, old.props) IS DISTINCT FROM
          (new.graph, new.id, new.kind, new.props))
    EXECUTE FUNCTION _memstore_graph_touch();
CREATE TRIGGER memstore_nodes__history_update AFTER UPDATE ON memstore_nodes FOR EACH ROW
    WHEN ((old.graph, old.id, old.kind, old.props) IS DISTINCT FROM
          (new.graph, new.id, new.kind, new.props))
    EXECUTE FUNCTION _memstore_node_history();
CREATE TRIGGER memstore_nodes__history_delete AFTER DELETE ON memstore_nodes FOR EACH ROW
    EXECUTE FUNCTION _memstore_node_history();
CREATE TRIGGER memstore_edges__history_touch BEFORE UPDATE ON memstore_edges FOR EACH ROW
    WHEN ((old.graph, old.source, old.target, old.relation, old.props, old.weight,
           old.valid_from, old.valid_to) IS DISTINCT FROM
          (new.graph, new.source, new.target, new.relation, new.props, new.weight,
           new.valid_from, new.valid_to))
    EXECUTE FUNCTION _memstore_graph_touch();
CREATE TRIGGER memstore_edges__history_update AFTER UPDATE ON memstore_edges FOR EACH ROW
    WHEN ((old.graph, old.source, old.target, old.relation, old.props, old.weight,
           old.valid_from, old.valid_to) IS DISTINCT FROM
          (new.graph, new.source, new.target, new.relation, new.props, new.weight,
           new.valid_from, new.valid_to))
    EXECUTE FUNCTION _memstore_edge_history();
CREATE TRIGGER memstore_edges__history_delete AFTER DELETE ON memstore_edges FOR EACH ROW
    EXECUTE FUNCTION _memstore_edge_history();

-- Vector memory (SQLite's sql/0011): embeddings as float32 little-endian bytes (the
-- file's layout), one per record, model and part; memstore ranks them in memory
-- (its numpy index), following every change through the log below.
CREATE TABLE memstore_vectors (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    -- A collection's name, as the registry's compares (that collation wins), or "graph:"
    -- and a graph's name.
    collection  text NOT NULL,
    -- The record's id (its table's id), or a graph's item's (memstore_graph_text.id).
    record_id   bigint NOT NULL,
    model       text COLLATE "C" NOT NULL CHECK (length(model) > 0),
    part        text COLLATE "C" NOT NULL DEFAULT '',
    dim         integer NOT NULL CHECK (dim > 0),
    vector      bytea NOT NULL CHECK (length(vector) = 4 * dim),
    embedded_at text COLLATE "C" NOT NULL DEFAULT _memstore_now()
);
CREATE UNIQUE INDEX memstore_vectors__record
    ON memstore_vectors (collection, record_id, model, part);

-- Every change to memstore_vectors, by any tool, numbered per collection in commit
-- order: a change takes its collection's next number from memstore_vector_log_counters,
-- whose row it then holds locked until its transaction ends, so that a reader who has
-- seen number n has seen every change numbered up to n (an identity's numbers would
-- be handed out in the order transactions began, not the order they committed).
CREATE TABLE memstore_vector_log (
    seq        bigint NOT NULL,
    collection text COLLATE "C" NOT NULL,
    record_id  bigint NOT NULL,
    PRIMARY KEY (collection, seq)
);
CREATE TABLE memstore_vector_log_counters (
    collection text COLLATE "C" PRIMARY KEY,
    last       bigint NOT NULL CHECK (last > 0)
);
-- Per collection, the last seq trimmed from the log.
CREATE TABLE memstore_vector_log_trimmed (
    collection text COLLATE "C" PRIMARY KEY,
    through    bigint NOT NULL
);

CREATE FUNCTION _memstore_log_vector(logged_collection text, logged_record bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
BEGIN
    INSERT INTO memstore_vector_log_counters AS c (collection, last)
    VALUES (logged_collection, 1)
    ON CONFLICT (collection) DO UPDATE SET last = c.last + 1
    RETURNING c.last INTO number;
    INSERT INTO memstore_vector_log (seq, collection, record_id)
    VALUES (number, logged_collection, logged_record);
END
$$;
CREATE FUNCTION _memstore_vector_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM _memstore_log_vector(old.collection, old.record_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (new.collection, new.record_id)
                            IS DISTINCT FROM (old.collection, old.record_id)) THEN
        PERFORM _memstore_log_vector(new.collection, new.record_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_vectors__log AFTER INSERT OR UPDATE OR DELETE ON memstore_vectors
    FOR EACH ROW EXECUTE FUNCTION _memstore_vector_changed();

-- A record's vectors go with it, whoever deletes it: each collection with vectors has
-- a trigger "<name>__vectors_delete" running this; a graph's node or edge's, with its
-- row of memstore_graph_text.
CREATE FUNCTION _memstore_vectors_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'memstore_graph_text' THEN
        DELETE FROM memstore_vectors WHERE collection = 'graph:' || old.graph
            AND record_id = old.id;
    ELSE
        DELETE FROM memstore_vectors WHERE collection = TG_TABLE_NAME AND record_id = old.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_graph_text__vectors_delete AFTER DELETE ON memstore_graph_text
    FOR EACH ROW EXECUTE FUNCTION _memstore_vectors_gone();

-- Byte values under string keys, per namespace (SQLite's sql/0010: LangChain's
-- BaseStore[str, bytes]); keys in byte order, as SQLite compares them.
CREATE TABLE memstore_kv (
    namespace  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      bytea NOT NULL,
    size       bigint NOT NULL CHECK (size >= 0),
    updated_at text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (namespace, key)
);

-- LangGraph's checkpoints (SQLite's sql/0009: memstore_langgraph.MemstoreSaver): a
-- checkpoint without its channel values, each value written once per version, and the
-- pending writes of a step's tasks. Values are LangGraph's serde bytes.
CREATE TABLE memstore_lg_checkpoints (
    thread_id            text COLLATE "C" NOT NULL,
    checkpoint_ns        text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id        text COLLATE "C" NOT NULL,
    parent_checkpoint_id text COLLATE "C",
    type                 text NOT NULL,
    checkpoint           bytea NOT NULL,
    metadata             text NOT NULL DEFAULT '{}'
                         CHECK (json_typeof(metadata::json) = 'object'),
    channel_versions     text NOT NULL DEFAULT '{}' CHECK (channel_versions::json IS NOT NULL),
    run_id               text GENERATED ALWAYS AS (metadata::json ->> 'run_id') STORED,
    created_at           text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX memstore_lg_checkpoints__run_idx ON memstore_lg_checkpoints (run_id)
    WHERE run_id IS NOT NULL;

CREATE TABLE memstore_lg_blobs (
    thread_id     text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    channel       text COLLATE "C" NOT NULL,
    version       text COLLATE "C" NOT NULL,
    type          text NOT NULL,
    blob          bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);

CREATE TABLE memstore_lg_writes (
    thread_id     text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id       text COLLATE "C" NOT NULL,
    idx           bigint NOT NULL,
    task_path     text COLLATE "C" NOT NULL DEFAULT '',
    channel       text NOT NULL,
    type          text NOT NULL,
    value         bytea,
    created_at    text COLLATE "C" NOT NULL DEFAULT _memstore_now(),
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

-- SQLite's json_type of a JSON value: 'null', 'true', 'false', 'integer', 'real', 'text',
-- 'array' or 'object'; NULL for none (a missing field).
CREATE FUNCTION _memstore_json_type(value json) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE json_typeof(value)
        WHEN 'null' THEN 'null'
        WHEN 'boolean' THEN value #>> '{}'
        WHEN 'number' THEN CASE WHEN value::text ~ '[.eE]' THEN 'real' ELSE 'integer' END
        WHEN 'string' THEN 'text'
        ELSE json_typeof(value) END
$$;

-- The vectors a record of a temporal collection had while a replaced version of it
-- was current (SQLite's sql/0012), copied by the collection's "<name>__history_vectors_*"
-- triggers before the change, so that nearest and hybrid can read what the store held.
CREATE TABLE memstore_version_vectors (
    collection text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    model      text COLLATE "C" NOT NULL,
    part       text COLLATE "C" NOT NULL DEFAULT '',
    dim        integer NOT NULL CHECK (dim > 0),
    vector     bytea NOT NULL CHECK (length(vector) = 4 * dim),
    PRIMARY KEY (collection, key, version, model, part)
);
CREATE FUNCTION _memstore_version_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM memstore_version_vectors WHERE collection = old.collection
        AND key = old.key AND version = old.version;
    RETURN NULL;
END
$$;
CREATE TRIGGER memstore_versions__vectors_delete AFTER DELETE ON memstore_versions
    FOR EACH ROW EXECUTE FUNCTION _memstore_version_gone();

-- Before a change to a record of a temporal collection with vectors (BEFORE UPDATE of
-- its body or validity, BEFORE DELETE): its vectors are still the old version's, kept
-- under the number the history trigger is about to give that version.
CREATE FUNCTION _memstore_archive_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memstore_version_vectors AS x (collection, key, version, model, part, dim, vector)
    SELECT TG_TABLE_NAME, old.key, 1 + coalesce((SELECT c.last FROM memstore_version_counters
        AS c WHERE c.collection = TG_TABLE_NAME AND c.key = old.key), 0),
        v.model, v.part, v.dim, v.vector
    FROM memstore_vectors AS v WHERE v.collection = TG_TABLE_NAME AND v.record_id = old.id
    ON CONFLICT (collection, key, version, model, part) DO UPDATE SET dim = excluded.dim,
        vector = excluded.vector;
    IF TG_OP = 'DELETE' THEN
        RETURN old;
    END IF;
    RETURN new;
END
$$;
