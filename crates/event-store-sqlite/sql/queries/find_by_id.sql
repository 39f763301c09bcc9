SELECT position, id, stream, version, namespace, event_type, data, context FROM events WHERE id = ?1
