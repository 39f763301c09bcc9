UPDATE projection_generations SET created = 1
 WHERE name = ?1 AND generation = ?2 AND NOT created
