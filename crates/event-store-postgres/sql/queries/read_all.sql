-- The global log after a checkpoint, only below the watermark (every older transaction finished).
SELECT tx, seq, id, stream, version, namespace, event_type, data, context
  FROM events
 WHERE (tx, seq) > ($1, $2)
   AND tx < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
 ORDER BY tx, seq
 LIMIT $3
