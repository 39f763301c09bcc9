INSERT INTO events (id, stream, version, namespace, event_type, data, context, time)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (id) DO NOTHING
