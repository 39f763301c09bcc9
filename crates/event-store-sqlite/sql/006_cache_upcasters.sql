-- Cached states are also keyed by the fingerprint of the upcasters their events were decoded
-- through (0: every type at version 1 without upcasters), so a state folded under other
-- upcasters is never used. SQLite cannot change a primary key in place; the cache holds only
-- derived state, so it is rebuilt empty and refills on the next folds.
DROP TABLE IF EXISTS aggregate_cache;
CREATE TABLE aggregate_cache (
    aggregate  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    upcasters  INTEGER NOT NULL DEFAULT 0,
    query      TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    high       INTEGER NOT NULL,
    low        INTEGER NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate, version, upcasters, query)
);
