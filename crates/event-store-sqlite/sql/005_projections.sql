-- Projections: each projection's generations (the active one readers see, and the one being
-- built to replace it) and each partition's checkpoint. A partition's state is saved with a
-- check-and-set on its checkpoint (in the same transaction as a transactional read model's
-- writes), so a runner that lost its lease cannot apply anything twice.
CREATE TABLE IF NOT EXISTS projections (
    name       TEXT    PRIMARY KEY,
    active     INTEGER,
    building   INTEGER,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS projection_generations (
    name       TEXT    NOT NULL REFERENCES projections (name),
    generation INTEGER NOT NULL CHECK (generation > 0),
    version    INTEGER NOT NULL CHECK (version >= 0),
    partitions INTEGER NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    query      TEXT    NOT NULL,
    created    INTEGER NOT NULL DEFAULT 0,
    started_at TEXT    NOT NULL,
    PRIMARY KEY (name, generation)
);

CREATE TABLE IF NOT EXISTS projection_partitions (
    name       TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    partition  INTEGER NOT NULL CHECK (partition >= 0),
    high       INTEGER NOT NULL,
    low        INTEGER NOT NULL,
    caught_up  INTEGER NOT NULL DEFAULT 0,
    applied    INTEGER NOT NULL DEFAULT 0,
    parked     TEXT,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (name, generation, partition),
    FOREIGN KEY (name, generation) REFERENCES projection_generations (name, generation)
);
