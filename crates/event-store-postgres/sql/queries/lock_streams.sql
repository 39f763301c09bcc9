-- Locks the streams of a multi-stream append in one global order (by lock key, the same key
-- append_events takes), so two multi-stream appends never wait for each other in a cycle.
SELECT pg_advisory_xact_lock(k)
  FROM (SELECT DISTINCT hashtextextended(s, 7411) AS k FROM unnest($1::text[]) AS s
        ORDER BY k OFFSET 0) AS keys
