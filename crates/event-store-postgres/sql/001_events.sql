-- The event log. Rows are only ever inserted: no code path updates or deletes them.
--
-- tx is the inserting transaction's id (pg_current_xact_id, epoch-extended, as bigint) and seq
-- a global sequence; (tx, seq) is an event's position. Readers of the global log only read rows
-- with tx below the oldest running transaction (the snapshot's xmin), so a transaction that
-- commits late can never be skipped.
CREATE TABLE IF NOT EXISTS events (
    tx          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    seq         bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
    id          uuid        NOT NULL,
    stream      text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 0),
    namespace   text        NOT NULL,
    event_type  text        NOT NULL,
    data        jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    context     jsonb       NOT NULL CHECK (jsonb_typeof(context) = 'object'),
    time        timestamptz NOT NULL,
    CONSTRAINT events_position PRIMARY KEY (tx, seq),
    CONSTRAINT events_id UNIQUE (id),
    CONSTRAINT events_stream_version UNIQUE (stream, version)
);

-- A stream's events in log order (aggregates over one stream, from a checkpoint).
CREATE INDEX IF NOT EXISTS events_stream_position ON events (stream, tx, seq);
-- Events of a namespace and type in log order.
CREATE INDEX IF NOT EXISTS events_type_position ON events (namespace, event_type, tx, seq);
-- Time ranges.
CREATE INDEX IF NOT EXISTS events_time ON events (time);
-- Equality on context.subject fields (containment).
CREATE INDEX IF NOT EXISTS events_subject ON events USING gin ((context -> 'subject') jsonb_path_ops);
