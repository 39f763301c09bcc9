-- A compare-and-set: only the key the rotation read is replaced.
UPDATE subject_keys
   SET master = $2, nonce = $3, wrapped = $4, updated_at = now()
 WHERE subject = $1 AND master = $5 AND nonce = $6 AND wrapped = $7
