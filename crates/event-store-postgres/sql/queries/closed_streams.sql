-- The closed streams after $1 whose ids start with $2, in byte order, at most $3; when each was
-- closed as RFC 3339 text.
SELECT stream, to_json(closed_at) #>> '{}'
  FROM closed_streams
 WHERE stream > $1 AND starts_with(stream, $2)
 ORDER BY stream
 LIMIT $3
