-- Checks a partition's checkpoint (?4, ?5) for a transactional batch: one row when the batch
-- may go on (the writer's transaction is the lock).
SELECT 1 FROM projection_partitions
 WHERE name = ?1 AND generation = ?2 AND partition = ?3 AND high = ?4 AND low = ?5
