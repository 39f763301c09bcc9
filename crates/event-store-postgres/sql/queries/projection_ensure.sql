INSERT INTO projections (name) VALUES ($1::text) ON CONFLICT (name) DO NOTHING
