//! Server-signed action tokens: proof that the server started an action for a user, so nobody
//! can raise a score without doing the action.
//!
//! `token = base64url(action_id:user_id:action_type:max_score:expires_at) "." base64url(HMAC-SHA256)`
//! (no padding). The MAC covers the encoded payload exactly as sent; it is checked in constant
//! time (`ring::hmac::verify`) before any field is trusted, and the payload is parsed strictly
//! (five fields, canonical numbers, an action type of `A–Z 0–9 _`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::hmac;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::identity::user::UserId;

/// Longest token accepted (a real one is about 190 characters).
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest action type name.
pub const MAX_ACTION_TYPE_LEN: usize = 64;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionClaims {
    /// The action (single use).
    pub action_id: Uuid,
    /// Who may use it.
    pub user_id: UserId,
    /// Which action (a key of the action table).
    pub action_type: String,
    /// The most this action may add.
    pub max_score: i64,
    /// Unusable from this instant (whole seconds).
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url parts with a well-formed payload.
    #[error("the action token is malformed")]
    Malformed,
    /// The MAC does not match: forged, tampered or truncated.
    #[error("the action token's signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("the action token has expired")]
    Expired,
}

/// Whether `name` is a valid action type: 1–64 of `A–Z`, `0–9`, `_`.
pub fn valid_action_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ACTION_TYPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Signs and verifies action tokens with one HMAC-SHA256 key (`KEEL_ACTION_TOKEN_SECRET`).
pub struct ActionTokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for ActionTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionTokenSigner(<redacted>)")
    }
}

