-- Partitions 0 to ?3 - 1 of generation ?2, at the start of the log.
WITH RECURSIVE n (p) AS (SELECT 0 UNION ALL SELECT p + 1 FROM n WHERE p + 1 < ?3)
INSERT INTO projection_partitions (name, generation, partition, high, low, updated_at)
SELECT ?1, ?2, p, 0, 0, ?4 FROM n
