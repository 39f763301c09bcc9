-- Clears the parked state of projection ?1's partitions (all of them, or partition ?2).
UPDATE projection_partitions SET parked = NULL, updated_at = ?3
 WHERE name = ?1 AND parked IS NOT NULL AND (?2 IS NULL OR partition = ?2)
