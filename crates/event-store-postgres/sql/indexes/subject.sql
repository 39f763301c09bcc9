-- Opt-in (`PgConfig::indexes.subject`): equality on context.subject fields, by containment.
CREATE INDEX IF NOT EXISTS events_subject ON events USING gin ((context -> 'subject') jsonb_path_ops);
