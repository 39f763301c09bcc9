SELECT master, nonce, wrapped FROM subject_keys WHERE subject = ?1
