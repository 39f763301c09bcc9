-- Cached states record the subjects whose personal values they folded (a JSON array of ids, in
-- byte order; such a state is stored sealed), so forgetting a subject removes them
-- (queries/cache_forget_subject.sql). The cache holds only derived state: it is rebuilt empty
-- and refills on the next folds.
DROP TABLE IF EXISTS aggregate_cache;
CREATE TABLE aggregate_cache (
    aggregate  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    upcasters  INTEGER NOT NULL DEFAULT 0,
    query      TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    high       INTEGER NOT NULL,
    low        INTEGER NOT NULL,
    subjects   TEXT    NOT NULL DEFAULT '[]',
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate, version, upcasters, query)
);
