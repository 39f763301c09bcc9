-- The projections as one JSON document each, by name: one (?1), or every one when ?1 is
-- NULL; its generations and partitions read in one statement so they are consistent.
SELECT json_object(
    'name', p.name,
    'active', p.active,
    'building', p.building,
    'generations', json(COALESCE((
        SELECT json_group_array(json_object(
                   'generation', g.generation, 'version', g.version,
                   'partitions', g.partitions, 'query', json(g.query),
                   'created', g.created, 'started_at', g.started_at))
          FROM (SELECT * FROM projection_generations
                 WHERE name = p.name ORDER BY generation) g), '[]')),
    'partitions', json(COALESCE((
        SELECT json_group_array(json_object(
                   'generation', x.generation, 'partition', x.partition,
                   'high', x.high, 'low', x.low, 'caught_up', x.caught_up,
                   'applied', x.applied, 'parked', json(x.parked),
                   'updated_at', x.updated_at))
          FROM (SELECT * FROM projection_partitions
                 WHERE name = p.name ORDER BY generation, partition) x), '[]'))
) AS record
FROM projections p
WHERE ?1 IS NULL OR p.name = ?1
ORDER BY p.name
