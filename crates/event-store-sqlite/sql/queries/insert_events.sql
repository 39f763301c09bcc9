-- Inserts rows of events; `{rows}` becomes one `(?, ?, ?, ?, ?, ?, ?, ?)` per row (id, stream,
-- version, namespace, event_type, data, context, time), up to a hundred a statement. A row whose
-- id is stored is skipped, which the writer sees in the count and undoes.
INSERT INTO events (id, stream, version, namespace, event_type, data, context, time)
VALUES {rows}
ON CONFLICT (id) DO NOTHING
