SELECT id, version, tx, seq FROM append_events_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
