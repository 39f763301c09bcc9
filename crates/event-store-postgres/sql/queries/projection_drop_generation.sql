DELETE FROM projection_generations WHERE name = $1::text AND generation = $2::bigint
