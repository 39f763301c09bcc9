-- The event log. position is the global order: one writer commits at a time, so positions are
-- assigned in commit order and every committed event is final.
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    stream     TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 0),
    namespace  TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    context    TEXT    NOT NULL,
    time       TEXT    NOT NULL,
    UNIQUE (stream, version)
);

CREATE INDEX IF NOT EXISTS events_stream_position ON events (stream, position);
CREATE INDEX IF NOT EXISTS events_type_position ON events (namespace, event_type, position);
CREATE INDEX IF NOT EXISTS events_time ON events (time);

-- Events are immutable: no statement may change or remove one.
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
