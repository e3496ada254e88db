-- Users, their sealed personal data and their refresh tokens (DESIGN.md §2, §3 "Auth & users").
-- Emails are stored normalised (trimmed, lowercased by keel_domain::identity::values::Email), so
-- the plain UNIQUE constraint makes one mailbox one account.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL UNIQUE
                              CHECK (email = lower(email) AND char_length(email) BETWEEN 3 AND 254),
    display_name  text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    role          text        NOT NULL CHECK (role IN ('participant', 'organizer', 'support', 'admin')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL
);

-- One sealed value (XChaCha20-Poly1305) per user and field; the key id names the key ring entry
-- that sealed it, so keys can be rotated. Never plaintext.
CREATE TABLE user_pii (
    user_id    uuid  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    field      text  NOT NULL CHECK (field IN ('phone', 'address', 'date_of_birth', 'national_id')),
    key_id     text  NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 32),
    nonce      bytea NOT NULL CHECK (octet_length(nonce) = 24),
    ciphertext bytea NOT NULL CHECK (octet_length(ciphertext) >= 16),
    PRIMARY KEY (user_id, field)
);

-- Refresh tokens, by the SHA-256 of their secret. A family is one login: each rotation marks the
-- presented token used and adds the next one; a reused token revokes every token of its family.
CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);
