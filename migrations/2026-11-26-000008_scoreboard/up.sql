-- The live scoreboard (DESIGN.md §3 "Scoreboard"): one standing per user and one history row per
-- scored action. Postgres is the truth; the Redis sorted set is a cache rebuilt from here.
-- No foreign key to users: a deleted account's standing is removed and its history rows lose
-- their user id (anonymised), by keel's UserDeleted handling; the history itself is kept.

-- Board order: score DESC, reached_at ASC, user_id ASC (keel_domain::scoreboard::board_order).
-- reached_at is whole seconds and the score fits 22 bits, so the order encodes exactly in a
-- Redis sorted-set score (keel_domain::scoreboard::ranking).
CREATE TABLE scores (
    user_id    uuid        PRIMARY KEY,
    score      bigint      NOT NULL CHECK (score BETWEEN 0 AND 4194303),
    reached_at timestamptz NOT NULL CHECK (reached_at = date_trunc('second', reached_at)),
    updated_at timestamptz NOT NULL
);
CREATE INDEX scores_board ON scores (score DESC, reached_at ASC, user_id ASC);

-- One row per used action token: the action id is unique (single use), and the row keeps the
-- first response (old and new score, rank) to replay on a repeat.
CREATE TABLE score_actions (
    action_id   uuid        PRIMARY KEY,
    user_id     uuid,
    action_type text        NOT NULL CHECK (action_type ~ '^[A-Z0-9_]{1,64}$'),
    delta       bigint      NOT NULL CHECK (delta > 0),
    old_score   bigint      NOT NULL CHECK (old_score >= 0),
    new_score   bigint      NOT NULL CHECK (new_score = old_score + delta),
    rank        bigint      NOT NULL CHECK (rank >= 1),
    token_hash  bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL
);
CREATE INDEX score_actions_user ON score_actions (user_id, created_at) WHERE user_id IS NOT NULL;

-- History is append-only; the one change allowed is anonymising a deleted user's rows.
CREATE FUNCTION score_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.user_id IS NULL
        AND (NEW.action_id, NEW.action_type, NEW.delta, NEW.old_score, NEW.new_score, NEW.rank,
             NEW.token_hash, NEW.created_at)
            IS NOT DISTINCT FROM
            (OLD.action_id, OLD.action_type, OLD.delta, OLD.old_score, OLD.new_score, OLD.rank,
             OLD.token_hash, OLD.created_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'score history is append-only (% refused)', TG_OP
        USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER score_actions_append_only BEFORE UPDATE OR DELETE ON score_actions
    FOR EACH ROW EXECUTE FUNCTION score_actions_append_only();
CREATE TRIGGER score_actions_no_truncate BEFORE TRUNCATE ON score_actions
    FOR EACH STATEMENT EXECUTE FUNCTION score_actions_append_only();
