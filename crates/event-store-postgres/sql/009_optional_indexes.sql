-- The secondary indexes that only optional queries use become opt-in: every append paid for
-- them, and the core reads (a stream, the log, a namespace and type) never use them.
--   events_time    time ranges (Query::since / until)
--   events_subject containment on context.subject fields (Query::subject_eq)
-- `PgConfig::indexes` (the CLI's `init --index`) creates those a deployment asks for, at every
-- migrate; queries work without them, walking the log or a namespace's index instead.
DROP INDEX IF EXISTS events_time;
DROP INDEX IF EXISTS events_subject;
