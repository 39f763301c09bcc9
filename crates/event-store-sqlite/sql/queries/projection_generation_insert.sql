INSERT INTO projection_generations (name, generation, version, partitions, query, started_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
