//! Fuzz properties of the action token: hostile input never panics nor verifies, no mutation of a
//! signed token or token signed by another key is accepted, and whatever verifies is exactly what
//! the signer writes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use ring::hmac;
use uuid::Uuid;

use super::{ActionClaims, ActionTokenSigner};
use crate::fuzz::{hostile_text, mutation};
use crate::identity::user::UserId;

const SECRET: &[u8] = b"fuzz-only-action-token-secret-0123456789";

/// A fixed "now"; every generated token expires after it.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("in range")
}

/// Claims the server could sign, expiring after [`now`].
fn claims() -> impl Strategy<Value = ActionClaims> {
    (
        any::<u128>(),
        any::<u128>(),
        "[A-Z0-9_]{1,64}",
        1i64..=i64::MAX,
        1i64..100_000_000_000,
    )
        .prop_map(
            |(action, user, action_type, max_score, after)| ActionClaims {
                action_id: Uuid::from_u128(action),
                user_id: UserId(Uuid::from_u128(user)),
                action_type,
                max_score,
                expires_at: DateTime::from_timestamp(now().timestamp() + after, 0)
                    .expect("in range"),
            },
        )
}

/// A token over `payload` with a correct MAC under [`SECRET`]: what only the server can make.
fn signed_payload(payload: &[u8]) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(payload);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, SECRET),
        encoded.as_bytes(),
    );
    format!("{encoded}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any text, however long or strange, and any two base64url parts are refused without panic.
    #[test]
    fn hostile_tokens_never_verify(
        text in hostile_text(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        tag in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let signer = ActionTokenSigner::new(SECRET);
        prop_assert!(signer.verify(&text, now()).is_err());
        let shaped = format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&tag));
        prop_assert!(signer.verify(&shaped, now()).is_err());
    }

    /// Every token the signer writes verifies to the claims it was given.
    #[test]
    fn valid_tokens_round_trip(claims in claims()) {
        let signer = ActionTokenSigner::new(SECRET);
        let token = signer.sign(&claims);
        prop_assert_eq!(signer.verify(&token, now()), Ok(claims));
    }

    /// No bit flip, truncation, extension, insertion, removal or part swap of a valid token
    /// verifies, nor a valid token under another key.
    #[test]
    fn mutated_and_foreign_tokens_are_refused(
        claims in claims(),
        change in mutation(),
        other_key in proptest::collection::vec(any::<u8>(), 32..64),
    ) {
        let signer = ActionTokenSigner::new(SECRET);
        let token = signer.sign(&claims);
        if let Some(changed) = change.apply(&token, '.') {
            prop_assert!(signer.verify(&changed, now()).is_err(), "{:?} accepted: {}", change, changed);
        }
        prop_assume!(other_key != SECRET);
        let forged = ActionTokenSigner::new(&other_key).sign(&claims);
        prop_assert!(signer.verify(&forged, now()).is_err());
    }

    /// Even with a correct MAC, a payload the signer would not write is refused: whatever
    /// verifies re-signs to the very same token (the parser is strict and canonical).
    #[test]
    fn only_canonical_signed_payloads_verify(
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (claims(), 0usize..5, 0usize..4, "(:.{0,4})?").prop_map(|(c, id, n, tail)| {
                spelled(&c, id, n, &tail).into_bytes()
            }),
        ],
    ) {
        let signer = ActionTokenSigner::new(SECRET);
        let token = signed_payload(&payload);
        if let Ok(claims) = signer.verify(&token, now()) {
            prop_assert_eq!(signer.sign(&claims), token);
        }
    }
}

/// The payload of `c` with its ids and numbers spelled one of the ways a lenient parser would
/// also take (`id` and `number` pick the spelling; 0 is the signer's own) and `tail` appended.
fn spelled(c: &ActionClaims, id: usize, number: usize, tail: &str) -> String {
    let ids = [c.action_id, c.user_id.0].map(|u| match id {
        0 => u.hyphenated().to_string(),
        1 => u.hyphenated().to_string().to_uppercase(),
        2 => u.simple().to_string(),
        3 => u.braced().to_string(),
        _ => u.urn().to_string(),
    });
    let numbers = [c.max_score, c.expires_at.timestamp()].map(|n| match number {
        0 => n.to_string(),
        1 => format!("+{n}"),
        2 => format!("0{n}"),
        _ => format!("{n}.0"),
    });
    format!(
        "{}:{}:{}:{}:{}{tail}",
        ids[0], ids[1], c.action_type, numbers[0], numbers[1]
    )
}
