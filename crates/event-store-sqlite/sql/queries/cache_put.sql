-- Never moves an entry backwards.
INSERT INTO aggregate_cache (aggregate, version, query, upcasters, state, high, low, subjects)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (aggregate, version, upcasters, query) DO UPDATE
   SET state = excluded.state, high = excluded.high, low = excluded.low,
       subjects = excluded.subjects,
       updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE (aggregate_cache.high, aggregate_cache.low) <= (excluded.high, excluded.low)
