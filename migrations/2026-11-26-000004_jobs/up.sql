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

-- Claims up to p_limit due jobs of p_kinds for p_worker: the highest priority and oldest run_at
-- first, skipping rows other workers hold, each with a fresh lease id. plpgsql keeps the
-- statement's plan across calls, which matters for a statement run for every job.
CREATE FUNCTION keel_claim_jobs(
    p_worker text, p_locked_until timestamptz, p_now timestamptz, p_kinds text[], p_limit bigint
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    UPDATE jobs SET state = 'running', attempt = attempt + 1, locked_by = p_worker,
        locked_until = p_locked_until, lease_id = gen_random_uuid(), started_at = p_now
    WHERE id IN (
        SELECT j.id FROM jobs j
        WHERE j.state = 'available' AND j.run_at <= p_now AND j.kind = ANY(p_kinds)
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    RETURNING *;
END;
$$;

-- Completes the job p_id if p_lease still holds it (else raises 'keel: lease lost'), then claims
-- like keel_claim_jobs: a busy worker's whole turn in one round trip.
CREATE FUNCTION keel_complete_and_claim(
    p_id uuid, p_lease uuid, p_finished timestamptz,
    p_worker text, p_locked_until timestamptz, p_now timestamptz, p_kinds text[], p_limit bigint
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET state = 'completed', finished_at = p_finished,
        locked_by = NULL, locked_until = NULL, lease_id = NULL
    WHERE id = p_id AND state = 'running' AND lease_id = p_lease;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'keel: lease lost' USING ERRCODE = 'P0001';
    END IF;
    RETURN QUERY SELECT * FROM keel_claim_jobs(p_worker, p_locked_until, p_now, p_kinds, p_limit);
END;
$$;

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
