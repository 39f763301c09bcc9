-- Reopens stream ?1 (on the single writer); 1 row when it was closed.
DELETE FROM closed_streams WHERE stream = ?1
