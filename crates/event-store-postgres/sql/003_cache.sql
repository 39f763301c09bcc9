-- Cached aggregate states. A row is keyed by the aggregate's name, its version and the md5 of
-- its canonical query (the query text is kept for inspection), and holds the state with the
-- position (tx, seq) of the last event folded into it.
CREATE TABLE IF NOT EXISTS aggregate_cache (
    aggregate   text        NOT NULL,
    version     integer     NOT NULL,
    query_hash  uuid        NOT NULL,
    query       text        NOT NULL,
    state       jsonb       NOT NULL,
    tx          bigint      NOT NULL,
    seq         bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate, version, query_hash)
);
