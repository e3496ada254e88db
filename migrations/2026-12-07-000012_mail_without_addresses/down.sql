-- The addresses removed are not restored: they were copies of users.email, filled back here.
ALTER TABLE mailbox ADD COLUMN to_address text;
UPDATE mailbox m SET to_address = u.email FROM users u WHERE u.id = m.user_id;
ALTER TABLE mailbox ALTER COLUMN to_address SET NOT NULL;
