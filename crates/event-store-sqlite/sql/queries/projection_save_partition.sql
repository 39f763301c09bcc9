-- A check-and-set on the partition's checkpoint (?10, ?11): touches no row when another runner
-- moved it, or the generation is gone.
UPDATE projection_partitions
   SET high = ?4, low = ?5, caught_up = ?6, applied = ?7, parked = ?8, updated_at = ?9
 WHERE name = ?1 AND generation = ?2 AND partition = ?3
   AND high = ?10 AND low = ?11
