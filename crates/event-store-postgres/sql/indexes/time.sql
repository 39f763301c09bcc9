-- Opt-in (`PgConfig::indexes.time`): time ranges.
CREATE INDEX IF NOT EXISTS events_time ON events (time);
