//! Short-lived HS256 access tokens (JWT).
//!
//! Issuing and verifying take the current time as an argument (no clock inside), so the rules
//! are testable with a fake clock. Verification accepts exactly `alg: HS256`: `none`, other
//! HMAC sizes and asymmetric algorithms are refused before any signature check.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest accepted signing secret, in bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The user's role (`participant`, `organizer`, `support`, `admin`).
    pub role: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not valid before, Unix seconds.
    pub nbf: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Unique token id (UUID v4).
    pub jti: String,
}

/// Why a token could not be issued or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWT with the expected claims (also: a token could not be encoded).
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// The header names another algorithm than HS256 (including `none`).
    #[error("wrong token algorithm")]
    WrongAlgorithm,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not this service.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` is not this service.
    #[error("wrong token audience")]
    WrongAudience,
    /// The signing secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the token secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    /// The lifetime is not positive, or `now + ttl` is out of range.
    #[error("the token lifetime must be positive")]
    InvalidTtl,
}

/// Issues and verifies HS256 access tokens for one issuer and audience.
///
/// `Debug` prints the issuer, audience and lifetime, never the secret.
#[derive(Clone)]
pub struct AccessTokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl AccessTokenSigner {
    /// A signer with `secret` (at least [`MIN_SECRET_LEN`] bytes, else
    /// [`TokenError::WeakSecret`]) and a positive `ttl` (else [`TokenError::InvalidTtl`]).
    pub fn new(
        secret: &[u8],
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret);
        }
        if ttl <= Duration::zero() {
            return Err(TokenError::InvalidTtl);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
        })
    }

    /// The lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `user_id` with `role`, valid from `now` (whole seconds) for the
    /// lifetime; returns it with its expiry (exactly the `exp` claim).
    pub fn issue(
        &self,
        user_id: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), TokenError> {
        let iat = now.timestamp();
        let exp = now
            .checked_add_signed(self.ttl)
            .ok_or(TokenError::InvalidTtl)?
            .timestamp();
        let expires_at = DateTime::from_timestamp(exp, 0).ok_or(TokenError::InvalidTtl)?;
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            role: role.to_owned(),
            iat,
            nbf: iat,
            exp,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Malformed)?;
        Ok((token, expires_at))
    }

    /// Verifies `token` at time `now`: algorithm exactly HS256, signature, `exp` and `nbf`
    /// (with [`LEEWAY_SECONDS`] of skew), `iss` and `aud`, in that order.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        check_header_alg(token)?;

        let mut validation = Validation::new(Algorithm::HS256);
        // Time, issuer and audience are checked below, against `now` and with our errors.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.iss = None;
        validation.aud = None;

        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })?
            .claims;

        let now = now.timestamp();
        if now >= claims.exp.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(LEEWAY_SECONDS) < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }
}

/// Refuses any header whose `alg` is not exactly `"HS256"`, reading the header ourselves so
/// `none` and algorithms unknown to `jsonwebtoken` are [`TokenError::WrongAlgorithm`] too.
fn check_header_alg(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    match header.get("alg").and_then(serde_json::Value::as_str) {
        Some("HS256") => Ok(()),
        Some(_) => Err(TokenError::WrongAlgorithm),
        None => Err(TokenError::Malformed),
    }
}

impl fmt::Debug for AccessTokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenSigner")
            .field("algorithm", &"HS256")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_seconds", &self.ttl.num_seconds())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

    fn signer() -> AccessTokenSigner {
        AccessTokenSigner::new(SECRET, "keel", "keel-api", Duration::minutes(15)).expect("signer")
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("in range")
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn claims_json(s: &AccessTokenSigner, now: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "sub": "user-1", "role": "admin", "iat": now.timestamp(), "nbf": now.timestamp(),
            "exp": now.timestamp() + 900, "iss": s.issuer, "aud": s.audience, "jti": "j-1",
        })
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let (token, expires_at) = s.issue("user-1", "organizer", t0()).expect("issue");
        assert_eq!(expires_at, t0() + Duration::minutes(15));
        let claims = s.verify(&token, t0()).expect("valid");
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.role, "organizer");
        assert_eq!(claims.iat, t0().timestamp());
        assert_eq!(claims.nbf, t0().timestamp());
        assert_eq!(claims.exp, expires_at.timestamp());
        assert_eq!(claims.iss, "keel");
        assert_eq!(claims.aud, "keel-api");
        assert!(uuid::Uuid::parse_str(&claims.jti).is_ok());
        // Still valid one second before expiry.
        assert!(s.verify(&token, expires_at - Duration::seconds(1)).is_ok());
    }

    #[test]
    fn jti_is_unique() {
        let s = signer();
        let (a, _) = s.issue("u", "participant", t0()).expect("issue");
        let (b, _) = s.issue("u", "participant", t0()).expect("issue");
        let ja = s.verify(&a, t0()).expect("valid").jti;
        let jb = s.verify(&b, t0()).expect("valid").jti;
        assert_ne!(ja, jb);
    }

    #[test]
    fn weak_secret_is_refused() {
        let err = AccessTokenSigner::new(&[7u8; 31], "keel", "keel-api", Duration::minutes(15));
        assert_eq!(err.map(|_| ()), Err(TokenError::WeakSecret));
        assert!(AccessTokenSigner::new(&[7u8; 32], "i", "a", Duration::minutes(1)).is_ok());
    }

    #[test]
    fn non_positive_ttl_is_refused() {
        let err = AccessTokenSigner::new(SECRET, "keel", "keel-api", Duration::zero());
        assert_eq!(err.map(|_| ()), Err(TokenError::InvalidTtl));
    }

    #[test]
    fn expired_token_is_refused_after_the_leeway() {
        let s = signer();
        let (token, expires_at) = s.issue("u", "participant", t0()).expect("issue");
        // Within the 5 s leeway.
        assert!(s.verify(&token, expires_at + Duration::seconds(4)).is_ok());
        assert_eq!(
            s.verify(&token, expires_at + Duration::seconds(5)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify(&token, expires_at + Duration::hours(1)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_from_the_future_is_not_yet_valid() {
        let s = signer();
        let (token, _) = s.issue("u", "participant", t0()).expect("issue");
        assert!(s.verify(&token, t0() - Duration::seconds(5)).is_ok());
        assert_eq!(
            s.verify(&token, t0() - Duration::seconds(6)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let other = AccessTokenSigner::new(SECRET, "evil", "keel-api", Duration::minutes(15))
            .expect("signer");
        let (token, _) = other.issue("u", "admin", t0()).expect("issue");
        assert_eq!(signer().verify(&token, t0()), Err(TokenError::WrongIssuer));
    }

    #[test]
    fn wrong_audience_is_refused() {
        let other = AccessTokenSigner::new(SECRET, "keel", "other-api", Duration::minutes(15))
            .expect("signer");
        let (token, _) = other.issue("u", "admin", t0()).expect("issue");
        assert_eq!(
            signer().verify(&token, t0()),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn other_secret_is_a_bad_signature() {
        let other = AccessTokenSigner::new(&[9u8; 32], "keel", "keel-api", Duration::minutes(15))
            .expect("signer");
        let (token, _) = other.issue("u", "admin", t0()).expect("issue");
        assert_eq!(signer().verify(&token, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let s = signer();
        let (token, _) = s.issue("user-1", "participant", t0()).expect("issue");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = claims_json(&s, t0());
        claims["role"] = "admin".into();
        parts[1] = b64(&claims);
        assert_eq!(
            s.verify(&parts.join("."), t0()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_a_bad_signature() {
        let s = signer();
        let (token, _) = s.issue("user-1", "participant", t0()).expect("issue");
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("b64");
        sig[0] ^= 1;
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(s.verify(&forged, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let s = signer();
        let header = b64(&serde_json::json!({"alg": "none", "typ": "JWT"}));
        let payload = b64(&claims_json(&s, t0()));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let got = s.verify(&token, t0());
            assert!(
                matches!(got, Err(TokenError::WrongAlgorithm | TokenError::Malformed)),
                "{got:?}"
            );
        }
        assert_eq!(
            s.verify(&format!("{header}.{payload}."), t0()),
            Err(TokenError::WrongAlgorithm)
        );
        let header = b64(&serde_json::json!({"alg": "None"}));
        assert_eq!(
            s.verify(&format!("{header}.{payload}."), t0()),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn hs512_with_the_same_secret_is_refused() {
        let s = signer();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims_json(&s, t0()),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(s.verify(&token, t0()), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn rs256_header_is_refused() {
        let s = signer();
        let header = b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let payload = b64(&claims_json(&s, t0()));
        let signature = URL_SAFE_NO_PAD.encode([1u8; 256]);
        assert_eq!(
            s.verify(&format!("{header}.{payload}.{signature}"), t0()),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let s = signer();
        let (token, _) = s.issue("u", "participant", t0()).expect("issue");
        for bad in [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c".to_owned(),
            format!("{token}.extra"),
            b64(&serde_json::json!({"typ": "JWT"})) + ".e30.sig",
        ] {
            assert_eq!(s.verify(&bad, t0()), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn correctly_signed_token_missing_claims_is_malformed() {
        let s = signer();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u", "exp": t0().timestamp() + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(s.verify(&token, t0()), Err(TokenError::Malformed));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let text = format!("{:?}", signer());
        assert!(text.contains("keel-api"), "{text}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(!text.contains("48, 49, 50"), "{text}");
    }
}

#[cfg(test)]
mod fuzz;
