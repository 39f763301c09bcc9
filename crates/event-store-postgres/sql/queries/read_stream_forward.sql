-- Versions are consecutive, so the page is the window [$2, $4): however stale the planner's
-- statistics, no plan reads more than a page of rows. A closed stream reads as no rows (the
-- caller then tells it from an empty stream).
SELECT tx, seq, id, stream, version, namespace, event_type, data, context
  FROM events
 WHERE stream = $1 AND version >= $2 AND version < $4
   AND NOT EXISTS (SELECT 1 FROM closed_streams c WHERE c.stream = $1)
 ORDER BY version
 LIMIT $3
