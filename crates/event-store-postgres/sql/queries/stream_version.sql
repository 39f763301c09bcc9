-- A stream's last version (NULL: no event) and whether it is closed (1) or not (0).
SELECT (SELECT max(version) FROM events WHERE stream = $1),
       EXISTS (SELECT 1 FROM closed_streams WHERE stream = $1)::int::bigint
