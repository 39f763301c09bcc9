-- Closing streams (a soft delete: nothing is removed). A closed stream takes no appends and is
-- left out of stream reads and lists; its events stay in the global log. The single writer
-- closes and appends, so an append either commits before a close or sees it. Rows here are the
-- streams' state, not events: reopening deletes one.
CREATE TABLE IF NOT EXISTS closed_streams (
    stream    TEXT NOT NULL PRIMARY KEY,
    closed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
