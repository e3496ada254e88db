//! Fuzz properties of access-token verification: hostile input never panics nor verifies, no
//! mutation of an issued token (nor one issued with another secret) is accepted, any `alg` but
//! `HS256` is refused even under a correct MAC, and issued tokens round-trip.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use ring::hmac;

use super::{AccessTokenSigner, TokenError};
use crate::fuzz::{hostile_text, mutation};

const SECRET: &[u8] = b"fuzz-only-jwt-secret-0123456789abcdef";

fn signer_with(secret: &[u8]) -> AccessTokenSigner {
    AccessTokenSigner::new(secret, "keel", "keel-api", Duration::minutes(15)).expect("signer")
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("in range")
}

/// `header.payload.signature` with a correct HS256 MAC under [`SECRET`] over whatever JSON the
/// header and payload hold.
fn mac_signed(header: &serde_json::Value, payload: &serde_json::Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, SECRET),
        message.as_bytes(),
    );
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Valid claims for [`now`], as the signer would write them.
fn claims_json() -> serde_json::Value {
    let t = now().timestamp();
    serde_json::json!({
        "sub": "00000000-0000-0000-0000-000000000001", "role": "admin", "iat": t, "nbf": t,
        "exp": t + 900, "iss": "keel", "aud": "keel-api", "jti": "j",
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any text, and any three base64url parts (JSON or not), is refused without panic.
    #[test]
    fn hostile_tokens_never_verify(
        text in hostile_text(),
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 3),
        json_header in prop_oneof![Just(r#"{"alg":"HS256","typ":"JWT"}"#.to_owned()), "\\{\"alg\":\"[A-Za-z0-9]{0,6}\"\\}"],
    ) {
        let signer = signer_with(SECRET);
        prop_assert!(signer.verify(&text, now()).is_err());
        let encoded: Vec<String> = parts.iter().map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
        prop_assert!(signer.verify(&encoded.join("."), now()).is_err());
        let shaped = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(json_header), encoded[1], encoded[2]);
        prop_assert!(signer.verify(&shaped, now()).is_err());
    }

    /// Issued tokens verify to the subject and role they were issued for.
    #[test]
    fn issued_tokens_round_trip(sub in "\\PC{0,40}", role in "[a-z]{1,12}") {
        let signer = signer_with(SECRET);
        let (token, _) = signer.issue(&sub, &role, now()).expect("issue");
        let claims = signer.verify(&token, now()).expect("valid");
        prop_assert_eq!((claims.sub, claims.role), (sub, role));
    }

    /// No bit flip, truncation, extension, insertion, removal or part swap of an issued token
    /// verifies, nor a token issued with another secret.
    #[test]
    fn mutated_and_foreign_tokens_are_refused(
        change in mutation(),
        other in proptest::collection::vec(any::<u8>(), 32..64),
    ) {
        let signer = signer_with(SECRET);
        let (token, _) = signer.issue("user-1", "participant", now()).expect("issue");
        if let Some(changed) = change.apply(&token, '.') {
            prop_assert!(signer.verify(&changed, now()).is_err(), "{:?} accepted: {}", change, changed);
        }
        prop_assume!(other != SECRET);
        let (foreign, _) = signer_with(&other).issue("user-1", "admin", now()).expect("issue");
        prop_assert_eq!(signer.verify(&foreign, now()), Err(TokenError::BadSignature));
    }

    /// A header naming any algorithm but exactly `HS256` is refused even when the MAC over it is
    /// correct (no downgrade to `none`, no confusion with other HMAC sizes or RSA).
    #[test]
    fn only_hs256_is_accepted(alg in prop_oneof![
        Just("none".to_owned()), Just("HS512".to_owned()), Just("RS256".to_owned()),
        Just("hs256".to_owned()), Just("HS256 ".to_owned()), "\\PC{0,8}",
    ]) {
        prop_assume!(alg != "HS256");
        let token = mac_signed(&serde_json::json!({"alg": alg, "typ": "JWT"}), &claims_json());
        prop_assert_eq!(signer_with(SECRET).verify(&token, now()), Err(TokenError::WrongAlgorithm));
    }
}

#[test]
fn the_mac_helper_makes_tokens_the_signer_accepts() {
    let token = mac_signed(&serde_json::json!({"alg": "HS256"}), &claims_json());
    assert!(signer_with(SECRET).verify(&token, now()).is_ok());
}
