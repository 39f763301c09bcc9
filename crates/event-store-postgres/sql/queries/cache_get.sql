SELECT state, tx, seq, subjects FROM aggregate_cache
 WHERE aggregate = $1 AND version = $2::bigint AND query_hash = md5($3)::uuid AND upcasters = $4
