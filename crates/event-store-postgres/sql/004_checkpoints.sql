-- Named checkpoints of processes that follow the log (the AMQP relay, projections).
CREATE TABLE IF NOT EXISTS checkpoints (
    name       text        PRIMARY KEY,
    tx         bigint      NOT NULL,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
