SELECT name, high, low FROM checkpoints ORDER BY name
