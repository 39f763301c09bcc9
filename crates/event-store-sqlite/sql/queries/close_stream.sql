-- Closes stream ?1 (on the single writer, so after or before any append); 1 row when it was open.
INSERT INTO closed_streams (stream) VALUES (?1) ON CONFLICT (stream) DO NOTHING
