-- Clears the parked state of projection $1's partitions (all of them, or partition $2).
UPDATE projection_partitions SET parked = NULL, updated_at = $3::timestamptz
 WHERE name = $1::text AND parked IS NOT NULL
   AND ($2::bigint IS NULL OR partition = $2::bigint)
