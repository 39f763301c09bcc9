UPDATE subject_keys
   SET master = NULL, nonce = NULL, wrapped = NULL,
       updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE subject = ?1 AND wrapped IS NOT NULL
