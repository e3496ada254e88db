-- The durable job queue (keel_domain::jobs) and the mailbox the built-in mail sender writes to.
-- Every time stored here comes from the caller's clock, never from now(), so fake clocks work.
CREATE TABLE jobs (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 100),
    payload      jsonb       NOT NULL,
    priority     smallint    NOT NULL DEFAULT 0,
    state        text        NOT NULL CHECK (state IN ('available', 'running', 'completed', 'dead')),
    attempt      integer     NOT NULL CHECK (attempt >= 0),
    max_attempts integer     NOT NULL CHECK (max_attempts >= 1),
    run_at       timestamptz NOT NULL,
    unique_key   text,
    -- Errors of failed attempts, oldest first: [{"attempt": 1, "at": "…", "error": "…"}, …].
    errors       jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(errors) = 'array'),
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    locked_by    text,
    locked_until timestamptz,
    lease_id     uuid,
    -- A running job is leased (holder, end, proof); any other job has no lease at all.
    CONSTRAINT jobs_lease_shape CHECK (
        (state = 'running' AND locked_by IS NOT NULL AND locked_until IS NOT NULL AND lease_id IS NOT NULL)
        OR
        (state <> 'running' AND locked_by IS NULL AND locked_until IS NULL AND lease_id IS NULL)
    ),
    -- A finished job says when it finished.
    CONSTRAINT jobs_finished_shape CHECK (state NOT IN ('completed', 'dead') OR finished_at IS NOT NULL)
);

-- At most one job per (kind, uniqueness key); enqueue relies on it with ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX jobs_kind_unique_key ON jobs (kind, unique_key) WHERE unique_key IS NOT NULL;

-- Claiming: due jobs in claim order. The kind is not a leading column because a worker claims
-- every kind its node registered and the order spans kinds; it is filtered while walking.
CREATE INDEX jobs_claim_order ON jobs (priority DESC, run_at, id) WHERE state = 'available';

-- Claims that find nothing due: bounded by `run_at <= now` instead of walking every job scheduled
-- for later (reminders days ahead). The planner picks this or the claim order, whichever is cheaper.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state = 'available';

-- Rescue of expired leases.
CREATE INDEX jobs_lease_expiry ON jobs (locked_until) WHERE state = 'running';

-- Purge of completed jobs.
CREATE INDEX jobs_completed_finished_at ON jobs (finished_at) WHERE state = 'completed';

-- Admin listing, newest first, keyset-paged by (created_at, id).
CREATE INDEX jobs_listing ON jobs (created_at DESC, id DESC);

-- Wake idle workers on every node when work is due. NOTIFY is delivered on commit only (a job
-- enqueued in a rolled-back transaction wakes nobody) and identical notifications of one
-- transaction are collapsed into one, so a bulk enqueue sends a single wake-up. A job scheduled
-- for later wakes nobody now: workers find it by polling once it is due.
CREATE FUNCTION keel_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keel_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_available
    AFTER INSERT OR UPDATE OF state, run_at ON jobs
    FOR EACH ROW
    WHEN (NEW.state = 'available' AND NEW.run_at <= now() + interval '1 second')
    EXECUTE FUNCTION keel_jobs_notify();

-- Mail delivered by keel's built-in sender. The id is the message id, so a job delivering the
-- same message twice (jobs run at least once) stores it once.
CREATE TABLE mailbox (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_address text        NOT NULL,
    subject    text        NOT NULL,
    body       text        NOT NULL,
    sent_at    timestamptz NOT NULL
);

CREATE INDEX mailbox_user_sent ON mailbox (user_id, sent_at DESC, id DESC);
