SELECT tx, seq FROM checkpoints WHERE name = $1
