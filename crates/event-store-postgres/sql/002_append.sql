-- Appends a batch to one stream in one statement (one round trip), atomically.
--
-- p_expected: -1 any, -2 no stream, -3 stream exists, n >= 0 exactly version n.
-- Returns one row per event: its id, version, tx, seq and whether it was stored now (false when
-- the whole batch was already stored with the same content: an idempotent retry).
-- Errors: SQLSTATE ES409 (version conflict; DETAIL is the actual version or "none"),
--         SQLSTATE ES422 (an id is stored with other content; DETAIL is the id).
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

    IF NOT (p_expected = -1
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
