INSERT INTO checkpoints (name, high, low) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET high = excluded.high, low = excluded.low,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
