-- Closing streams (a soft delete: nothing is removed). A closed stream takes no appends and is
-- left out of stream reads and lists; its events stay in the global log. Closing and reopening
-- (queries/close_stream.sql, reopen_stream.sql) take the stream's append lock (the key
-- append_events takes), so an append either commits before a close or sees it. Rows here are
-- the streams' state, not events: reopening deletes one.
CREATE TABLE IF NOT EXISTS closed_streams (
    stream    text COLLATE "C" NOT NULL PRIMARY KEY,
    closed_at timestamptz NOT NULL DEFAULT now()
);

-- append_events and append_events_many refuse closed streams (ES410; the multi-stream form takes
-- the careful path, ES425, which raises ES410 for the closed batch).

CREATE OR REPLACE FUNCTION append_events(
    p_stream     text,
    p_expected   bigint,
    p_ids        uuid[],
    p_namespaces text[],
    p_types      text[],
    p_data       jsonb[],
    p_contexts   jsonb[],
    p_times      timestamptz[]
) RETURNS TABLE (id uuid, version bigint, tx bigint, seq bigint, stored boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_events integer := cardinality(p_ids);
    n_known  integer;
    n_same   integer;
    clash    uuid;
    actual   bigint;
BEGIN
    -- Lock the stream before the first write: the lock assigns no transaction id, so a writer's
    -- id is always newer than every earlier writer of the stream (log order = version order).
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 7411));

    SELECT max(e.version) INTO actual FROM events e WHERE e.stream = p_stream;

    IF EXISTS (SELECT 1 FROM closed_streams c WHERE c.stream = p_stream) THEN
        -- A closed stream takes nothing new; a retry of a batch stored before the close still
        -- gets its originals (the idempotency checks below).
        IF NOT EXISTS (SELECT 1 FROM events e WHERE e.id = ANY(p_ids)) THEN
            RAISE EXCEPTION 'stream % is closed', p_stream
                USING ERRCODE = 'ES410', DETAIL = p_stream;
        END IF;
    ELSIF NOT (p_expected = -1
            OR (p_expected = -2 AND actual IS NULL)
            OR (p_expected = -3 AND actual IS NOT NULL)
            OR (p_expected >= 0 AND actual IS NOT NULL AND actual = p_expected)) THEN
        -- A retry of a stored batch is not a conflict, whatever it expected.
        IF NOT EXISTS (SELECT 1 FROM events e WHERE e.id = ANY(p_ids)) THEN
            RAISE EXCEPTION 'version conflict on stream %', p_stream
                USING ERRCODE = 'ES409', DETAIL = coalesce(actual::text, 'none');
        END IF;
    ELSE
        -- The common path: one insert; ids that are already stored are skipped, and any skip
        -- sends us to the idempotency checks below.
        RETURN QUERY
            INSERT INTO events AS e (id, stream, version, namespace, event_type, data, context, time)
            SELECT b.id, p_stream, coalesce(actual, -1) + b.ord, b.namespace, b.event_type,
                   b.data, b.context, b.time
              FROM unnest(p_ids, p_namespaces, p_types, p_data, p_contexts, p_times)
                   WITH ORDINALITY AS b(id, namespace, event_type, data, context, time, ord)
             ORDER BY b.ord
            ON CONFLICT (id) DO NOTHING
            RETURNING e.id, e.version, e.tx, e.seq, true;
        GET DIAGNOSTICS n_known = ROW_COUNT;
        IF n_known = n_events THEN
            RETURN;
        END IF;
        IF n_known > 0 THEN
            -- Part of the batch is stored already: not a retry of one append. Raising undoes
            -- the rows inserted above.
            SELECT e.id INTO clash FROM events e
             WHERE e.id = ANY(p_ids) AND e.tx <> pg_current_xact_id()::text::bigint
             LIMIT 1;
            RAISE EXCEPTION 'event id % is already stored with other content', clash
                USING ERRCODE = 'ES422', DETAIL = coalesce(clash::text, '');
        END IF;
    END IF;

    -- Every id of the batch may be stored: the same content is an idempotent retry.
    SELECT count(*),
           count(*) FILTER (WHERE e.stream = p_stream
                              AND e.namespace = b.namespace
                              AND e.event_type = b.event_type
                              AND e.data = b.data)
      INTO n_known, n_same
      FROM events e
      JOIN unnest(p_ids, p_namespaces, p_types, p_data) AS b(id, namespace, event_type, data)
        ON e.id = b.id;
    IF n_known = n_events AND n_same = n_events THEN
        RETURN QUERY
            SELECT e.id, e.version, e.tx, e.seq, false
              FROM unnest(p_ids) WITH ORDINALITY AS b(id, ord)
              JOIN events e ON e.id = b.id
             ORDER BY b.ord;
        RETURN;
    END IF;
    SELECT e.id INTO clash
      FROM unnest(p_ids, p_namespaces, p_types, p_data) AS b(id, namespace, event_type, data)
      JOIN events e ON e.id = b.id
     ORDER BY (e.stream = p_stream AND e.namespace = b.namespace
               AND e.event_type = b.event_type AND e.data = b.data)
     LIMIT 1;
    RAISE EXCEPTION 'event id % is already stored with other content', clash
        USING ERRCODE = 'ES422', DETAIL = coalesce(clash::text, '');
