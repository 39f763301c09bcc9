-- Never moves an entry backwards, even when concurrent writers race.
INSERT INTO aggregate_cache AS c (aggregate, version, query_hash, query, upcasters, state, tx, seq,
                                  subjects)
VALUES ($1, $2::bigint, md5($3)::uuid, $3, $4, $5, $6, $7, $8)
ON CONFLICT (aggregate, version, upcasters, query_hash) DO UPDATE
   SET state = excluded.state, tx = excluded.tx, seq = excluded.seq,
       subjects = excluded.subjects, updated_at = now()
 WHERE (c.tx, c.seq) <= (excluded.tx, excluded.seq)
