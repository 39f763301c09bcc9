SELECT high, low FROM checkpoints WHERE name = ?1
