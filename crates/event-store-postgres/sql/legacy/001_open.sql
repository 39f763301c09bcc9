-- A session reading an original `events` table (LEGACY.md): times without an offset are UTC, a
-- temporary function reads the original's time forms (NULL for anything else, never an error).
-- The reads then run in one read-only repeatable-read transaction (one snapshot). Nothing is
-- written to the original database.
SET TIME ZONE 'UTC';
CREATE OR REPLACE FUNCTION pg_temp.event_store_legacy_time(t text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- The forms event_store::legacy::parse_time reads: a date, `T` or a space, hh:mm[:ss[.f]],
    -- then `Z`, ±hh, ±hhmm, ±hh:mm or nothing.
    IF t IS NULL OR t !~ '^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?\s*$' THEN
        RETURN NULL;
    END IF;
    RETURN (extract(epoch FROM t::timestamptz) * 1000000)::bigint;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
