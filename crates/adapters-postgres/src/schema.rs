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

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    user_pii (user_id, field) {
        user_id -> Uuid,
        field -> Text,
        key_id -> Text,
        nonce -> Bytea,
        ciphertext -> Bytea,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        family_id -> Uuid,
        user_id -> Uuid,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Uuid,
        kind -> Text,
        payload -> Jsonb,
        priority -> Int2,
        state -> Text,
        attempt -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        unique_key -> Nullable<Text>,
        errors -> Jsonb,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamptz>,
        lease_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    mailbox (id) {
        id -> Uuid,
        user_id -> Uuid,
        subject -> Text,
        body -> Text,
        sent_at -> Timestamptz,
    }
}

diesel::joinable!(user_pii -> users (user_id));
diesel::joinable!(mailbox -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, user_pii, refresh_tokens, mailbox);
