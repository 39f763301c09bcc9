DELETE FROM projection_generations WHERE name = ?1 AND generation = ?2
