//! Payment-provider webhook signatures, verified over the raw body before any parsing.
//!
//! Two schemes, both signing `{event_id}.{timestamp}.{raw_body}` and both refusing a timestamp
//! further than a tolerance from now ([`check_timestamp`], replay window):
//! - **Revio**: RSA PKCS#1 v1.5 SHA-256, headers `revio-event-id`, `revio-timestamp`,
//!   `revio-signature` (base64), checked with Revio's public key ([`RevioPublicKey`], SPKI or
//!   PKCS#1 PEM). [`RevioSigner`] signs for the built-in simulator with the public
//!   [`DEV_REVIO_PRIVATE_KEY_PEM`].
//! - **Standard Webhooks** (standardwebhooks.com): HMAC-SHA256 with a `whsec_` secret
//!   ([`StandardWebhookSecret`]), headers `webhook-id`, `webhook-timestamp`, `webhook-signature`
//!   (space-separated `v1,<base64>` entries, any one matching).
//!
//! [`WebhookVerifier`] picks the scheme from the headers present and returns a
//! [`VerifiedDelivery`]. Keys are read with a small bounds-checked DER reader; errors never
//! include key material or signature values, and secrets' `Debug` is redacted.
//!
//! Both schemes sign `id.timestamp.body` without escaping: an id containing `.` could shift
//! bytes between the id and the body. Timestamps are digits only and bodies are parsed as JSON
//! objects afterwards, so such a shifted delivery does not parse as an event.

mod delivery;
mod der;
mod dev_keys;
mod error;
mod pem;
mod rsa;
mod rsa_der;
mod standard;
mod timestamp;
mod verifier;

#[cfg(test)]
mod tests;

pub use delivery::{HeaderLookup, MAX_EVENT_ID_LEN, Scheme, VerifiedDelivery};
pub use dev_keys::{DEV_REVIO_PRIVATE_KEY_PEM, DEV_REVIO_PUBLIC_KEY_PEM};
pub use error::{KeyError, SignatureError, SigningError};
pub use rsa::{
    REVIO_EVENT_ID_HEADER, REVIO_SIGNATURE_HEADER, REVIO_TIMESTAMP_HEADER, RevioPublicKey,
    RevioSigner,
};
pub use standard::{
    StandardWebhookSecret, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER,
};
pub use timestamp::{DEFAULT_TOLERANCE, check_timestamp};
pub use verifier::WebhookVerifier;
