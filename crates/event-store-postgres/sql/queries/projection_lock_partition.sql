-- Locks a partition's row for a transactional batch and checks its checkpoint ($4, $5): one
-- row when the batch may go on.
SELECT 1 FROM projection_partitions
 WHERE name = $1::text AND generation = $2::bigint AND partition = $3::bigint
   AND high = $4::bigint AND low = $5::bigint
   FOR UPDATE
