-- Reopens stream $1 under its append lock; 1 row when it was closed. The lock is a one-time
-- condition, taken before the row is looked for.
WITH lock AS (SELECT pg_advisory_xact_lock(hashtextextended($1, 7411)))
DELETE FROM closed_streams
 WHERE stream = $1 AND EXISTS (SELECT FROM lock)
