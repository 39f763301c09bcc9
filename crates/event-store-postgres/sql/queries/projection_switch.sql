-- Makes the building generation $3 the active one if the active one is still $2.
UPDATE projections SET active = $3::bigint, building = NULL, updated_at = now()
 WHERE name = $1::text AND active IS NOT DISTINCT FROM $2::bigint AND building = $3::bigint
