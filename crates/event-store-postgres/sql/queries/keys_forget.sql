UPDATE subject_keys
   SET master = NULL, nonce = NULL, wrapped = NULL, updated_at = now()
 WHERE subject = $1 AND wrapped IS NOT NULL
