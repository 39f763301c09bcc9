-- One event by its id (the events_id unique index), committed, final or not.
SELECT tx, seq, id, stream, version, namespace, event_type, data, context
  FROM events
 WHERE id = $1::text::uuid
