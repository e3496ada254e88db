DROP FUNCTION IF EXISTS keel_complete_and_claim(uuid, uuid, timestamptz, text, timestamptz, timestamptz, text[], bigint);
DROP FUNCTION IF EXISTS keel_claim_jobs(text, timestamptz, timestamptz, text[], bigint);
DROP TABLE IF EXISTS mailbox;
DROP TABLE IF EXISTS jobs;
DROP FUNCTION IF EXISTS keel_jobs_notify();
