SELECT coalesce(max(position), 0) + 1 FROM events
