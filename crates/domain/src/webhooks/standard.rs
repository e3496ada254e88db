//! Standard Webhooks (standardwebhooks.com): HMAC-SHA256 over `{id}.{timestamp}.{raw_body}`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use ring::hmac;
use zeroize::Zeroizing;

use super::delivery::{HeaderLookup, check_event_id, required, signed_content};
use super::timestamp::check_named_timestamp;
use super::{KeyError, Scheme, SignatureError, VerifiedDelivery};

/// Header carrying the message id.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Header carrying the signing time (decimal unix seconds).
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// Prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// Fewest secret bytes accepted (the specification's lower bound).
const MIN_SECRET_LEN: usize = 24;
/// Length of an HMAC-SHA256 signature; shorter (truncated) signatures never match.
const SIGNATURE_LEN: usize = 32;
/// Most signatures examined in one header (a sender rotating secrets sends a few).
const MAX_SIGNATURES: usize = 16;

/// A Standard Webhooks signing secret (`whsec_<base64>`). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct StandardWebhookSecret {
    key: hmac::Key,
}

impl StandardWebhookSecret {
    /// Reads `whsec_` followed by the standard base64 of at least 24 secret bytes.
    pub fn from_whsec(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::MalformedSecret("missing whsec_ prefix"))?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| KeyError::MalformedSecret("invalid base64"))?,
        );
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeyError::MalformedSecret("shorter than 24 bytes"));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The `webhook-signature` header value (`v1,<base64>`) for a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, &signed_content(id, &timestamp.to_string(), body));
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }

    /// Whether any `v1` entry of a `webhook-signature` header value signs
    /// `{id}.{timestamp}.{body}` (headers as received). Other versions are ignored; a malformed
    /// header is [`SignatureError::MalformedHeader`], no match [`SignatureError::BadSignature`].
    pub fn verify_header(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        signature_header: &str,
    ) -> Result<(), SignatureError> {
        let entries: Vec<&str> = signature_header
            .split(' ')
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() || entries.len() > MAX_SIGNATURES {
            return Err(SignatureError::MalformedHeader(WEBHOOK_SIGNATURE_HEADER));
        }
        let candidates: Vec<Vec<u8>> = entries
            .iter()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .filter(|signature| signature.len() == SIGNATURE_LEN)
            .collect();
        if candidates.is_empty() {
            return Err(SignatureError::BadSignature);
        }
        let content = signed_content(id, timestamp, body);
        // `hmac::verify` compares in constant time; every candidate is checked.
        let matches = candidates
            .iter()
            .filter(|signature| hmac::verify(&self.key, &content, signature).is_ok())
            .count();
        if matches > 0 {
            Ok(())
        } else {
            Err(SignatureError::BadSignature)
        }
    }
}

impl fmt::Debug for StandardWebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandardWebhookSecret(<redacted>)")
    }
}

/// Verifies a delivery signed with the Standard Webhooks scheme.
pub(super) fn verify_standard(
    secret: &StandardWebhookSecret,
    headers: HeaderLookup<'_>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<VerifiedDelivery, SignatureError> {
    let signature = required(headers, WEBHOOK_SIGNATURE_HEADER)?;
    let id = required(headers, WEBHOOK_ID_HEADER)?;
    check_event_id(WEBHOOK_ID_HEADER, &id)?;
    let raw_timestamp = required(headers, WEBHOOK_TIMESTAMP_HEADER)?;
    let timestamp =
        check_named_timestamp(WEBHOOK_TIMESTAMP_HEADER, &raw_timestamp, now, tolerance)?;
    secret.verify_header(&id, &raw_timestamp, body, &signature)?;
    Ok(VerifiedDelivery {
        event_id: id,
        timestamp,
        scheme: Scheme::StandardWebhooks,
    })
}
