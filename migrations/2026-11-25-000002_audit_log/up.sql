-- The tamper-evident audit log (DESIGN.md §3 "Audit"). Append-only: the triggers below refuse
-- UPDATE, DELETE and TRUNCATE. Each row's `hash` is SHA-256 over the canonical encoding of the
-- row (seq included) and `prev_hash`, the previous row's hash (32 zero bytes for seq 1); see
-- keel_domain::audit::chain. `seq` is assigned by the appender under an advisory lock
-- (keel_adapters_postgres::audit), one more than the last row, so it has no gaps: a missing seq
-- is a removed row.
CREATE TABLE audit_log (
    seq        bigint      PRIMARY KEY CHECK (seq > 0),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    subject    text        NOT NULL,
    before     jsonb,
    after      jsonb,
    reason     text,
    request_id text,
    at         timestamptz NOT NULL,
    prev_hash  bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea       NOT NULL UNIQUE CHECK (octet_length(hash) = 32)
);

-- Listing filters, newest first by seq (keyset pagination on seq).
CREATE INDEX audit_log_actor_seq ON audit_log (actor, seq DESC);
CREATE INDEX audit_log_action_seq ON audit_log (action, seq DESC);
CREATE INDEX audit_log_subject_seq ON audit_log (subject, seq DESC);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit entries are never changed; append a new entry instead';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
