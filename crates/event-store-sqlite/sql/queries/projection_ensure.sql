INSERT INTO projections (name) VALUES (?1) ON CONFLICT (name) DO NOTHING
