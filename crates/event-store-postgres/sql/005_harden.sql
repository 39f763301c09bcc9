-- The log can only be written through append_events, and the table refuses what validation
-- refuses, whoever writes.
--
-- 1. append_events runs with its owner's rights (SECURITY DEFINER) and a pinned search_path
--    (this schema, then pg_temp), so a caller's search_path cannot redirect it to another
--    `events` table, and roles need EXECUTE on it, not INSERT on the table.
-- 2. No role but the owner may insert, update, delete or truncate events. Roles that held
--    INSERT (the grants of earlier releases) get EXECUTE on append_events instead.
-- 3. Constraints mirror the input rules (event_store::limits): names, stream ids, versions.
-- 4. A statement trigger refuses rows whose tx is not the inserting transaction's (a position
--    set by hand could sort before every reader's checkpoint). Versions are append_events' job:
--    no other role can insert (a gap check here would also pre-empt the function's own handling
--    of a partly stored batch).

ALTER FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])
    SECURITY DEFINER;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[]) '
        'SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])
    FROM PUBLIC;

DO $$
DECLARE
    writer record;
BEGIN
    FOR writer IN
        SELECT DISTINCT a.grantee
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'events'::regclass
           AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
           AND a.grantee <> c.relowner
    LOOP
        IF writer.grantee = 0 THEN
            REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;
        ELSE
            EXECUTE format(
                'GRANT EXECUTE ON FUNCTION append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[]) TO %s',
                writer.grantee::regrole);
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON events FROM %s',
                           writer.grantee::regrole);
        END IF;
    END LOOP;
END
$$;

-- Names: 1 to 64 of A-Z a-z 0-9 _ -, starting with a letter or a digit.
ALTER TABLE events ADD CONSTRAINT events_namespace_name
    CHECK (namespace ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$') NOT VALID;
ALTER TABLE events ADD CONSTRAINT events_type_name
    CHECK (event_type ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$') NOT VALID;
-- Stream ids: 1 to 255 bytes; no control character, no white space, none of the invisible
-- format characters that make two ids look alike (the full rule, with NFC, is checked in Rust).
ALTER TABLE events ADD CONSTRAINT events_stream_id
    CHECK (octet_length(stream) BETWEEN 1 AND 255
           AND stream !~ '[\u0001-\u0020\u007f-\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff]')
    NOT VALID;

-- Rows stored before these rules existed are checked too; a store holding rows they refuse
-- keeps them (events are never changed) and the constraints guard new rows only.
DO $$
DECLARE
    c text;
BEGIN
    FOREACH c IN ARRAY ARRAY['events_namespace_name', 'events_type_name', 'events_stream_id'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE events VALIDATE CONSTRAINT %I', c);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'events holds rows that % refuses; it checks new rows only', c;
        END;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION events_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.stream, n.version, n.tx INTO bad
      FROM new_events n
     WHERE n.tx <> pg_current_xact_id()::text::bigint
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'events: tx % of stream % version % is not the inserting transaction''s',
                        bad.tx, bad.stream, bad.version
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION events_check_insert() SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION events_check_insert() FROM PUBLIC;

DROP TRIGGER IF EXISTS events_check_insert ON events;
CREATE TRIGGER events_check_insert
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_check_insert();

-- Events are immutable for every role, the owner included (as on SQLite); statement triggers,
-- so inserts pay nothing for them.
CREATE OR REPLACE FUNCTION events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION events_immutable() SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION events_immutable() FROM PUBLIC;
DROP TRIGGER IF EXISTS events_immutable ON events;
CREATE TRIGGER events_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_immutable();
