-- Cached states are also keyed by the fingerprint of the upcasters their events were decoded
-- through (0: every type at version 1 without upcasters), so a state folded under other
-- upcasters is never used. Existing entries keep fingerprint 0, which is what they were folded
-- under.
ALTER TABLE aggregate_cache ADD COLUMN IF NOT EXISTS upcasters bigint NOT NULL DEFAULT 0;
ALTER TABLE aggregate_cache DROP CONSTRAINT IF EXISTS aggregate_cache_pkey;
ALTER TABLE aggregate_cache
  ADD CONSTRAINT aggregate_cache_pkey PRIMARY KEY (aggregate, version, upcasters, query_hash);
