-- Idempotency-Key records (DESIGN.md §2): one row per (scope, key), claimed while in flight,
-- completed with the final response to replay, purged after `expires_at`.
CREATE TABLE idempotency_keys (
    scope            text        NOT NULL CHECK (char_length(scope) BETWEEN 1 AND 300),
    key              text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint      bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    claim_id         uuid        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('in_flight', 'completed')),
    lease_until      timestamptz,
    response_status  smallint    CHECK (response_status BETWEEN 100 AND 599),
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (scope, key),
    -- An in-flight claim has a lease and no response; a completed one has a response and no lease.
    CONSTRAINT idempotency_state_shape CHECK (
        (state = 'in_flight' AND lease_until IS NOT NULL
            AND response_status IS NULL AND response_headers IS NULL AND response_body IS NULL)
        OR
        (state = 'completed' AND lease_until IS NULL
            AND response_status IS NOT NULL AND response_headers IS NOT NULL AND response_body IS NOT NULL)
    )
);

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