impl ActionTokenSigner {
    /// A signer keyed by `secret` (at least 32 bytes, checked by the settings).
    pub fn new(secret: &[u8]) -> Self {
        let secret = Zeroizing::new(secret.to_vec());
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: &ActionClaims) -> String {
        let payload = format!(
            "{}:{}:{}:{}:{}",
            claims.action_id,
            claims.user_id.0,
            claims.action_type,
            claims.max_score,
            claims.expires_at.timestamp()
        );
        let encoded = URL_SAFE_NO_PAD.encode(payload);
        let tag = hmac::sign(&self.key, encoded.as_bytes());
        format!("{encoded}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of `token` if its MAC is valid and it has not expired at `now`. The user and
    /// single use are the caller's to check.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<ActionClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (encoded, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        // A tag that does not even decode is as bad as a wrong one (e.g. truncated).
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::BadSignature)?;
        hmac::verify(&self.key, encoded.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenError::Malformed)?;
        let claims = parse(&payload).ok_or(TokenError::Malformed)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Parses a signed payload strictly; `None` for anything but the exact shape [`ActionTokenSigner::sign`] writes.
fn parse(payload: &[u8]) -> Option<ActionClaims> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.split(':');
    let action_id = canonical_uuid(fields.next()?)?;
    let user_id = canonical_uuid(fields.next()?)?;
    let action_type = fields.next()?;
    let max_score = canonical_i64(fields.next()?)?;
    let expires_at = DateTime::from_timestamp(canonical_i64(fields.next()?)?, 0)?;
    if fields.next().is_some() || !valid_action_type(action_type) || max_score < 1 {
        return None;
    }
    Some(ActionClaims {
        action_id,
        user_id: UserId(user_id),
        action_type: action_type.to_owned(),
        max_score,
        expires_at,
    })
}

/// A UUID written the one way `Display` writes it (lowercase, hyphenated): `Uuid::try_parse`
/// also takes the simple, braced, URN and uppercase spellings.
fn canonical_uuid(text: &str) -> Option<Uuid> {
    let value = Uuid::try_parse(text).ok()?;
    (value.hyphenated().to_string() == text).then_some(value)
}

/// A decimal `i64` written the one way `format!` writes it (no `+`, no leading zeros).
fn canonical_i64(text: &str) -> Option<i64> {
    let value: i64 = text.parse().ok()?;
    (value.to_string() == text).then_some(value)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;

    fn signer() -> ActionTokenSigner {
        ActionTokenSigner::new(b"test-only-action-token-secret-0123456789")
    }

    fn claims(now: DateTime<Utc>) -> ActionClaims {
        ActionClaims {
            action_id: Uuid::now_v7(),
            user_id: UserId(Uuid::now_v7()),
            action_type: "COMPLETE_TASK".into(),
            max_score: 10,
            expires_at: DateTime::from_timestamp((now + Duration::minutes(5)).timestamp(), 0)
                .expect("in range"),
        }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let now = Utc::now();
        let c = claims(now);
        let token = signer().sign(&c);
        assert_eq!(signer().verify(&token, now), Ok(c.clone()));
        assert_eq!(
            signer().verify(&token, c.expires_at),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_truncated_and_tampered_tokens_are_refused() {
        let now = Utc::now();
        let c = claims(now);
        let token = signer().sign(&c);
        let other = ActionTokenSigner::new(b"another-secret-of-at-least-32-bytes!!!");
        assert_eq!(other.verify(&token, now), Err(TokenError::BadSignature));
        let truncated = &token[..token.len() - 4];
        assert_eq!(
            signer().verify(truncated, now),
            Err(TokenError::BadSignature)
        );
        // Raise max_score in the payload and keep the old MAC.
        let (_, tag) = token.split_once('.').expect("two parts");
        let richer = ActionClaims {
            max_score: 1_000_000,
            ..c.clone()
        };
        let (payload, _) = signer()
            .sign(&richer)
            .split_once('.')
            .map(|(p, t)| (p.to_owned(), t.to_owned()))
            .expect("two parts");
        assert_eq!(
            signer().verify(&format!("{payload}.{tag}"), now),
            Err(TokenError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b.c", "!!!.???", &"x".repeat(600)] {
            assert!(signer().verify(junk, now).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn only_the_exact_payload_shape_parses() {
        let id = Uuid::now_v7();
        let user = Uuid::now_v7();
        let ok = format!("{id}:{user}:COMPLETE_TASK:10:1900000000");
        assert!(parse(ok.as_bytes()).is_some());
        for bad in [
            format!("{id}:{user}:COMPLETE_TASK:10"),
            format!("{id}:{user}:COMPLETE_TASK:10:1900000000:x"),
            format!("{id}:{user}:complete_task:10:1900000000"),
            format!("{id}:{user}:COMPLETE_TASK:+10:1900000000"),
            format!("{id}:{user}:COMPLETE_TASK:010:1900000000"),
            format!("{id}:{user}:COMPLETE_TASK:0:1900000000"),
            format!("{id}:{user}::10:1900000000"),
            format!("nope:{user}:COMPLETE_TASK:10:1900000000"),
            // Found by the fuzz properties: other spellings of a UUID are not what `sign` writes.
            format!("{}:{user}:COMPLETE_TASK:10:1900000000", id.simple()),
            format!("{}:{user}:COMPLETE_TASK:10:1900000000", id.braced()),
            format!("{id}:{}:COMPLETE_TASK:10:1900000000", user.urn()),
            format!("{id}:{user}:COMPLETE_TASK:10:1900000000").to_uppercase(),
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    proptest! {
        /// Arbitrary input never panics and never verifies.
        #[test]
        fn arbitrary_tokens_never_verify(token in ".{0,300}") {
            prop_assert!(signer().verify(&token, Utc::now()).is_err());
        }

        /// Flipping any character of a valid token makes it invalid.
        #[test]
        fn any_single_change_is_refused(position in 0usize..200, replacement in "[A-Za-z0-9_.-]") {
            let now = Utc::now();
            let token = signer().sign(&claims(now));
            let position = position % token.len();
            let mut changed: Vec<char> = token.chars().collect();
            let new = replacement.chars().next().expect("one char");
            prop_assume!(changed[position] != new);
            changed[position] = new;
            let changed: String = changed.into_iter().collect();
            prop_assert!(signer().verify(&changed, now).is_err());
        }
    }
}

#[cfg(test)]
mod fuzz;
