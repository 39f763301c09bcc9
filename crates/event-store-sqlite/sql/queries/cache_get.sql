SELECT state, high, low, subjects FROM aggregate_cache
 WHERE aggregate = ?1 AND version = ?2 AND query = ?3 AND upcasters = ?4
