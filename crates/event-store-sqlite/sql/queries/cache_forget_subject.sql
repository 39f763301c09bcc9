-- Removes every cached state that folded personal values of subject ?1 (a scan of the cache:
-- forgetting is rare, and only entries with subjects are looked into).
DELETE FROM aggregate_cache
 WHERE subjects <> '[]'
   AND EXISTS (SELECT 1 FROM json_each(aggregate_cache.subjects) WHERE value = ?1)
