SELECT name, tx, seq FROM checkpoints ORDER BY name
