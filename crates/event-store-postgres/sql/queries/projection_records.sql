-- The projections as one JSON document each, by name: one ($1), or every one when $1 is
-- NULL; its generations and partitions read in one statement so they are consistent.
SELECT json_build_object(
    'name', p.name,
    'active', p.active,
    'building', p.building,
    'generations', COALESCE((
        SELECT json_agg(json_build_object(
                   'generation', g.generation, 'version', g.version,
                   'partitions', g.partitions, 'query', g.query, 'created', g.created,
                   'started_at', g.started_at) ORDER BY g.generation)
          FROM projection_generations g
         WHERE g.name = p.name), '[]'::json),
    'partitions', COALESCE((
        SELECT json_agg(json_build_object(
                   'generation', x.generation, 'partition', x.partition,
                   'high', x.high, 'low', x.low, 'caught_up', x.caught_up,
                   'applied', x.applied, 'parked', x.parked,
                   'updated_at', x.updated_at) ORDER BY x.generation, x.partition)
          FROM projection_partitions x
         WHERE x.name = p.name), '[]'::json)
) AS record
FROM projections p
WHERE $1::text IS NULL OR p.name = $1::text
ORDER BY p.name
