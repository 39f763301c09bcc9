-- The global log before a checkpoint, newest first, only below the watermark.
SELECT tx, seq, id, stream, version, namespace, event_type, data, context
  FROM events
 WHERE (tx, seq) < ($1, $2)
   AND tx < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
 ORDER BY tx DESC, seq DESC
 LIMIT $3
