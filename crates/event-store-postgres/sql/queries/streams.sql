-- The open streams after $1 whose ids start with $2, in byte order (COLLATE "C", whatever the
-- database's collation), at most $3, each as its last event: versions are consecutive from 0,
-- so the last version also counts the events. Closed streams are left out.
SELECT e.tx, e.seq, e.id, e.stream, e.version, e.namespace, e.event_type, e.data, e.context
  FROM (SELECT stream, max(version) AS version
          FROM events
         WHERE stream COLLATE "C" > $1 AND starts_with(stream, $2)
           AND NOT EXISTS (SELECT 1 FROM closed_streams c WHERE c.stream = events.stream)
         GROUP BY stream
         ORDER BY stream COLLATE "C"
         LIMIT $3) AS last
  JOIN events AS e ON e.stream = last.stream AND e.version = last.version
 ORDER BY e.stream COLLATE "C"
