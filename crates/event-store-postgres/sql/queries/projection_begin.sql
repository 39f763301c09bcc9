-- Starts generation $2 of projection $1 if its generations are still ($3 active, $4 building)
-- and no generation numbered $2 or more exists: as the active one when there is none, else as
-- the building one. Touches no row otherwise.
UPDATE projections
   SET active     = COALESCE(active, $2::bigint),
       building   = CASE WHEN active IS NULL THEN NULL ELSE $2::bigint END,
       updated_at = now()
 WHERE name = $1::text
   AND active IS NOT DISTINCT FROM $3::bigint
   AND building IS NOT DISTINCT FROM $4::bigint
   AND NOT EXISTS (SELECT 1 FROM projection_generations g
                    WHERE g.name = $1::text AND g.generation >= $2::bigint)
