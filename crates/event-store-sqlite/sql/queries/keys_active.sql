SELECT subject, master, nonce, wrapped FROM subject_keys
 WHERE wrapped IS NOT NULL AND subject > ?1
 ORDER BY subject
 LIMIT ?2
