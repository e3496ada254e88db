-- Mail names its recipient by account id only: the address is personal data and is looked up
-- when a mail is sent (keel_domain::mail::deliver). Stored messages lose their address column,
-- and the jobs already queued (or kept as completed or dead) lose the address in their payload;
-- their handlers read the account's current address instead.
ALTER TABLE mailbox DROP COLUMN to_address;

UPDATE jobs
   SET payload = payload - 'to'
 WHERE kind IN ('mail.send', 'competitions.reminder')
   AND payload ? 'to';
