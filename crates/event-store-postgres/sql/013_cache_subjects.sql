-- Cached states record the subjects whose personal values they folded (a JSON array of ids, in
-- byte order; such a state is stored sealed), so forgetting a subject removes them
-- (queries/cache_forget_subject.sql, through the partial index below). Existing entries folded
-- no personal value.
ALTER TABLE aggregate_cache ADD COLUMN IF NOT EXISTS subjects jsonb NOT NULL DEFAULT '[]';
CREATE INDEX IF NOT EXISTS aggregate_cache_subjects
    ON aggregate_cache USING gin (subjects jsonb_path_ops)
 WHERE subjects <> '[]'::jsonb;
