//! The verifier the HTTP layer calls: picks the scheme from the headers present.

use chrono::{DateTime, Duration, Utc};

use super::delivery::HeaderLookup;
use super::rsa::{REVIO_SIGNATURE_HEADER, verify_revio};
use super::standard::{WEBHOOK_SIGNATURE_HEADER, verify_standard};
use super::{RevioPublicKey, Scheme, SignatureError, StandardWebhookSecret, VerifiedDelivery};

/// Verifies webhook deliveries with whichever schemes have a key configured.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    /// Revio's public key; `None` refuses Revio deliveries.
    pub rsa: Option<RevioPublicKey>,
    /// The Standard Webhooks secret; `None` refuses Standard Webhooks deliveries.
    pub hmac: Option<StandardWebhookSecret>,
    /// Tolerated distance between a delivery's timestamp and now, either way.
    pub tolerance: Duration,
}

impl WebhookVerifier {
    /// Verifies a delivery over its raw `body`, before anything parses it.
    ///
    /// `headers` looks headers up by lowercase name. A `revio-signature` header selects Revio's
    /// RSA scheme, otherwise a `webhook-signature` header selects Standard Webhooks; with
    /// neither the delivery is [`SignatureError::MissingHeader`].
    pub fn verify(
        &self,
        headers: HeaderLookup<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDelivery, SignatureError> {
        if headers(REVIO_SIGNATURE_HEADER).is_some() {
            let key = self
                .rsa
                .as_ref()
                .ok_or(SignatureError::SchemeNotConfigured(Scheme::RevioRsa))?;
            verify_revio(key, headers, body, now, self.tolerance)
        } else if headers(WEBHOOK_SIGNATURE_HEADER).is_some() {
            let secret = self
                .hmac
                .as_ref()
                .ok_or(SignatureError::SchemeNotConfigured(
                    Scheme::StandardWebhooks,
                ))?;
            verify_standard(secret, headers, body, now, self.tolerance)
        } else {
            Err(SignatureError::MissingHeader(WEBHOOK_SIGNATURE_HEADER))
        }
    }
}
