-- Makes the building generation ?3 the active one if the active one is still ?2.
UPDATE projections
   SET active = ?3, building = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE name = ?1 AND active IS ?2 AND building = ?3
