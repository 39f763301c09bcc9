-- Subjects' data keys for crypto-shredding, wrapped by a master key kept outside the store.
-- A forgotten subject keeps its row with no key (a tombstone), so no key is made again.
-- Subjects sort in byte order (COLLATE "C"), as stream ids do.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject    text COLLATE "C" NOT NULL PRIMARY KEY,
    master     text,
    nonce      text,
    wrapped    text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((master IS NULL) = (wrapped IS NULL) AND (nonce IS NULL) = (wrapped IS NULL))
);
