SELECT count(*), count(DISTINCT stream),
       pg_total_relation_size('events') + pg_total_relation_size('aggregate_cache')
  FROM events
