-- The grants an application role needs to use an event store schema that an owner migrated.
-- Replace event_store with the schema and app_role with the role. (Functions are executable by
-- PUBLIC by default; append_events runs with the caller's rights.)
GRANT USAGE ON SCHEMA event_store TO app_role;
GRANT SELECT, INSERT ON event_store.events TO app_role;
GRANT SELECT, INSERT, UPDATE ON event_store.aggregate_cache TO app_role;
GRANT SELECT, INSERT, UPDATE ON event_store.checkpoints TO app_role;
