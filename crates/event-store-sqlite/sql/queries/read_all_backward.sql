SELECT position, id, stream, version, namespace, event_type, data, context
  FROM events WHERE position < ?1 ORDER BY position DESC LIMIT ?2
