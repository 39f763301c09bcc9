INSERT INTO projection_generations (name, generation, version, partitions, query, started_at)
VALUES ($1::text, $2::bigint, $3::bigint, $4::bigint, $5::jsonb, $6::timestamptz)
