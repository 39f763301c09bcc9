-- Starts generation ?2 of projection ?1 if its generations are still (?3 active, ?4 building)
-- and no generation numbered ?2 or more exists: as the active one when there is none, else as
-- the building one. Touches no row otherwise.
UPDATE projections
   SET building   = CASE WHEN active IS NULL THEN NULL ELSE ?2 END,
       active     = COALESCE(active, ?2),
       updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE name = ?1
   AND active IS ?3
   AND building IS ?4
   AND NOT EXISTS (SELECT 1 FROM projection_generations g
                    WHERE g.name = ?1 AND g.generation >= ?2)
