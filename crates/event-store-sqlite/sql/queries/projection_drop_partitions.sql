DELETE FROM projection_partitions WHERE name = ?1 AND generation = ?2
