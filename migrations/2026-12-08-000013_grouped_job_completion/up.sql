-- Completes a group of jobs and claims the next ones, in one round trip and one commit (the
-- group commit of job completions, adapters-postgres `jobs::completions`).
--
-- p_ids / p_leases / p_finished: the jobs to complete, each only if its lease still holds it.
-- If any lease was lost, nothing changes and 'keel: lease lost' is raised: the caller then
-- records the group one job at a time (keel_complete_and_claim), so only the job whose lease was
-- lost is refused. No job is claimed for a worker whose completion did not hold.
-- p_workers / p_locked_until: one entry per job to claim next, for that worker and lease end;
-- claimed like keel_claim_jobs, highest priority and oldest run_at first, skipping held rows;
-- the first worker gets the most urgent job.
--
-- Returns the claimed rows.
CREATE FUNCTION keel_complete_many_and_claim(
    p_ids uuid[], p_leases uuid[], p_finished timestamptz[],
    p_workers text[], p_locked_until timestamptz[], p_now timestamptz, p_kinds text[]
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    v_done bigint;
BEGIN
    UPDATE jobs j SET state = 'completed', finished_at = d.finished,
        locked_by = NULL, locked_until = NULL, lease_id = NULL
    FROM unnest(p_ids, p_leases, p_finished) AS d(id, lease, finished)
    WHERE j.id = d.id AND j.state = 'running' AND j.lease_id = d.lease;
    GET DIAGNOSTICS v_done = ROW_COUNT;
    IF v_done <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'keel: lease lost' USING ERRCODE = 'P0001';
    END IF;

    RETURN QUERY
    WITH due AS (
        SELECT c.id, c.priority, c.run_at FROM jobs c
        WHERE c.state = 'available' AND c.run_at <= p_now AND c.kind = ANY(p_kinds)
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT cardinality(p_workers)
        FOR UPDATE SKIP LOCKED
    ), numbered AS (
        SELECT id, (row_number() OVER (ORDER BY priority DESC, run_at, id))::int AS n FROM due
    )
    UPDATE jobs j SET state = 'running', attempt = j.attempt + 1,
        locked_by = p_workers[numbered.n], locked_until = p_locked_until[numbered.n],
        lease_id = gen_random_uuid(), started_at = p_now
    FROM numbered
    WHERE j.id = numbered.id
    RETURNING j.*;
END;
$$;
