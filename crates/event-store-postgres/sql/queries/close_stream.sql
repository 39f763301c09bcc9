-- Closes stream $1 under its append lock (the key append_events takes), so an append commits
-- before the close or sees it; 1 row when it was open.
WITH lock AS (SELECT pg_advisory_xact_lock(hashtextextended($1, 7411)))
INSERT INTO closed_streams (stream)
SELECT $1 FROM lock
    ON CONFLICT (stream) DO NOTHING
