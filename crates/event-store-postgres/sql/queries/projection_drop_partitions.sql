DELETE FROM projection_partitions WHERE name = $1::text AND generation = $2::bigint
