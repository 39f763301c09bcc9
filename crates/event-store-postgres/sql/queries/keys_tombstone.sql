INSERT INTO subject_keys (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING
