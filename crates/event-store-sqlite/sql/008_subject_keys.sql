-- Subjects' data keys for crypto-shredding, wrapped by a master key kept outside the store.
-- A forgotten subject keeps its row with no key (a tombstone), so no key is made again.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject    TEXT NOT NULL PRIMARY KEY,
    master     TEXT,
    nonce      TEXT,
    wrapped    TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((master IS NULL) = (wrapped IS NULL) AND (nonce IS NULL) = (wrapped IS NULL))
);
