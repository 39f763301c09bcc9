-- Versions are consecutive, so the page is the window (?4, ?2]: no plan reads more than a page.
-- A closed stream reads as no rows.
SELECT position, id, stream, version, namespace, event_type, data, context
  FROM events WHERE stream = ?1 AND version <= ?2 AND version > ?4
   AND NOT EXISTS (SELECT 1 FROM closed_streams c WHERE c.stream = ?1)
 ORDER BY version DESC LIMIT ?3
