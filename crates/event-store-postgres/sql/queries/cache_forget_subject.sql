-- Removes every cached state that folded personal values of subject $1 (the partial index
-- aggregate_cache_subjects finds them).
DELETE FROM aggregate_cache
 WHERE subjects @> jsonb_build_array($1::text) AND subjects <> '[]'::jsonb
