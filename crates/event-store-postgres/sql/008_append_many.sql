-- A multi-stream append in one statement, when nothing stands in its way: every batch's
-- expectation holds and no id is stored yet (the common case: new events). It locks every
-- stream in lock-key order (the key append_events takes, so crossing multi-stream appends cannot
-- deadlock), works out each batch's first version in batch order (a stream's later batches
-- follow its earlier ones), and inserts every event with one INSERT.
--
-- Anything else raises SQLSTATE ES425 ("take the careful path"), which undoes the statement:
-- the caller then runs append_events for each batch in a new transaction, which reports
-- conflicts and recognises idempotent retries exactly as single appends do.
--
-- p_streams, p_expected: one entry per batch (expected as in append_events).
-- p_batches, p_offsets: for each event, its batch (1-based) and its index in the batch (0-based).
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
    n_events  integer := cardinality(p_ids);
    n_batches integer := cardinality(p_streams);
    firsts    bigint[] := '{}';
    latest    jsonb := '{}';
    sizes     integer[];
    actual    bigint;
    expected  bigint;
    stream    text;
    inserted  integer;
BEGIN
    PERFORM pg_advisory_xact_lock(k)
       FROM (SELECT DISTINCT hashtextextended(s, 7411) AS k FROM unnest(p_streams) AS s
             ORDER BY k OFFSET 0) AS keys;

    SELECT array_agg(coalesce(c.n, 0) ORDER BY g.i) INTO sizes
      FROM generate_series(1, n_batches) AS g(i)
      LEFT JOIN (SELECT b, count(*)::integer AS n FROM unnest(p_batches) AS b GROUP BY b) AS c
        ON c.b = g.i;

    FOR i IN 1 .. n_batches LOOP
        stream := p_streams[i];
        expected := p_expected[i];
        IF latest ? stream THEN
            actual := (latest ->> stream)::bigint;
        ELSE
            SELECT max(e.version) INTO actual FROM events e WHERE e.stream = p_streams[i];
        END IF;
        IF NOT (expected = -1
                OR (expected = -2 AND actual IS NULL)
                OR (expected = -3 AND actual IS NOT NULL)
                OR (expected >= 0 AND actual IS NOT NULL AND actual = expected)) THEN
            RAISE EXCEPTION 'a batch of the multi-stream append needs the careful path'
                USING ERRCODE = 'ES425';
        END IF;
        firsts := firsts || (coalesce(actual, -1) + 1);
        latest := latest || jsonb_build_object(stream, coalesce(actual, -1) + sizes[i]);
    END LOOP;

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
        -- An id is stored: a retry, or a clash. Raising undoes the rows inserted above.
        RAISE EXCEPTION 'an event id of the multi-stream append is stored'
            USING ERRCODE = 'ES425';
    END IF;
END;
$$;

-- As append_events: the owner's rights, a pinned search_path, and EXECUTE for the roles that
-- may append.
ALTER FUNCTION append_events_many(text[], bigint[], integer[], integer[], uuid[], text[], text[],
                                  jsonb[], jsonb[], timestamptz[])
    SECURITY DEFINER;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION append_events_many(text[], bigint[], integer[], integer[], uuid[], text[], '
        'text[], jsonb[], jsonb[], timestamptz[]) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION append_events_many(text[], bigint[], integer[], integer[], uuid[], text[],
                                          text[], jsonb[], jsonb[], timestamptz[])
    FROM PUBLIC;
DO $$
DECLARE
    writer record;
BEGIN
    FOR writer IN
        SELECT DISTINCT a.grantee
          FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.oid = 'append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])'::regprocedure
           AND a.privilege_type = 'EXECUTE'
           AND a.grantee <> p.proowner
           AND a.grantee <> 0
    LOOP
        EXECUTE format(
            'GRANT EXECUTE ON FUNCTION append_events_many(text[], bigint[], integer[], integer[], '
            'uuid[], text[], text[], jsonb[], jsonb[], timestamptz[]) TO %s',
            writer.grantee::regrole);
    END LOOP;
END
$$;
