SELECT id, version, tx, seq, stored FROM append_events($1, $2, $3, $4, $5, $6, $7, $8)