END;
$$;

CREATE OR REPLACE FUNCTION append_events_many(
    p_streams    text[],
    p_expected   bigint[],
    p_batches    integer[],
    p_offsets    integer[],
    p_ids        uuid[],
    p_namespaces text[],
    p_types      text[],
    p_data       jsonb[],
    p_contexts   jsonb[],
    p_times      timestamptz[]
) RETURNS TABLE (id uuid, version bigint, tx bigint, seq bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_events integer := cardinality(p_ids);
    firsts   bigint[];
    refused  boolean;
    inserted integer;
BEGIN
    PERFORM pg_advisory_xact_lock(k)
       FROM (SELECT DISTINCT hashtextextended(s, 7411) AS k FROM unnest(p_streams) AS s
             ORDER BY k OFFSET 0) AS keys;

    -- A closed stream: the careful path (append_events per batch) says which and why.
    IF EXISTS (SELECT 1 FROM closed_streams c WHERE c.stream = ANY(p_streams)) THEN
        RAISE EXCEPTION 'a stream of the multi-stream append is closed'
            USING ERRCODE = 'ES425';
    END IF;

    -- Each batch's first version: its stream's last version (read after the locks), plus the
    -- events of the stream's earlier batches; and whether its expectation holds there.
    WITH sizes AS (
        SELECT b AS i, count(*) AS size FROM unnest(p_batches) AS b GROUP BY b
    ), batch AS (
        SELECT b.i, b.stream, b.expected, coalesce(sizes.size, 0) AS size
          FROM unnest(p_streams, p_expected) WITH ORDINALITY AS b(stream, expected, i)
          LEFT JOIN sizes ON sizes.i = b.i
    ), last AS (
        SELECT s.stream, (SELECT max(e.version) FROM events e WHERE e.stream = s.stream) AS v
          FROM (SELECT DISTINCT stream FROM batch) AS s
    ), placed AS (
        SELECT batch.i, batch.expected,
               coalesce(last.v, -1) + 1
                 + coalesce(sum(batch.size) OVER (PARTITION BY batch.stream ORDER BY batch.i
                                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                 AS first
          FROM batch JOIN last USING (stream)
    )
    SELECT array_agg(placed.first ORDER BY placed.i),
           bool_or(NOT (placed.expected = -1
                        OR (placed.expected = -2 AND placed.first = 0)
                        OR (placed.expected = -3 AND placed.first > 0)
                        OR (placed.expected >= 0 AND placed.first = placed.expected + 1)))
      INTO firsts, refused
      FROM placed;
    IF refused THEN
        RAISE EXCEPTION 'a batch of the multi-stream append needs the careful path'
            USING ERRCODE = 'ES425';
    END IF;

    RETURN QUERY
        INSERT INTO events AS e (id, stream, version, namespace, event_type, data, context, time)
        SELECT b.id, p_streams[b.batch], firsts[b.batch] + b.off, b.namespace, b.event_type,
               b.data, b.context, b.time
          FROM unnest(p_batches, p_offsets, p_ids, p_namespaces, p_types, p_data, p_contexts,
                      p_times)
               WITH ORDINALITY AS b(batch, off, id, namespace, event_type, data, context, time, ord)
         ORDER BY b.ord
        ON CONFLICT (id) DO NOTHING
        RETURNING e.id, e.version, e.tx, e.seq;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted <> n_events THEN
        RAISE EXCEPTION 'an event id of the multi-stream append is stored'
            USING ERRCODE = 'ES425';
    END IF;
END;
$$;

-- CREATE OR REPLACE resets what the definition does not say: the owner's rights and the pinned
-- search_path again (grants are kept).
ALTER FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])
    SECURITY DEFINER;
ALTER FUNCTION append_events_many(text[], bigint[], integer[], integer[], uuid[], text[], text[],
                                  jsonb[], jsonb[], timestamptz[])
    SECURITY DEFINER;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], '
        'timestamptz[]) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format(
        'ALTER FUNCTION append_events_many(text[], bigint[], integer[], integer[], uuid[], text[], '
        'text[], jsonb[], jsonb[], timestamptz[]) SET search_path = %I, pg_temp', current_schema());
END
$$;
