UPDATE projection_generations SET created = true
 WHERE name = $1::text AND generation = $2::bigint AND NOT created
