-- The grants an application role needs to use an event store schema that an owner migrated.
-- Replace event_store with the schema and app_role with the role.
--
-- The role appends only through append_events (it runs with the owner's rights); it can read
-- the log and the applied migrations, and keep cached aggregates and checkpoints. It cannot
-- insert, update or delete events.
GRANT USAGE ON SCHEMA event_store TO app_role;
GRANT SELECT ON event_store.events, event_store.schema_migrations TO app_role;
GRANT EXECUTE ON FUNCTION event_store.append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[]) TO app_role;
GRANT EXECUTE ON FUNCTION event_store.append_events_many(text[], bigint[], integer[], integer[], uuid[], text[], text[], jsonb[], jsonb[], timestamptz[]) TO app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON event_store.aggregate_cache TO app_role;
GRANT SELECT, INSERT, UPDATE ON event_store.checkpoints TO app_role;
-- Which streams are closed (appends check it inside append_events). Closing and reopening a
-- stream is an operator's act: grant INSERT, DELETE on closed_streams only to a role that may.
GRANT SELECT ON event_store.closed_streams TO app_role;
-- Crypto-shredding's wrapped data keys (forgetting clears a key; no row is ever deleted).
GRANT SELECT, INSERT, UPDATE ON event_store.subject_keys TO app_role;
-- Projection runners keep their state beside the log; a transactional read model's own tables
-- are the projection's to grant (they are created by the runner's role).
GRANT SELECT, INSERT, UPDATE, DELETE
    ON event_store.projections, event_store.projection_generations, event_store.projection_partitions
    TO app_role;
