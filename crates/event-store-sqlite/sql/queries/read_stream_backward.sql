SELECT position, id, stream, version, namespace, event_type, data, context
  FROM events WHERE stream = ?1 AND version <= ?2 ORDER BY version DESC LIMIT ?3
