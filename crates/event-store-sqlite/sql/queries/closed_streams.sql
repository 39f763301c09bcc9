-- The closed streams after ?1 whose ids start with ?2, in byte order, at most ?3.
SELECT stream, closed_at
  FROM closed_streams
 WHERE stream > ?1 AND substr(stream, 1, length(?2)) = ?2
 ORDER BY stream
 LIMIT ?3
