SELECT namespace, event_type, count(*) FROM events GROUP BY namespace, event_type ORDER BY 1, 2
