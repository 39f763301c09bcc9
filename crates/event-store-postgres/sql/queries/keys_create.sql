-- The first key wins; a tombstone stays.
INSERT INTO subject_keys (subject, master, nonce, wrapped) VALUES ($1, $2, $3, $4)
ON CONFLICT (subject) DO NOTHING
