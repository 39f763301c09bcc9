INSERT INTO checkpoints (name, tx, seq) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, updated_at = now()
