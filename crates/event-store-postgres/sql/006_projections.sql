-- Projections: each projection's generations (the active one readers see, and the one being
-- built to replace it) and each partition's checkpoint. A partition's state is saved with a
-- check-and-set on its checkpoint (in the same transaction as a transactional read model's
-- writes), so a runner that lost its lease cannot apply anything twice.
CREATE TABLE IF NOT EXISTS projections (
    name       text        PRIMARY KEY,
    active     bigint,
    building   bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projections_name CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$')
);

CREATE TABLE IF NOT EXISTS projection_generations (
    name       text        NOT NULL REFERENCES projections (name),
    generation bigint      NOT NULL CHECK (generation > 0),
    version    integer     NOT NULL CHECK (version >= 0),
    partitions integer     NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    query      jsonb       NOT NULL,
    created    boolean     NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL,
    PRIMARY KEY (name, generation)
);

CREATE TABLE IF NOT EXISTS projection_partitions (
    name       text        NOT NULL,
    generation bigint      NOT NULL,
    partition  integer     NOT NULL CHECK (partition >= 0),
    high       bigint      NOT NULL,
    low        bigint      NOT NULL,
    caught_up  boolean     NOT NULL DEFAULT false,
    applied    bigint      NOT NULL DEFAULT 0,
    parked     jsonb,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (name, generation, partition),
    FOREIGN KEY (name, generation) REFERENCES projection_generations (name, generation)
);
