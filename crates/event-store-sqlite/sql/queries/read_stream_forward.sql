-- Versions are consecutive, so the page is the window [?2, ?4): no plan reads more than a page.
SELECT position, id, stream, version, namespace, event_type, data, context
  FROM events WHERE stream = ?1 AND version >= ?2 AND version < ?4 ORDER BY version LIMIT ?3
