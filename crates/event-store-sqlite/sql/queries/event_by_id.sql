-- One event by its id (the UNIQUE index on id).
SELECT position, id, stream, version, namespace, event_type, data, context FROM events WHERE id = ?1
