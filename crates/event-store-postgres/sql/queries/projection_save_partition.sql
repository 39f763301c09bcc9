-- A check-and-set on the partition's checkpoint ($10, $11): touches no row when another runner
-- moved it, or the generation is gone.
UPDATE projection_partitions
   SET high = $4::bigint, low = $5::bigint, caught_up = $6::boolean, applied = $7::bigint,
       parked = $8::jsonb, updated_at = $9::timestamptz
 WHERE name = $1::text AND generation = $2::bigint AND partition = $3::bigint
   AND high = $10::bigint AND low = $11::bigint
