-- Cached aggregate states with the position (high, low) of the last folded event.
CREATE TABLE IF NOT EXISTS aggregate_cache (
    aggregate  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    query      TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    high       INTEGER NOT NULL,
    low        INTEGER NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate, version, query)
);
