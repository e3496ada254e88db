//! diesel table definitions, kept by hand in step with `migrations/`.
#![allow(missing_docs)]

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Bytea,
        claim_id -> Uuid,
        state -> Text,
        lease_until -> Nullable<Timestamptz>,
        response_status -> Nullable<Int2>,
        response_headers -> Nullable<Jsonb>,
        response_body -> Nullable<Bytea>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (seq) {
        seq -> Int8,
        actor -> Text,
        action -> Text,
        subject -> Text,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        reason -> Nullable<Text>,
        request_id -> Nullable<Text>,
        at -> Timestamptz,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}
