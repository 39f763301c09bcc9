-- Partitions 0 to $3 - 1 of generation $2, at the start of the log.
INSERT INTO projection_partitions (name, generation, partition, high, low, updated_at)
SELECT $1::text, $2::bigint, p, 0, 0, $4::timestamptz
  FROM generate_series(0, $3::bigint - 1) AS p
